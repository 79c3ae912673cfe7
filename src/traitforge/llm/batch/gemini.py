"""Gemini batch mode (google-genai): client.aio.batches.create with inlined requests, poll
batches.get, read dest.inlined_responses (in request order; each also carries our metadata key)."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar, Sequence

from traitforge.llm.batch.base import BatchItem, BatchProvider, BatchState, ItemResult
from traitforge.llm.errors import BackendError, RetryableError
from traitforge.llm.providers.gemini import request_parts

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
        err = getattr(getattr(job, "error", None), "message", "") or ""
        return BatchState(_ENDED.get(raw, "in_progress"), raw, err[:500])  # type: ignore[arg-type]

    async def results(self, batch_id: str, custom_ids: Sequence[str]) -> dict[str, ItemResult]:
        job = await self._guard("get", self._sdk().aio.batches.get(name=batch_id))
        return parse_inlined(job, custom_ids)


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
        cands = r.response.candidates or []
        if not cands:
            out[key] = ItemResult("errored", error="no candidates")
            continue
        parts = (cands[0].content.parts or []) if cands[0].content else []
        text = "".join(p.text for p in parts if getattr(p, "text", None))
        meta = r.response.usage_metadata
        out[key] = ItemResult("succeeded", text, (meta.prompt_token_count or 0) if meta else 0,
                              (meta.candidates_token_count or 0) if meta else 0)
    return out
