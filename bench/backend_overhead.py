"""How much does traitforge's client (limiter, retries, cache bookkeeping) cost over a bare SDK loop?

Sends the same N chat requests to one local llama.cpp server twice: through `make_llm("openai:...")`
with the cache disabled, and through a bare `openai.AsyncOpenAI` + asyncio.Semaphore loop at the same
concurrency. Then fills a cache and times an identical cached re-run. Last, the same two loops
against tests/fault_server.py, which answers at once, so the client's own per-request cost shows
(against llama.cpp the server's compute time dominates both loops).

    python bench/backend_overhead.py [--n 200] [--concurrency 8] [--max-tokens 8] [--threads 1] [--rounds 1]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fault_server import FaultServer  # noqa: E402
from llama_server import MODEL_ALIAS, llama_server  # noqa: E402

from traitforge.config import ModelSpec  # noqa: E402
from traitforge.llm.registry import make_llm  # noqa: E402


def prompts(n: int) -> list[str]:
    return [f"Give one word that rhymes with item {i}." for i in range(n)]


async def bare(url: str, items: list[str], concurrency: int, max_tokens: int) -> list[str]:
    import openai

    client = openai.AsyncOpenAI(api_key="sk-no-key-needed", base_url=url, max_retries=0, timeout=300)
    sem = asyncio.Semaphore(concurrency)

    async def one(p: str) -> str:
        async with sem:
            r = await client.chat.completions.create(
                model=MODEL_ALIAS, messages=[{"role": "user", "content": p}],
                max_tokens=max_tokens, temperature=0.0)
            return r.choices[0].message.content or ""

    try:
        return await asyncio.gather(*(one(p) for p in items))
    finally:
        await client.close()


async def traitforge(url: str, items: list[str], concurrency: int, max_tokens: int,
                     cache: Path | None) -> tuple[list[str], int, int]:
    llm = make_llm(ModelSpec(model=f"openai:{MODEL_ALIAS}", base_url=url, concurrency=concurrency,
                             timeout_s=300), cache=cache)
    try:
        out = await asyncio.gather(*(llm.generate_one(p, max_tokens=max_tokens, temperature=0.0)
                                     for p in items))
    finally:
        await llm.aclose()
    return out, llm.usage.calls, llm.usage.cached


def timed(coro):
    start = time.perf_counter()
    result = asyncio.run(coro)
    return result, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=8)
    # One server thread: on a small shared machine two spinning llama.cpp threads stall each other.
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=1, help="time both loops this many times, order swapped each round")
    args = ap.parse_args()
    items = prompts(args.n)
    c, mt = args.concurrency, args.max_tokens

    with llama_server(n_ctx=2048, threads=args.threads) as url, tempfile.TemporaryDirectory() as tmp:
        timed(bare(url, prompts(8), c, mt))  # warm-up: first-request costs stay out of both timings
        print(f"llama.cpp server: requests={args.n} concurrency={c} max_tokens={mt} "
              f"server_threads={args.threads}")
        for r in range(args.rounds):
            # Swap the order every round so drift in the machine's load does not favour one loop.
            if r % 2 == 0:
                bare_out, t_bare = timed(bare(url, items, c, mt))
            (tf_out, calls, _), t_tf = timed(traitforge(url, items, c, mt, cache=None))
            if r % 2 == 1:
                bare_out, t_bare = timed(bare(url, items, c, mt))
            same = sum(a == b for a, b in zip(bare_out, tf_out))
            print(f"[round {r + 1}] bare AsyncOpenAI+Semaphore : {t_bare:7.2f} s  ({args.n / t_bare:5.1f} req/s)")
            print(f"[round {r + 1}] traitforge (cache off)     : {t_tf:7.2f} s  "
                  f"({args.n / t_tf:5.1f} req/s, {calls} backend calls)")
            print(f"[round {r + 1}] ratio traitforge/bare      : {t_tf / t_bare:7.3f}   "
                  f"identical greedy replies: {same}/{args.n}")

        cache = Path(tmp) / "cache.sqlite"
        (_, fill_calls, _), t_fill = timed(traitforge(url, items, c, mt, cache=cache))
        (cached_out, re_calls, hits), t_cached = timed(traitforge(url, items, c, mt, cache=cache))
        print(f"traitforge filling cache   : {t_fill:7.2f} s  ({fill_calls} backend calls)")
        print(f"traitforge cached re-run   : {t_cached:7.3f} s  ({re_calls} backend calls, {hits} cache hits)")
        print(f"cached speed-up vs cache-off run: {t_tf / t_cached:,.0f}x")

    with FaultServer() as fs:  # answers at once: what is left is the client-side cost per request
        url = fs.url + "/v1"
        timed(bare(url, prompts(8), c, mt))
        t_bare = t_tf = float("inf")
        for _ in range(3):  # best of three, alternating: this machine is shared and noisy
            t_bare = min(t_bare, timed(bare(url, items, c, mt))[1])
            t_tf = min(t_tf, timed(traitforge(url, items, c, mt, cache=None))[1])
        print(f"instant server (best of 3): bare {t_bare * 1000 / args.n:.2f} ms/req, traitforge "
              f"{t_tf * 1000 / args.n:.2f} ms/req, ratio {t_tf / t_bare:.3f}")

if __name__ == "__main__":
    main()
