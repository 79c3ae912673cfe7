"""What the batch path's bookkeeping costs per 10k requests, and (with --llama) requests/s with
one vs two local llama.cpp servers behind one `openai:` model.

Bookkeeping, timed piece by piece in-process: expanding requests into cache keys, cache lookups
(all misses), building the OpenAI batch JSONL, the keys file + manifest write per batch, parsing a
results file, cache writes. Then end to end: `BatchRunner.run` over the same requests against
tests/fake_batch_server.py (the official SDK uploads, polls and downloads over HTTP), and the
cached re-run a stage then makes with plain `llm.generate` calls.

    python bench/scale.py [--n 10000] [--llama] [--llama-n 48] [--concurrency 8]
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--llama", action="store_true")
    ap.add_argument("--llama-n", type=int, default=48)
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()
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
