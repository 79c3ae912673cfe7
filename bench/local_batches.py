"""The local backend's batch cuts (`plan_batches`) against fixed cuts, on one queue, in one run.

    python bench/local_batches.py [--rows 12] [--repeat 1]

A queue shaped like an evaluation's grading burst as run.log shows it: judge prompts of 30 to
1,400 tokens (agentic transcripts beside one-line verdicts), answer limits of 32, 64 and 600
tokens. The embedded model answers it greedily twice: rows sorted by prompt length and cut every
`batch_size` rows (the old way), then cut by `plan_batches`. Prints both times, the ratio, and
whether every answer is the same.
"""

from __future__ import annotations

import argparse
import asyncio
import pydoc_data.topics
import random
import time

from traitforge.llm.base import GenerateParams, Message
from traitforge.llm.providers import local_hf


def queue(rows: int, seed: int = 0) -> list[tuple[list[Message], GenerateParams]]:
    rng = random.Random(seed)
    text = " ".join(pydoc_data.topics.topics.values()).split()
    out = []
    for _ in range(rows):
        words = rng.choice([20, 60, 150, 400, 1000])  # ~1.3 tokens a word
        start = rng.randrange(len(text) - words)
        limit = rng.choice([32, 32, 64, 64, 600])
        prompt = "Read this and answer in one line: is it about Python?\n\n" + " ".join(text[start:start + words])
        out.append(([Message("user", prompt)], GenerateParams(temperature=0.0, max_tokens=limit)))
    return out


def fixed_cuts(prompts, limits, batch_size, costs=None):
    order = sorted(range(len(prompts)), key=lambda r: prompts[r])
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def timed(backend, reqs) -> tuple[float, list[str]]:
    t0 = time.perf_counter()
    got = asyncio.run(backend.generate_batch(reqs))
    return time.perf_counter() - t0, [c.texts[0] for c in got]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=12)
    p.add_argument("--repeat", type=int, default=1)
    a = p.parse_args()
    backend = local_hf.LocalHFBackend("smollm2-135m")
    reqs = queue(a.rows)
    asyncio.run(backend.generate_batch(reqs[:1]))  # loads the model outside the timings
    planned = local_hf.plan_batches
    for rep in range(a.repeat):
        local_hf.plan_batches = fixed_cuts
        old_s, old = timed(backend, reqs)
        local_hf.plan_batches = planned
        new_s, new = timed(backend, reqs)
        same = sum(x == y for x, y in zip(old, new))
        print(f"{a.rows} rows: fixed cuts {old_s:.1f}s, planned {new_s:.1f}s, {old_s / new_s:.2f}x; "
              f"answers equal {same}/{len(reqs)}", flush=True)


if __name__ == "__main__":
    main()
