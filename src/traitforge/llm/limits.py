"""Concurrency and rate limits per backend: a semaphore plus token buckets for requests and
tokens per minute, with a shared cool-down after a 429 (every caller waits, not just one)."""

from __future__ import annotations

import asyncio
import time


class TokenBucket:
    """Refills `rate_per_min` units per minute up to one minute's worth of burst."""

    def __init__(self, rate_per_min: float):
        self.rate = rate_per_min / 60.0
        self.capacity = rate_per_min
        self.level = rate_per_min
        self.updated = time.monotonic()
        self._lock = asyncio.Lock()

    def set_rate(self, rate_per_min: float) -> None:
        self.rate = rate_per_min / 60.0
        self.capacity = rate_per_min
        self.level = min(self.level, self.capacity)

    async def take(self, amount: float) -> None:
        amount = min(amount, self.capacity)  # a request bigger than a minute's budget still runs
        async with self._lock:
            while True:
                now = time.monotonic()
                self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
                self.updated = now
                if self.level >= amount:
                    self.level -= amount
                    return
                await asyncio.sleep((amount - self.level) / self.rate)


class Limiter:
    def __init__(self, concurrency: int, rpm: float | None = None, tpm: float | None = None):
        self.concurrency = concurrency
        self._sem: asyncio.Semaphore | None = None
        self.requests = TokenBucket(rpm) if rpm else None
        self.tokens = TokenBucket(tpm) if tpm else None
        self._cooldown_until = 0.0

    def _semaphore(self) -> asyncio.Semaphore:
        # Created lazily so it binds to the running event loop.
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.concurrency)
        return self._sem

    def cool_down(self, seconds: float) -> None:
        self._cooldown_until = max(self._cooldown_until, time.monotonic() + seconds)

    def update_from_headers(self, headers: dict[str, str]) -> None:
        """Follow the provider's own numbers where it reports them (x-ratelimit-limit-*)."""
        for key, bucket in (("x-ratelimit-limit-requests", self.requests),
                            ("x-ratelimit-limit-tokens", self.tokens)):
            if bucket and key in headers:
                try:
                    bucket.set_rate(float(headers[key]))
                except ValueError:
                    pass

    async def acquire(self, est_tokens: int) -> None:
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
        self._semaphore().release()
