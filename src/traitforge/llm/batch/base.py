"""What every provider batch API looks like to the runner: submit items, poll, read results.

An item is ONE sample: its `custom_id` is the LLM cache key the sample would have on a live call,
so results go straight into the cache and a later live `llm.generate` finds them.
"""

from __future__ import annotations

import asyncio

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, ClassVar, Literal, Sequence

from traitforge.llm.base import NOT_ANSWERS, OK, Backend, GenerateParams, Message
from traitforge.llm.errors import BackendError, RetryableError
from traitforge.llm.providers._http import closing_with_loop

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
    output_tokens: int = 0  # everything billed as output, thinking included
    error: str = ""
    # A "succeeded" item the provider answered (and bills) may still be no answer: refused or
    # blocked (llm.base.OUTCOMES), with the provider's own finish reason.
    outcome: str = OK
    finish_reason: str = ""
    reasoning_tokens: int = 0  # of output_tokens, those spent thinking

    @property
    def billed(self) -> bool:
        """The provider answered, so it charges for it, whatever the answer was."""
        return self.kind == "succeeded"

    def cache_row(self, key: str) -> tuple[str, str, int, int, str, str, str, int]:
        """Its LLMCache.put_many row: (key, text, input, output, outcome, finish reason, the
        provider's reason for a refusal or block, thinking tokens)."""
        reason = self.error if self.outcome in NOT_ANSWERS else ""
        return (key, self.text or "", self.input_tokens, self.output_tokens, self.outcome, self.finish_reason,
                reason, self.reasoning_tokens)


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
        self._closer: Any = None

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

    def _loop_client(self, make: Callable[[], Any], close: Callable[[Any], Awaitable[Any]]) -> Any:
        """This event loop's SDK client (a connection pool belongs to one loop), made on first use
        in it and closed inside it: by aclose, else when the loop shuts down (closing_with_loop)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            client = self._client = make()
            self._loop = loop
            self._closer = closing_with_loop(lambda: close(client))
        return self._client

    @abstractmethod
    def output_limit(self, encoded: dict[str, Any]) -> int:
        """The output tokens (thinking included) an encoded request allows: what a budget must
        reserve for it, as a live call of the same request reserves."""

    def relearn(self, errors: Sequence[str]) -> bool:
        """Every item of a batch errored with these messages: learn what the model rejects (as a
        live call learns from its 400) and say whether sending the items again could now work."""
        return False

    async def aclose(self) -> None:
        if self._closer is not None and self._loop is asyncio.get_running_loop():
            await self._closer.aclose()
        self._client = self._loop = self._closer = None


async def stainless_guard(provider: str, what: str, coro: Any) -> Any:
    """Await a batch call on the `openai` or `anthropic` SDK (both generated by Stainless: their
    errors have the same names) with its failures as the client's error classes: connection
    failures, 429 and 5xx are retried by the runner; any other status is a BackendError."""
    import importlib

    sdk = importlib.import_module(provider)
    try:
        return await coro
    except (sdk.APIConnectionError, sdk.APITimeoutError) as e:
        raise RetryableError(f"{provider} batch: {what}: {e}") from None
    except sdk.APIStatusError as e:
        if e.status_code == 429 or e.status_code >= 500:
            raise RetryableError(f"{provider} batch: {what}: HTTP {e.status_code}") from None
        raise BackendError(f"{provider} batch: {what} rejected ({e.status_code}): {str(e)[:300]}") from None


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
