"""OpenAI Batch API: upload a JSONL file of /v1/chat/completions requests (purpose="batch"),
create the batch, poll it, then read output_file_id and error_file_id. Also works against any
server that speaks the same files+batches REST shape (the SDK is simply pointed at base_url)."""

from __future__ import annotations

import json
from typing import Any, ClassVar, Sequence

from types import SimpleNamespace

from traitforge.llm.batch.base import BatchItem, BatchProvider, BatchState, ItemResult, stainless_guard
from traitforge.llm.hosts import is_provider_host
from traitforge.llm.providers import learn, model_caps
from traitforge.llm.providers.openai_compat import _rejects_sampling, choice_outcome

_STATES = {"validating": "in_progress", "in_progress": "in_progress", "finalizing": "in_progress",
           "cancelling": "in_progress", "completed": "ended", "expired": "expired", "failed": "failed",
           "cancelled": "cancelled"}


class OpenAIBatch(BatchProvider):
    provider: ClassVar[str] = "openai"
    max_requests: ClassVar[int] = 50_000  # per input file
    max_bytes: ClassVar[int] = 190 * 2**20  # the limit is 200 MB; leave room for multipart framing

    _token_limit: str | None = None  # the output-limit name a rejected batch taught this encoder

    def _sdk(self) -> Any:
        import openai

        return self._loop_client(lambda: openai.AsyncOpenAI(
            api_key=self.api_key or "sk-no-key-needed", base_url=self.base_url, timeout=self.timeout_s,
            max_retries=2), lambda c: c.close())

    def encode(self, item: BatchItem) -> dict[str, Any]:
        p = item.params
        caps = model_caps("openai", self.model)  # the shared table, with what live 400s taught
        body: dict[str, Any] = {"model": self.model, "messages": [m.to_dict() for m in item.messages]}
        # As the live backend: reasoning_effort without sampling parameters, room for the thinking.
        # A reasoning model rejects temperature/top_p even when no effort is set.
        effort = self.backend.options.get("reasoning_effort")
        sampling = caps.sampling and effort in (None, "none")
        if sampling:
            body["temperature"] = p.temperature
        if effort is not None:
            body["reasoning_effort"] = effort
        # The provider's own host (however it is spelled) takes the table's name; compatible servers max_tokens.
        limit = self._token_limit or (caps.token_limit if is_provider_host("openai", self.base_url) else "max_tokens")
        body[limit] = p.max_tokens + self.backend.thinking_room()
        if p.stop:
            body["stop"] = list(p.stop)
        if p.seed is not None:
            body["seed"] = p.seed
        if p.top_p is not None and sampling:
            body["top_p"] = p.top_p
        if p.json_schema is not None:
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "reply", "schema": p.json_schema, "strict": False}}
        return {"custom_id": item.custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}

    def output_limit(self, encoded: dict[str, Any]) -> int:
        body = encoded["body"]
        return int(body.get("max_completion_tokens") or body.get("max_tokens") or 0)

    def relearn(self, errors: Sequence[str]) -> bool:
        if not errors:
            return False
        # The live backend's test for "this model takes no temperature / top_p" (one test, shared).
        if all(_rejects_sampling(e) for e in errors) and model_caps("openai", self.model).sampling:
            learn("openai", self.model, sampling=False)
            return True
        # A server in front of OpenAI's API that passes max_tokens on to a model wanting the other name.
        if all(_rejects_max_tokens(e) for e in errors) and self._token_limit is None:
            self._token_limit = "max_completion_tokens"
            learn("openai", self.model, token_limit="max_completion_tokens")
            return True
        return False

    async def _guard(self, what: str, coro: Any) -> Any:
        return await stainless_guard("openai", what, coro)

    async def submit(self, encoded: Sequence[dict[str, Any]]) -> str:
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in encoded).encode()
        client = self._sdk()
        f = await self._guard("upload", client.files.create(
            file=("traitforge-batch.jsonl", data, "application/jsonl"), purpose="batch"))
        b = await self._guard("create", client.batches.create(
            input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h",
            metadata={"source": "traitforge"}))
        return b.id

    async def poll(self, batch_id: str) -> BatchState:
        b = await self._guard("retrieve", self._sdk().batches.retrieve(batch_id))
        errors = "; ".join(f"{e.code}: {e.message}" for e in ((b.errors.data or []) if b.errors else []))
        rc = b.request_counts
        counts = {"total": rc.total, "completed": rc.completed, "failed": rc.failed} if rc else None
        state = _STATES.get(b.status, "in_progress")
        return BatchState(state, b.status, errors[:500], counts)  # type: ignore[arg-type]

    async def _lines(self, file_id: str | None) -> list[dict[str, Any]]:
        if not file_id:
            return []
        resp = await self._guard("download", self._sdk().files.content(file_id))
        out = []
        for line in resp.text.splitlines():
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a torn line: its item counts as missing and is retried
        return out

    async def results(self, batch_id: str, custom_ids: Sequence[str]) -> dict[str, ItemResult]:
        b = await self._guard("retrieve", self._sdk().batches.retrieve(batch_id))
        out: dict[str, ItemResult] = {}
        for row in await self._lines(b.output_file_id) + await self._lines(b.error_file_id):
            cid = row.get("custom_id")
            if not isinstance(cid, str):
                continue
            out[cid] = _item(row)
        return out



def _rejects_max_tokens(message: str) -> bool:
    """A 400 saying the model takes max_completion_tokens, not max_tokens ("Unsupported parameter:
    'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.")."""
    m = message.casefold()
    return "'max_tokens'" in m and "max_completion_tokens" in m and ("unsupported" in m or "not supported" in m)


def _item(row: dict[str, Any]) -> ItemResult:
    err = row.get("error") or {}
    code = str(err.get("code") or "") if isinstance(err, dict) else ""
    if code == "batch_expired":
        return ItemResult("expired", error=code)
    if code == "batch_cancelled":
        return ItemResult("cancelled", error=code)
    resp = row.get("response") or {}
    body = resp.get("body") if isinstance(resp, dict) else None
    status = resp.get("status_code") if isinstance(resp, dict) else None
    if status == 200 and isinstance(body, dict):
        try:
            message = body["choices"][0]["message"]
            reason = str(body["choices"][0].get("finish_reason") or "")
            text = message.get("content")
            usage = body.get("usage") or {}
            details = usage.get("completion_tokens_details") or {}
            refusal = message.get("refusal")
            if isinstance(text, str) or text is None:
                # A refusal, a filtered or an empty reply is billed like any answer, but it is no answer.
                # The live backend's reading of a choice (a content filter first, a refusal without content).
                outcome, why = choice_outcome(SimpleNamespace(finish_reason=reason or None,
                                                              message=SimpleNamespace(content=text, refusal=refusal)))
                return ItemResult("succeeded", text or "", int(usage.get("prompt_tokens") or 0),
                                  int(usage.get("completion_tokens") or 0),
                                  error=why[:300], outcome=outcome, finish_reason=reason,
                                  reasoning_tokens=int(details.get("reasoning_tokens") or 0))
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            pass
        return ItemResult("errored", error="malformed response body")
    msg = ""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        msg = str(body["error"].get("message") or "")
    if not msg and isinstance(err, dict):
        msg = f"{code}: {err.get('message') or ''}"
    return ItemResult("errored", error=f"HTTP {status}: {msg}"[:300] if status else msg[:300])
