"""Gemini batch mode (google-genai): client.aio.batches.create with inlined requests, poll
batches.get, read dest.inlined_responses (in request order; each also carries our metadata key)."""

from __future__ import annotations

import asyncio
import json
from typing import Any, ClassVar, Sequence

from traitforge.llm.base import BLOCKED, OK, TRUNCATED_OUTCOME
from traitforge.llm.batch.base import BatchItem, BatchProvider, BatchState, ItemResult
from traitforge.llm.errors import BackendError, RetryableError
# The live backend's reading of a candidate: withheld finish reasons, text without thought parts.
from traitforge.llm.providers.gemini import BLOCKED_FINISH, candidate_text, request_parts

_ENDED = {"JOB_STATE_SUCCEEDED": "ended", "JOB_STATE_PARTIALLY_SUCCEEDED": "ended", "JOB_STATE_FAILED": "failed",
          "JOB_STATE_CANCELLED": "cancelled", "JOB_STATE_EXPIRED": "expired"}


class GeminiBatch(BatchProvider):
    provider: ClassVar[str] = "gemini"
    max_requests: ClassVar[int] = 50_000
    max_bytes: ClassVar[int] = 18 * 2**20  # inlined requests: 20 MB per batch request

    def _sdk(self) -> Any:
        return self._loop_client(self._make_sdk, lambda c: c.aio.aclose())

    def _make_sdk(self) -> Any:
        from google import genai
        from google.genai import types

        opts = types.HttpOptions(timeout=int(self.timeout_s * 1000))
        if self.base_url:
            opts.base_url = self.base_url
        return genai.Client(api_key=self.api_key or "no-key", http_options=opts)

    def encode(self, item: BatchItem) -> dict[str, Any]:
        # The same contents and config as a live call (params.seed is already the sample's seed).
        contents, cfg = request_parts(item.messages, item.params, 1, item.params.seed,
                                      thinking=self.backend.thinking_config(), room=self.backend.thinking_room())
        return {"contents": contents, "config": cfg, "metadata": {"key": item.custom_id}}

    def output_limit(self, encoded: dict[str, Any]) -> int:
        return int(encoded["config"].get("max_output_tokens") or 0)  # thinking counts against it

    async def _guard(self, what: str, coro: Any) -> Any:
        from google.genai import errors

        try:
            return await coro
        except errors.APIError as e:
            code = int(e.code or 0)
            if code == 429 or code >= 500:
                raise RetryableError(f"gemini batch: {what}: HTTP {code}") from None
            raise BackendError(f"gemini batch: {what} rejected ({code}): {e.message or e}"[:300]) from None
        except (ConnectionError, TimeoutError, asyncio.TimeoutError) as e:
            raise RetryableError(f"gemini batch: {what}: {e}") from None

    async def submit(self, encoded: Sequence[dict[str, Any]]) -> str:
        job = await self._guard("create", self._sdk().aio.batches.create(
            model=self.model, src=list(encoded), config={"display_name": "traitforge"}))
        return job.name

    async def poll(self, batch_id: str) -> BatchState:
        job = await self._guard("get", self._sdk().aio.batches.get(name=batch_id))
        raw = getattr(job.state, "name", str(job.state))
        state = _ENDED.get(raw, "in_progress")
        err = job_error(getattr(job, "error", None))
        if not err and state == "failed":
            err = job_error(await self._operation_error(batch_id))
        return BatchState(state, raw, err[:500])  # type: ignore[arg-type]

    async def _operation_error(self, batch_id: str) -> Any:
        """The batch operation's own `error` (a google.rpc.Status). The SDK's Gemini API reader
        (google-genai 3.6) does not copy it into BatchJob.error, so a failed job is read raw once."""
        try:
            client = self._sdk().aio._api_client
            resp = await client.async_request("get", f"batches/{batch_id.split('/')[-1]}", {}, None)
            return json.loads(resp.body or "{}").get("error")
        except Exception:  # only the explanation is lost: the job is reported failed either way
            return None

    async def results(self, batch_id: str, custom_ids: Sequence[str]) -> dict[str, ItemResult]:
        job = await self._guard("get", self._sdk().aio.batches.get(name=batch_id))
        return parse_inlined(job, custom_ids)


def job_error(err: Any) -> str:
    """"code: message (details)" of a BatchJob.error (types.JobError) or an operation's raw
    google.rpc.Status; "" when there is none."""
    if err is None:
        return ""
    get = err.get if isinstance(err, dict) else (lambda k: getattr(err, k, None))
    details = []
    for d in get("details") or []:
        if isinstance(d, dict):  # a google.rpc detail: its reason or description says the most
            d = d.get("reason") or d.get("description") or d.get("@type", "")
        details.append(str(d))
    msg = " ".join(x for x in (f"{get('code')}:" if get("code") else "", str(get("message") or "")) if x)
    return (msg + (f" ({'; '.join(details)})" if details else "")).strip() or "error without a message"


def parse_inlined(job: Any, custom_ids: Sequence[str]) -> dict[str, ItemResult]:
    """custom_id -> result from a finished BatchJob's inlined responses (by metadata key, else position)."""
    responses = (job.dest.inlined_responses or []) if job.dest else []
    out: dict[str, ItemResult] = {}
    for i, r in enumerate(responses):
        key = (r.metadata or {}).get("key") or (custom_ids[i] if i < len(custom_ids) else None)
        if not key:
            continue
        if r.error is not None or r.response is None:
            out[key] = ItemResult("errored", error=str(getattr(r.error, "message", "") or "no response")[:300])
            continue
        out[key] = response_result(r.response)
    return out


def response_result(resp: Any) -> ItemResult:
    """One GenerateContentResponse: text without thought parts, output with thinking (billed as
    output), and its outcome: a blocked prompt or a withheld candidate is billed but no answer."""
    meta = resp.usage_metadata
    tin = (meta.prompt_token_count or 0) if meta else 0
    thoughts = (meta.thoughts_token_count or 0) if meta else 0
    tout = ((meta.candidates_token_count or 0) if meta else 0) + thoughts
    cands = resp.candidates or []
    if not cands:
        block = getattr(resp.prompt_feedback, "block_reason", None) if resp.prompt_feedback else None
        if block is None:
            return ItemResult("errored", error="no candidates")
        reason = str(getattr(block, "value", block))
        return ItemResult("succeeded", "", tin, tout, error=f"prompt blocked ({reason})"[:300], outcome=BLOCKED,
                          finish_reason=reason, reasoning_tokens=thoughts)
    text = candidate_text(cands[0])
    fr = cands[0].finish_reason
    reason = str(getattr(fr, "value", fr) or "")
    outcome = BLOCKED if reason in BLOCKED_FINISH else TRUNCATED_OUTCOME if reason == "MAX_TOKENS" else OK
    # Any text of a withheld candidate is cut, not an answer.
    return ItemResult("succeeded", "" if outcome == BLOCKED else text, tin, tout, outcome=outcome,
                      finish_reason=reason, error=reason if outcome == BLOCKED else "", reasoning_tokens=thoughts)
