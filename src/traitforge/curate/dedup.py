"""Step 1: exact duplicates (hash of the normalised text) and near duplicates (MinHash LSH over
word shingles), within one dataset. The first occurrence is kept; later ones are dropped with
`duplicate_of` naming the kept row."""

from __future__ import annotations

import hashlib
from typing import Sequence, TypeVar

import numpy as np
from datasketch import MinHash, MinHashLSH

from traitforge.curate.records import Dataset
from traitforge.curate.text import dedup_text, normalise, words
from traitforge.types import Chat, Document, Drop

R = TypeVar("R", Document, Chat)
NUM_PERM = 128


def shingles(text: str, k: int) -> set[bytes]:
    toks = words(text)
    if len(toks) < k:  # short texts: the whole text is its one shingle
        return {" ".join(toks).encode()}
    return {" ".join(toks[i:i + k]).encode() for i in range(len(toks) - k + 1)}


def dedup(rows: Sequence[R], dataset: Dataset, threshold: float, shingle: int = 3,
          seed: int = 1) -> tuple[list[R], list[Drop]]:
    kept: list[R] = []
    drops: list[Drop] = []
    exact: dict[str, str] = {}
    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    sigs: dict[str, MinHash] = {}
    texts = [dedup_text(r) for r in rows]
    shingle_sets = [shingles(t, shingle) for t in texts]
    # One vectorised pass for all signatures (much faster than update() per shingle).
    hashes = MinHash.bulk(shingle_sets, num_perm=NUM_PERM, seed=seed)
    for row, text, mh in zip(rows, texts, hashes):
        key = hashlib.sha256(normalise(text).encode()).hexdigest()
        if key in exact:
            drops.append(Drop(dataset=dataset, row_id=row.id, step="dedup", reason="exact duplicate",
                              duplicate_of=exact[key]))
            continue
        # LSH returns candidates; confirm with the estimated Jaccard (it has false positives).
        best, best_j = None, -1.0
        for cand in lsh.query(mh):
            j = float(np.mean(mh.hashvalues == sigs[cand].hashvalues))
            if j >= threshold and j > best_j:
                best, best_j = cand, j
        if best is not None:
            drops.append(Drop(dataset=dataset, row_id=row.id, step="dedup",
                              reason=f"near duplicate (Jaccard ~{best_j:.2f} >= {threshold})",
                              duplicate_of=best))
            continue
        exact[key] = row.id
        if row.id not in sigs:  # a repeated id would break the LSH index; its text still counts
            sigs[row.id] = mh
            lsh.insert(row.id, mh)
        kept.append(row)
    return kept, drops
