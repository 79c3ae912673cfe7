"""Concurrency and rate limits per backend: a semaphore plus token buckets for requests and
tokens per minute, with a shared cool-down after a 429 (every caller waits, not just one)."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import datetime, timezone
from typing import Any, Callable, Generic, TypeVar

T = TypeVar("T")


class PerLoop(Generic[T]):
    """One asyncio primitive per event loop. Each stage runs in its own `asyncio.run`, and a lock
    or semaphore that waited in one loop raises if it is used in the next."""

    def __init__(self, factory: Callable[[], T]):
        self.factory = factory
        self._loop: asyncio.AbstractEventLoop | None = None
        self._obj: T | None = None

    def get(self) -> T:
        loop = asyncio.get_running_loop()
        if self._obj is None or self._loop is not loop:
            self._loop, self._obj = loop, self.factory()
        return self._obj


class TokenBucket:
    """Hands out `rate_per_min` units per minute, with at most BURST_S seconds' worth at once.

    `capacity` is the per-minute limit. The burst used to be a whole minute's worth, so a fresh
    bucket (or one just learned from a rate-limit header) sent a minute of requests at once; a
    provider enforces "6,000 rpm" over much shorter windows (about 100 a second), so most of that
    burst came back 429 (bench/scale.py --soak: 73% of requests at 1,200 rpm). A request bigger
    than the burst waits for a full burst and leaves the bucket in debt, so the average rate holds."""

    BURST_S = 1.0
    # Run a little under the limit: requests reach the provider with jitter, and at exactly the
    # limit every early arrival is a 429; 3% under, its bucket keeps a little slack for them.
    HEADROOM = 0.97

    def __init__(self, rate_per_min: float):
        self.set_rate(rate_per_min)
        # Empty at the start: the provider's own bucket starts full, and that slack absorbs the
        # jitter of requests on their way (starting full, the first second drew 429s).
        self.level = 0.0
        self.updated = time.monotonic()
        self._lock = PerLoop(asyncio.Lock)

    def set_rate(self, rate_per_min: float) -> None:
        self.rate = rate_per_min / 60.0 * self.HEADROOM
        self.capacity = rate_per_min
        self.burst = max(1.0, self.rate * self.BURST_S)
        self.level = min(getattr(self, "level", 0.0), self.burst)

    async def take(self, amount: float) -> None:
        async with self._lock.get():
            while True:
                now = time.monotonic()
                self.level = min(self.burst, self.level + (now - self.updated) * self.rate)
                self.updated = now
                need = min(amount, self.burst)
                if self.level >= need:
                    self.level -= amount  # may go below 0: a debt that later requests wait out
                    return
                await asyncio.sleep((need - self.level) / self.rate)


class Limiter:
    """`learn_first`: while no rate is known (none configured, no rate-limit header seen yet), the
    first request goes alone and the others wait for its answer, whose headers set the rates: else
    the first wave of `concurrency` requests all goes out before anything is known."""

    def __init__(self, concurrency: int, rpm: float | None = None, tpm: float | None = None,
                 learn_first: bool = False):
        self.concurrency = concurrency
        self._sem = PerLoop(lambda: asyncio.Semaphore(self.concurrency))
        self.requests = TokenBucket(rpm) if rpm else None
        self.tokens = TokenBucket(tpm) if tpm else None
        self._cooldown_until = 0.0
        self._learned = not learn_first
        self._first_loop: asyncio.AbstractEventLoop | None = None
        self._first_done = PerLoop(asyncio.Event)

    def _semaphore(self) -> asyncio.Semaphore:
        return self._sem.get()

    def cool_down(self, seconds: float) -> None:
        self._cooldown_until = max(self._cooldown_until, time.monotonic() + seconds)

    def update_from_headers(self, headers: Any) -> None:
        """Follow the provider's own rate-limit headers (any mapping, httpx.Headers or (k, v) pairs).

        OpenAI: x-ratelimit-{limit,remaining,reset}-{requests,tokens} (reset like "6m0s", "20ms").
        Anthropic: anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}
        (reset an RFC 3339 time). A limit sets the bucket's per-minute rate (creating the bucket if
        none was configured); `remaining` caps what the bucket may hand out now; remaining 0 cools
        everyone down until the reset. Junk values are ignored: this never raises."""
        try:
            items = headers.items() if hasattr(headers, "items") else headers
            h = {str(k).lower(): str(v).strip() for k, v in items}
        except Exception:  # noqa: BLE001 - headers from a misbehaving server must not break a call
            return
        for kind in ("requests", "tokens"):
            limit = remaining = reset = None
            for prefix in (f"x-ratelimit-%s-{kind}", f"anthropic-ratelimit-{kind}-%s"):
                limit = limit if limit is not None else _number(h.get(prefix % "limit"))
                remaining = remaining if remaining is not None else _number(h.get(prefix % "remaining"))
                reset = reset if reset is not None else _reset_seconds(h.get(prefix % "reset"))
            if kind == "tokens" and limit is None:
                # Anthropic may report only split input/output token limits: the input one binds first.
                limit = _number(h.get("anthropic-ratelimit-input-tokens-limit"))
                remaining = _number(h.get("anthropic-ratelimit-input-tokens-remaining"))
                reset = _reset_seconds(h.get("anthropic-ratelimit-input-tokens-reset"))
            bucket = self.requests if kind == "requests" else self.tokens
            if limit is not None and limit > 0:
                if bucket is None:
                    bucket = TokenBucket(limit)
                    if kind == "requests":
                        self.requests = bucket
                    else:
                        self.tokens = bucket
                elif abs(bucket.capacity - limit) > 1e-9:
                    bucket.set_rate(limit)
            if remaining is not None and remaining >= 0:
                if bucket is not None:
                    bucket.level = min(bucket.level, remaining)
                if remaining < 1 and reset:
                    self.cool_down(reset)

    async def acquire(self, est_tokens: int) -> None:
        if not self._learned and self.requests is None and self.tokens is None:
            loop = asyncio.get_running_loop()
            if self._first_loop is loop:
                await self._first_done.get().wait()
            else:
                self._first_loop = loop  # this request goes first
        await self._semaphore().acquire()
        try:
            wait = self._cooldown_until - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if self.requests:
                await self.requests.take(1)
            if self.tokens:
                await self.tokens.take(est_tokens)
        except BaseException:
            self._semaphore().release()
            raise

    def release(self) -> None:
        """After each attempt (its headers already passed to update_from_headers)."""
        self._semaphore().release()
        if not self._learned and self._first_loop is not None:
            self._learned = True
            self._first_done.get().set()


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def _number(v: str | None) -> float | None:
    if v is None:
        return None
    try:
        x = float(v)
    except ValueError:
        return None
    return x if x == x and x not in (float("inf"), float("-inf")) else None


def _reset_seconds(v: str | None) -> float | None:
    """Seconds until a reset given as "1.5", "6m0s", "20ms", "1h2m3s" or an RFC 3339 time."""
    if not v:
        return None
    n = _number(v)
    if n is not None:
        return max(0.0, n)
    parts = _DURATION.findall(v)
    if parts and "".join(a + b for a, b in parts) == v.replace(" ", ""):
        unit = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
        return sum(float(a) * unit[b] for a, b in parts)
    try:
        t = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return max(0.0, t.timestamp() - time.time())
