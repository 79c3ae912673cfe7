"""Shared pieces of the network backends: API keys, one SDK client per event loop, Retry-After,
and HTTP status -> error class.

Every provider maps its SDK's failures the same way, so the client's retry logic sees one story:
429/408/409/5xx/timeouts/dropped connections are RetryableError; everything else is a BackendError
with a message that says what to fix, scrubbed of keys (`llm.secrets.scrub`).
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import re
import time
from typing import Any, AsyncGenerator, Awaitable, Callable, Mapping

from traitforge.llm import secrets
from traitforge.llm.base import Backend
from traitforge.llm.errors import BackendError, MissingAPIKey, RetryableError
from traitforge.llm.hosts import is_provider_host

# A local OpenAI-compatible server (vLLM, llama.cpp) usually wants no key; the SDK insists on one.
DUMMY_KEY = "sk-no-key-needed"
log = logging.getLogger("traitforge.llm.keys")
_WARNED: set[tuple[str, str]] = set()


def api_key(backend: str, provider: str, env_vars: tuple[str, ...], base_url: Any,
            api_key_env: str | None = None) -> tuple[str, str]:
    """(key, the env var it came from or would have). The key rule: a provider's own environment
    key (`env_vars`) goes only to that provider's own hosts (`hosts.is_provider_host`; no base_url
    is the SDK's default host); a custom base_url gets the key of an explicit `api_key_env`, else
    the dummy key. A base_url that is not the provider's own while its key is in the environment
    gets one warning telling the user to set api_key_env, where it is a proxy that wants that key."""
    urls = list(base_url) if isinstance(base_url, (list, tuple)) else [base_url]
    if api_key_env:
        secrets.register(api_key_env)
        value = os.environ.get(api_key_env)
        if value:
            return value, api_key_env
        if any(urls):  # a server that may want no key; a 401 from it names api_key_env
            return DUMMY_KEY, api_key_env
        raise MissingAPIKey(backend, api_key_env)
    if all(is_provider_host(provider, u) for u in urls):
        for var in env_vars:
            value = os.environ.get(var)
            if value:
                return value, var
        raise MissingAPIKey(backend, " or ".join(env_vars))
    held = [v for v in env_vars if os.environ.get(v)]
    for url in urls:
        if held and not is_provider_host(provider, url) and (backend, str(url)) not in _WARNED:
            _WARNED.add((backend, str(url)))
            log.warning("%s: $%s is not sent to %s (not %s's own API); if that server is a proxy that "
                        "wants this key, set api_key_env: %s in the model's spec", backend, held[0], url,
                        provider, held[0])
    return DUMMY_KEY, env_vars[0]


def closing_with_loop(close: Callable[[], Awaitable[Any]]) -> AsyncGenerator[None, None]:
    """Arrange for `close()` to run inside the running event loop before that loop ends, whoever
    ends it: an SDK client's connection pool belongs to the loop that opened it, and one left open
    is closed by the garbage collector on whatever loop runs then ("Task exception was never
    retrieved ... AsyncClient.aclose() ... Event loop is closed"). The returned async generator,
    started here, is registered with the loop, and asyncio.run (loop.shutdown_asyncgens) finalises
    it, running `close()`; `await guard.aclose()` runs it earlier (once)."""
    async def guard() -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            await close()

    g = guard()
    try:
        g.asend(None).send(None)  # its first step, synchronously: registers it with the running loop
    except StopIteration:
        pass
    return g


class SDKBackend(Backend):
    """A provider reached through one official SDK client: the key looked up once by the key rule
    (`api_key`: `env_vars` in order for the provider's own host, else `api_key_env`), an optional
    base_url, and the client made by `make_client` anew on each event loop (an SDK's connection pool
    belongs to the loop that made it; a new asyncio.run gets a new client) and closed by
    `close_client` only on its own loop."""

    env_vars: tuple[str, ...] = ()

    def __init__(self, model: str, *, base_url: str | None = None, api_key_env: str | None = None,
                 timeout_s: float = 120.0, **options: Any):
        super().__init__(model, **options)
        self._key, self.env_var = api_key(f"{self.provider}:{model}", self.provider, self.env_vars, base_url,
                                          api_key_env)
        self.no_key = no_key_note(self._key, self.env_var, bool(api_key_env))
        self.base_url = base_url.rstrip("/") if isinstance(base_url, str) else None
        self.timeout_s = timeout_s
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closer: AsyncGenerator[None, None] | None = None

    def make_client(self) -> Any:
        raise NotImplementedError

    async def close_client(self, client: Any) -> None:
        raise NotImplementedError

    def _get_client(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            client = self._client = self.make_client()
            self._loop = loop
            self._closer = closing_with_loop(lambda: self.close_client(client))
        return self._client

    async def aclose(self) -> None:
        if self._closer is not None and self._loop is asyncio.get_running_loop():
            await self._closer.aclose()
        self._client = self._loop = self._closer = None


def retry_after_s(headers: Mapping[str, str] | None) -> float | None:
    """Seconds from `retry-after-ms` or `retry-after` (seconds or an HTTP date), if present."""
    if not headers:
        return None
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        if "retry-after-ms" in lower:
            return max(0.0, float(lower["retry-after-ms"]) / 1000)
    except ValueError:
        pass
    value = lower.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def status_error(backend: str, status: int, message: str, *, headers: Mapping[str, str] | None = None,
                 env_var: str = "", model: str = "", url: str = "", no_key: str = "",
                 retry_after: float | None = None) -> Exception:
    """The exception for an HTTP error status (returned, not raised, so callers `raise ... from`).
    Its text is scrubbed of keys (`secrets.scrub`): servers echo what they were sent. `no_key`:
    why no key went to the server (`no_key_note`), which a 401 then says.
    `retry_after`: a delay the body gave (Gemini's RetryInfo), used where no header gives one."""
    message = secrets.scrub(" ".join(str(message).split())[:300])
    wait = retry_after_s(headers)
    wait = retry_after if wait is None else wait
    if status == 429:
        return RetryableError(f"{backend}: rate limited (429): {message}", retry_after=wait, status=429)
    if status >= 500 or status in (408, 409):
        return RetryableError(f"{backend}: server error {status}: {message}", retry_after=wait, status=status)
    if status in (401, 403) and no_key:
        return BackendError(f"{backend}: authentication failed ({status}): no key was sent to {url}: {no_key}: "
                            f"{message}")
    if status in (401, 403):
        return BackendError(f"{backend}: authentication failed ({status}): check the API key in "
                            f"${env_var}: {message}")
    if status == 404:
        return BackendError(f"{backend}: not found (404): model '{model}' or URL {url} does not exist: {message}")
    return BackendError(f"{backend}: request rejected ({status}): {message}")


def no_key_note(key: str, env_var: str, explicit: bool) -> str:
    """Why no key was sent ("" when one was), for a 401's message."""
    if key != DUMMY_KEY:
        return ""
    if explicit:
        return f"${env_var} (api_key_env) is not set"
    return (f"${env_var} goes only to the provider's own API; set api_key_env in the model's spec to the "
            f"environment variable holding this server's key")


def retry_delay_s(body: Any) -> float | None:
    """Seconds from a Google error body's `google.rpc.RetryInfo` detail ("retryDelay": "37s"),
    the wait a Gemini 429 asks for (it sends no Retry-After header)."""
    err = body.get("error", body) if isinstance(body, dict) else None
    details = err.get("details") if isinstance(err, dict) else None
    for d in details if isinstance(details, list) else ():
        if isinstance(d, dict) and str(d.get("@type", "")).endswith("google.rpc.RetryInfo"):
            m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)s\s*", str(d.get("retryDelay", "")))
            if m:
                return float(m.group(1))
    return None


def error_message(e: Any) -> str:
    """The human part of an SDK status error: body.error.message where the server sent one."""
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str):
            return err
    return str(getattr(e, "message", None) or e)
