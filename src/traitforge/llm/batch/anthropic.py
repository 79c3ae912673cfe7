"""Anthropic Message Batches: messages.batches.create / retrieve / results on the official SDK.

A batch ends after at most 24h; requests it did not reach come back with result type "expired".
Requests carry what the live backend sends (no sampling parameters: see providers/anthropic.py)."""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

from traitforge.llm.base import OK
from traitforge.llm.batch.base import BatchItem, BatchProvider, BatchState, ItemResult, stainless_guard
from traitforge.llm.providers.anthropic import STOP_OUTCOMES  # the live backend's reading of stop_reason


class AnthropicBatch(BatchProvider):
    provider: ClassVar[str] = "anthropic"
    max_requests: ClassVar[int] = 100_000
    max_bytes: ClassVar[int] = 250 * 2**20  # the limit is 256 MB per batch

    def _sdk(self) -> Any:
        import anthropic

        return self._loop_client(lambda: anthropic.AsyncAnthropic(
            api_key=self.api_key or "no-key", base_url=self.base_url, timeout=self.timeout_s, max_retries=2),
            lambda c: c.close())

    def encode(self, item: BatchItem) -> dict[str, Any]:
        # The live backend's arguments: extended thinking, max_tokens with its room, temperature where the SDK takes it.
        return {"custom_id": item.custom_id, "params": self.backend.request(item.messages, item.params)}

    def output_limit(self, encoded: dict[str, Any]) -> int:
        return int(encoded["params"].get("max_tokens") or 0)  # thinking budget included, as live

    async def _guard(self, what: str, coro: Any) -> Any:
        return await stainless_guard("anthropic", what, coro)

    async def submit(self, encoded: Sequence[dict[str, Any]]) -> str:
        b = await self._guard("create", self._sdk().messages.batches.create(requests=list(encoded)))
        return b.id

    async def poll(self, batch_id: str) -> BatchState:
        b = await self._guard("retrieve", self._sdk().messages.batches.retrieve(batch_id))
        rc = b.request_counts
        counts = {k: getattr(rc, k) for k in ("processing", "succeeded", "errored", "canceled", "expired")}
        state = "ended" if b.processing_status == "ended" else "in_progress"
        return BatchState(state, b.processing_status, "", counts)  # type: ignore[arg-type]

    async def results(self, batch_id: str, custom_ids: Sequence[str]) -> dict[str, ItemResult]:
        out: dict[str, ItemResult] = {}
        stream = await self._guard("results", self._sdk().messages.batches.results(batch_id))
        async for row in stream:
            r = row.result
            if r.type == "succeeded":
                out[row.custom_id] = message_result(r.message)
            elif r.type == "errored":
                err = getattr(r.error, "error", None)
                out[row.custom_id] = ItemResult(
                    "errored", error=f"{getattr(err, 'type', 'error')}: {getattr(err, 'message', '')}"[:300])
            elif r.type == "expired":
                out[row.custom_id] = ItemResult("expired", error="expired")
            else:
                out[row.custom_id] = ItemResult("cancelled", error=str(r.type))
        return out


def message_result(msg: Any) -> ItemResult:
    """A succeeded result's Message: its text blocks, usage (thinking from the provider's own
    `output_tokens_details` where given) and outcome from `stop_reason`."""
    text = "".join(getattr(b, "text", "") for b in (msg.content or []) if getattr(b, "type", "") == "text")
    u = msg.usage
    details = getattr(u, "output_tokens_details", None) if u else None
    reason = str(msg.stop_reason or "")
    return ItemResult("succeeded", text, (u.input_tokens or 0) if u else 0, (u.output_tokens or 0) if u else 0,
                      outcome=STOP_OUTCOMES.get(reason, OK), finish_reason=reason,
                      reasoning_tokens=int(getattr(details, "thinking_tokens", 0) or 0))
