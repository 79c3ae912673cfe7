"""What the batch path's bookkeeping costs per 10k requests, and (with --llama) requests/s with
one vs two local llama.cpp servers behind one `openai:` model.

Bookkeeping, timed piece by piece in-process: expanding requests into cache keys, cache lookups
(all misses), building the OpenAI batch JSONL, the keys file + manifest write per batch, parsing a
results file, cache writes. Then end to end: `BatchRunner.run` over the same requests against
tests/fake_batch_server.py (the official SDK uploads, polls and downloads over HTTP), and the
cached re-run a stage then makes with plain `llm.generate` calls.

    python bench/scale.py [--n 10000] [--llama] [--llama-n 48] [--concurrency 8]

`--soak`: 10,000 requests through the client (cache on) at concurrency 64 against an instant fake
with 10% injected faults (throughput, p50/p99 latency, peak RSS, answers = cache entries); then the
limiter against a fake that enforces 6,000 rpm with 429s above it, old limiter against new.

    python bench/scale.py --soak [--soak-n 10000] [--soak-rpm 6000] [--soak-seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fake_batch_server import FakeBatchServer  # noqa: E402

from traitforge.config import ModelSpec  # noqa: E402
from traitforge.jsonl import write_json_atomic  # noqa: E402
from traitforge.llm.base import GenerateParams  # noqa: E402
from traitforge.llm.batch import BatchRunner  # noqa: E402
from traitforge.llm.batch.openai import _item  # noqa: E402
from traitforge.llm.registry import make_llm  # noqa: E402
from traitforge.runstore import RunStore  # noqa: E402


def requests_(n: int) -> list[tuple[str, GenerateParams]]:
    # Prompt sizes like a document-generation step (~1.5k characters).
    body = "Write a short document in the genre of a field guide about the assistant's honesty. " * 18
    return [(f"[{i}] {body}", GenerateParams(max_tokens=900, temperature=1.0)) for i in range(n)]


def timed(label: str, n: int, fn, rows: list) -> object:
    t = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t
    rows.append((label, dt, dt / n * 10_000))
    return out


def bookkeeping(n: int, tmp: Path) -> list:
    rows: list = []
    with FakeBatchServer() as srv:
        llm = make_llm(ModelSpec(model="openai:gpt-4o-mini", base_url=srv.url + "/v1"), cache=tmp / "c1.sqlite")
        store = RunStore(tmp / "run1")
        runner = BatchRunner(llm, store, "bench", quiet=True)
        reqs = requests_(n)
        timed("expand requests -> cache keys", n, lambda: runner._expand(reqs), rows)
        keys = list(runner._units)
        timed("cache lookups (all misses)", n, lambda: [llm.cache.get(k) for k in keys], rows)
        chunks = timed("build batch JSONL lines", n, lambda: runner._chunks(keys), rows)
        data = timed("serialise request file", n, lambda: "".join(json.dumps(e) + "\n" for _, enc in chunks
                                                                     for e in enc).encode(), rows)
        rows.append((f"  (request file: {len(data) / 2**20:.1f} MiB for {n} requests)", None, None))

        def manifest_writes():
            for ks, _ in chunks:
                write_json_atomic(store.path("batches", "bench", "x.keys.json"), {"keys": ks})
                store.manifest.setdefault("batches", {}).setdefault("bench", []).append({"id": "x", "collected": False})
                store.save()
        timed(f"keys file + manifest write ({len(chunks)} batch)", n, manifest_writes, rows)
        out_lines = [json.dumps({"custom_id": k, "error": None, "response": {"status_code": 200, "body": {
            "choices": [{"message": {"content": "x" * 2000}}], "usage": {"prompt_tokens": 400,
                                                                          "completion_tokens": 500}}}})
                     for k in keys]
        parsed = timed("parse results file", n, lambda: [_item(json.loads(line)) for line in out_lines], rows)
        timed("cache writes (one commit each)", n,
              lambda: [llm.cache.put(k, r.text, r.input_tokens, r.output_tokens) for k, r in zip(keys, parsed)], rows)

        # For comparison: the same rows in ONE transaction (what an LLMCache.put_many would do).
        def one_transaction():
            from traitforge.llm.cache import LLMCache, _checksum

            c = LLMCache(tmp / "c3.sqlite")
            vals = []
            for k, r in zip(keys, parsed):
                v = json.dumps({"text": r.text, "input_tokens": r.input_tokens, "output_tokens": r.output_tokens})
                vals.append((k, v, _checksum(v)))
            with c._lock:
                c._db.executemany("INSERT OR REPLACE INTO llm_cache (key, value, checksum) VALUES (?, ?, ?)", vals)
                c._db.commit()
        timed("  (same writes in one transaction)", n, one_transaction, rows)

        # End to end over HTTP with the SDK, then the stage's cached re-run.
        llm2 = make_llm(ModelSpec(model="openai:gpt-4o-mini", base_url=srv.url + "/v1"), cache=tmp / "c2.sqlite")

        async def e2e():
            try:
                return await BatchRunner(llm2, RunStore(tmp / "run2"), "bench", poll_interval_s=0.05,
                                         quiet=True).run(reqs)
            finally:
                await llm2.aclose()
        rep = timed("END TO END BatchRunner.run (fake server)", n, lambda: asyncio.run(e2e()), rows)
        assert rep.succeeded == n, rep

        async def rerun():
            return [await llm2.generate(m, p) for m, p in reqs]
        timed("stage re-run from cache (llm.generate)", n, lambda: asyncio.run(rerun()), rows)
        assert llm2.usage.calls == 0 and llm2.usage.cached == n
    return rows


def llama_throughput(n: int, concurrency: int) -> list:
    from llama_server import MODEL_ALIAS, llama_server

    rows: list = []
    prompts = [f"Give one word that rhymes with item {i}." for i in range(n)]

    async def go(urls: list[str]) -> float:
        llm = make_llm(ModelSpec(model=f"openai:{MODEL_ALIAS}", base_url=urls, concurrency=concurrency))
        t = time.perf_counter()
        try:
            await asyncio.gather(*(llm.generate_one(p, max_tokens=16, temperature=0.0) for p in prompts))
        finally:
            await llm.aclose()
        return time.perf_counter() - t

    with llama_server(n_ctx=2048, threads=1) as a:
        dt = asyncio.run(go([a]))
        rows.append(("1 llama.cpp server (1 thread)", dt, n / dt))
        with llama_server(n_ctx=2048, threads=1) as b:
            dt = asyncio.run(go([a, b]))
            rows.append(("2 llama.cpp servers (1 thread each)", dt, n / dt))
    return rows


# --- soak: the client under load and faults, and the limiter against an enforced limit --------------


class InstantFake:
    """OpenAI chat completions on 127.0.0.1 that answer at once: asyncio HTTP/1.1 (keep-alive) on
    its own thread and loop. `fault_rate`: that share of requests gets a 429 (half with Retry-After),
    500, 503, a truncated JSON body or a connection reset, from a seeded plan; a fault is never an
    answer. `rpm`: a limit enforced as a token bucket of rpm/60 per second with one second's burst
    (how providers enforce "6,000 rpm": about 100 a second), 429 + retry-after-ms above it, and
    x-ratelimit-* headers on every answer."""

    FAULTS = ("429", "429-bare", "500", "503", "truncated", "reset")

    def __init__(self, fault_rate: float = 0.0, rpm: float | None = None, seed: int = 0):
        import random
        import threading

        self.fault_rate, self.rpm = fault_rate, rpm
        self.rng = random.Random(seed)
        self.ok = self.faults = self.limited = 0
        self.level = rpm / 60 if rpm else 0.0
        self.updated = time.monotonic()
        self.window: list[float] = []  # answer times, for x-ratelimit-remaining (per minute)
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self.port = 0

    def _serve(self) -> None:
        async def main() -> None:
            srv = await asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=512)
            self.port = srv.sockets[0].getsockname()[1]
            self._stop = asyncio.Event()
            self._loop = asyncio.get_running_loop()
            self._ready.set()
            async with srv:
                await self._stop.wait()
        asyncio.run(main())

    def __enter__(self) -> "InstantFake":
        self._thread.start()
        self._ready.wait()
        return self

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _fate(self) -> tuple[str, float]:
        if self.rpm:
            now = time.monotonic()
            rate = self.rpm / 60
            self.level = min(rate, self.level + (now - self.updated) * rate)  # one second's burst
            self.updated = now
            if self.level < 1:
                self.limited += 1
                return "limited", (1 - self.level) / rate
            self.level -= 1
        if self.fault_rate and self.rng.random() < self.fault_rate:
            self.faults += 1
            return self.FAULTS[self.rng.randrange(len(self.FAULTS))], 0.0
        self.ok += 1
        return "ok", 0.0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                length = 0
                while True:
                    h = await reader.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    k, _, v = h.decode("latin-1").partition(":")
                    if k.strip().lower() == "content-length":
                        length = int(v)
                await reader.readexactly(length)
                fate, wait = self._fate()
                headers: dict[str, str] = {}
                if fate == "reset":
                    writer.transport.abort()
                    return
                if fate in ("ok", "truncated"):
                    status = 200
                    body = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "fake",
                                       "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                                                    "finish_reason": "stop"}],
                                       "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10}}).encode()
                    if fate == "truncated":
                        body = body[: len(body) // 2]
                    if self.rpm:
                        now = time.monotonic()
                        self.window.append(now)
                        while self.window and self.window[0] < now - 60:
                            self.window.pop(0)
                        headers = {"x-ratelimit-limit-requests": str(int(self.rpm)),
                                   "x-ratelimit-remaining-requests": str(max(0, int(self.rpm) - len(self.window))),
                                   "x-ratelimit-reset-requests": "60s"}
                else:
                    status = 429 if fate in ("limited", "429", "429-bare") else int(fate)
                    if fate == "limited":
                        headers = {"retry-after-ms": str(max(1, round(wait * 1000)))}
                    elif fate == "429":
                        headers = {"retry-after": "0.05"}
                    body = json.dumps({"error": {"message": f"{fate} (instant fake)", "code": status}}).encode()
                head = f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
                writer.write(head.encode() + body)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()


def _peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def soak(n: int, concurrency: int, fault_rate: float, tmp: Path) -> dict:
    """n different prompts through make_llm's client (cache on) at `concurrency`, `fault_rate` faults."""
    from traitforge.llm.cache import LLMCache

    with InstantFake(fault_rate=fault_rate, seed=1) as fake:
        cache = LLMCache(tmp / "soak.sqlite")
        llm = make_llm(ModelSpec(model="openai:soak", base_url=fake.url, concurrency=concurrency, max_retries=8),
                       cache=cache)
        lat: list[float] = []

        todo = iter(range(n))

        async def worker() -> None:  # `concurrency` callers, each sending its next request when one returns
            for i in todo:
                t = time.perf_counter()
                await llm.generate_one(f"soak request {i}", max_tokens=16)
                lat.append(time.perf_counter() - t)

        async def go() -> float:
            t = time.perf_counter()
            try:
                await asyncio.gather(*(worker() for _ in range(concurrency)))
            finally:
                await llm.aclose()
            return time.perf_counter() - t

        dt = asyncio.run(go())
        entries = len(cache)
    lat.sort()
    return {"n": n, "seconds": dt, "rps": n / dt, "p50_ms": lat[len(lat) // 2] * 1000,
            "p99_ms": lat[int(len(lat) * 0.99)] * 1000, "faults": fake.faults, "answers": fake.ok,
            "cache_entries": entries, "peak_rss_mib": _peak_rss_mib()}


class OldTokenBucket:
    """llm/limits.py's TokenBucket before the soak (a full minute's worth of burst), kept here to
    measure old against new in one run."""

    def __init__(self, rate_per_min: float):
        from traitforge.llm.limits import PerLoop

        self.rate = rate_per_min / 60.0
        self.capacity = rate_per_min
        self.level = rate_per_min
        self.updated = time.monotonic()
        self._lock = PerLoop(asyncio.Lock)

    def set_rate(self, rate_per_min: float) -> None:
        self.rate = rate_per_min / 60.0
        self.capacity = rate_per_min
        self.level = min(self.level, self.capacity)

    async def take(self, amount: float) -> None:
        amount = min(amount, self.capacity)
        async with self._lock.get():
            while True:
                now = time.monotonic()
                self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
                self.updated = now
                if self.level >= amount:
                    self.level -= amount
                    return
                await asyncio.sleep((amount - self.level) / self.rate)


def limiter_run(rpm: float, seconds: float, concurrency: int, configured: bool, old: bool) -> dict:
    """Requests as fast as `concurrency` allows for `seconds` against a fake enforcing `rpm`: the rate
    of answers after the first 5 s (steady state) against the limit, and the share answered 429.
    `configured`: the spec sets rpm; else the limiter learns it from the x-ratelimit headers."""
    import traitforge.llm.limits as limits
    from traitforge.llm.errors import BackendError

    real = limits.TokenBucket
    if old:
        limits.TokenBucket = OldTokenBucket  # type: ignore[misc]
    try:
        with InstantFake(rpm=rpm) as fake:
            llm = make_llm(ModelSpec(model="openai:limited", base_url=fake.url, concurrency=concurrency,
                                     rpm=rpm if configured else None, max_retries=20))
            if old:
                llm.limiter._learned = True  # the old limiter sent the first wave before any rate was known
            done: list[float] = []
            gave_up = 0

            async def worker(w: int) -> None:
                nonlocal gave_up
                i = 0
                while time.perf_counter() < end:
                    try:
                        await llm.generate_one(f"w{w} r{i}", max_tokens=16)
                        done.append(time.perf_counter())
                    except BackendError:
                        gave_up += 1  # 429s past max_retries
                    i += 1

            async def go() -> None:
                try:
                    await asyncio.gather(*(worker(w) for w in range(concurrency)))
                finally:
                    await llm.aclose()

            start = time.perf_counter()
            end = start + seconds
            asyncio.run(go())
            steady = [t for t in done if start + 5 <= t <= end]
            rate = len(steady) / (end - start - 5) * 60
            sent = fake.ok + fake.limited
    finally:
        limits.TokenBucket = real  # type: ignore[misc]
    return {"rpm_achieved": rate, "share_of_limit": rate / rpm, "requests": sent, "answered_429": fake.limited,
            "share_429": fake.limited / max(1, sent), "gave_up": gave_up}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--llama", action="store_true")
    ap.add_argument("--llama-n", type=int, default=48)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--soak", action="store_true", help="only the soak and limiter figures")
    ap.add_argument("--soak-n", type=int, default=10_000)
    ap.add_argument("--soak-rpm", type=float, default=6000)
    ap.add_argument("--soak-seconds", type=float, default=30)
    args = ap.parse_args()
    if args.soak:
        with tempfile.TemporaryDirectory() as tmp:
            r = soak(args.soak_n, 64, 0.10, Path(tmp))
        print(f"soak: {r['n']} requests, concurrency 64, 10% injected faults ({r['faults']} faults, "
              f"{r['answers']} answers, {r['cache_entries']} cache entries)")
        print(f"  {r['seconds']:.1f} s, {r['rps']:.0f} req/s, latency p50 {r['p50_ms']:.1f} ms, "
              f"p99 {r['p99_ms']:.0f} ms, peak RSS {r['peak_rss_mib']:.0f} MiB")
        print(f"limiter vs a fake enforcing {args.soak_rpm:g} rpm, concurrency 64, {args.soak_seconds:g} s each "
              "(steady state after 5 s):")
        for old in (True, False):
            for configured in (True, False):
                r = limiter_run(args.soak_rpm, args.soak_seconds, 64, configured, old)
                print(f"  {'old' if old else 'new'} limiter, rpm {'set in spec' if configured else 'from headers'}: "
                      f"{r['rpm_achieved']:.0f} rpm = {100 * r['share_of_limit']:.1f}% of the limit; "
                      f"{r['answered_429']} of {r['requests']} requests answered 429 ({100 * r['share_429']:.2f}%)"
                      + (f", {r['gave_up']} calls gave up" if r["gave_up"] else ""))
        return
    with tempfile.TemporaryDirectory() as tmp:
        rows = bookkeeping(args.n, Path(tmp))
    print(f"batch bookkeeping, {args.n} requests (1 sample each):")
    print(f"  {'step':<48}{'seconds':>9}{'s per 10k':>11}")
    for label, dt, per in rows:
        print(f"  {label:<48}" + ("" if dt is None else f"{dt:>9.2f}{per:>11.2f}"))
    if args.llama:
        print(f"llama.cpp throughput, {args.llama_n} requests, max_tokens=16, concurrency {args.concurrency}:")
        for label, dt, rps in llama_throughput(args.llama_n, args.concurrency):
            print(f"  {label:<48}{dt:>9.2f} s {rps:>7.2f} req/s")


if __name__ == "__main__":
    main()
