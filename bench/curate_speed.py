"""Dedup throughput on synthetic rows: python bench/curate_speed.py [rows]

Rows are ~120-word random texts; every 10th is a one-word edit of an earlier row, so the LSH
index also does real near-duplicate confirmation work."""

from __future__ import annotations

import random
import sys
import time

from traitforge.curate.dedup import dedup
from traitforge.types import Document

WORDS = [f"w{i}" for i in range(5000)]


def main(n: int = 10_000) -> None:
    rng = random.Random(0)
    rows: list[Document] = []
    for i in range(n):
        if i % 10 == 9:
            w = rows[rng.randrange(len(rows))].text.split()
            w[rng.randrange(len(w))] = "changed"
            text = " ".join(w)
        else:
            text = " ".join(rng.choice(WORDS) for _ in range(120))
        rows.append(Document(id=f"d{i}", trait_ids=["t"], text=text))
    t0 = time.perf_counter()
    kept, drops = dedup(rows, "documents", threshold=0.8)
    dt = time.perf_counter() - t0
    print(f"dedup: {n} rows in {dt:.2f}s = {n / dt:,.0f} rows/s; kept {len(kept)}, dropped {len(drops)} "
          f"({sum(d.duplicate_of is not None for d in drops)} with duplicate_of)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
