"""What every provider batch API looks like to the runner: submit items, poll, read results.

An item is ONE sample: its `custom_id` is the LLM cache key the sample would have on a live call,
so results go straight into the cache and a later live `llm.generate` finds them.
"""

from __future__ import annotations

import asyncio

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Sequence

from traitforge.llm.base import Backend, GenerateParams, Message

# Normalised batch states: the runner only reasons about these.
State = Literal["in_progress", "ended", "expired", "failed", "cancelled"]
TERMINAL: tuple[str, ...] = ("ended", "expired", "failed", "cancelled")


@dataclass(frozen=True)
class BatchItem:
    custom_id: str  # the sample's cache key
    messages: tuple[Message, ...]
    params: GenerateParams  # n == 1; seed already offset by the sample index


@dataclass
class ItemResult:
    kind: Literal["succeeded", "errored", "expired", "cancelled"]
    text: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    error: str = ""


@dataclass
class BatchState:
    state: State
    raw: str  # the provider's own status word, for the manifest
    error: str = ""
    counts: dict[str, int] | None = None


class BatchProvider(ABC):
    """One provider's batch API on its official SDK (imported lazily by each subclass)."""

    provider: ClassVar[str] = ""
    max_requests: ClassVar[int] = 10_000
    max_bytes: ClassVar[int] = 100 * 2**20

    def __init__(self, backend: Backend):
        self.backend = backend
        self.model = backend.model
        self.base_url, self.api_key = endpoint(backend)
        self.timeout_s = float(getattr(backend, "timeout_s", 120.0))
        # The SDK client belongs to one event loop; subclasses rebuild it when the loop changes.
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @abstractmethod
    def encode(self, item: BatchItem) -> dict[str, Any]:
        """The item as the provider's batch request object (one JSONL line / one list entry)."""

    @abstractmethod
    async def submit(self, encoded: Sequence[dict[str, Any]]) -> str:
        """Create one batch from encoded items; return its id."""

    @abstractmethod
    async def poll(self, batch_id: str) -> BatchState: ...

    @abstractmethod
    async def results(self, batch_id: str, custom_ids: Sequence[str]) -> dict[str, ItemResult]:
        """custom_id -> result for a batch in a terminal state (partial for expired/cancelled).
        `custom_ids` is the batch's items in submission order (Gemini answers by position)."""

    async def aclose(self) -> None:
        return None


def endpoint(backend: Backend) -> tuple[str | None, str | None]:
    """(base_url, api key) of a live backend, so the batch client talks to the same place.
    Read defensively: backends keep these under different attribute names."""
    url = getattr(backend, "base_url", None)
    servers = getattr(backend, "servers", None)
    if url is None and servers:
        url = getattr(servers[0], "url", None)
    if url is None:
        opt = backend.options.get("base_url") if isinstance(getattr(backend, "options", None), dict) else None
        url = opt[0] if isinstance(opt, (list, tuple)) and opt else opt
    key = getattr(backend, "_key", None) or getattr(backend, "api_key", None)
    return (url.rstrip("/") if isinstance(url, str) else None), key
