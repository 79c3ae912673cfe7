"""Pass 1: exact duplicates (hash of the normalised text) and near duplicates (MinHash LSH over
word shingles, datasketch's MinHash and index), within one dataset. The first occurrence is kept;
later ones are dropped with `duplicate_of` naming the kept row."""

from __future__ import annotations

import hashlib
from typing import Sequence, TypeVar

import numpy as np
from datasketch import MinHash, MinHashLSH

from traitforge.curate.records import Dataset
from traitforge.shared.text import dedup_text
from traitforge.textmatch import words
from traitforge.types import Chat, Document, Drop

R = TypeVar("R", Document, Chat)
NUM_PERM = 128


def shingles(toks: list[str], k: int) -> set[bytes]:
    """The text's word k-grams, encoded; a text shorter than k words is one shingle."""
    k = max(1, min(k, len(toks)))
    return {" ".join(g).encode() for g in zip(*(toks[i:] for i in range(k)))} or {b""}


class Signer:
    """datasketch MinHash signatures of word shingles. The permutations are built once and each row
    starts from a copy of the empty template (what MinHash.bulk does), not rebuilt per row."""

    def __init__(self, shingle: int, num_perm: int = NUM_PERM, seed: int = 1):
        self.k = shingle
        self.template = MinHash(num_perm=num_perm, seed=seed)

    def sign(self, toks: list[str]) -> MinHash:
        mh = self.template.copy()
        mh.update_batch(shingles(toks, self.k))
        return mh


def _band_digest(band: bytes) -> bytes:
    return hashlib.blake2b(band, digest_size=8).digest()


def dedup(rows: Sequence[R], dataset: Dataset, threshold: float, shingle: int = 3,
          seed: int = 1, templated: Sequence[str] = ()) -> tuple[list[R], list[Drop]]:
    """Rows of `templated` traits (curation.template_traits: a control like the canary, alike on
    purpose) are only removed as exact duplicates, never as near duplicates."""
    kept: list[R] = []
    drops: list[Drop] = []
    exact: dict[bytes, str] = {}
    # Bands are indexed by an 8-byte digest instead of their raw bytes: a large share of the index's memory.
    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM, hashfunc=_band_digest)
    sigs: dict[str, np.ndarray] = {}
    signer = Signer(shingle, NUM_PERM, seed)
    for row in rows:
        toks = words(dedup_text(row))
        key = hashlib.blake2b(" ".join(toks).encode(), digest_size=16).digest()
        if key in exact:
            drops.append(Drop(dataset=dataset, row_id=row.id, step="dedup", reason="exact duplicate",
                              duplicate_of=exact[key]))
            continue
        if set(row.trait_ids) & set(templated):
            exact[key] = row.id
            kept.append(row)
            continue
        mh = signer.sign(toks)
        # LSH returns candidates; confirm with the estimated Jaccard (it has false positives).
        best, best_j = None, -1.0
        for cand in lsh.query(mh):
            j = float(np.mean(mh.hashvalues == sigs[cand]))
            if j >= threshold and j > best_j:
                best, best_j = cand, j
        if best is not None:
            drops.append(Drop(dataset=dataset, row_id=row.id, step="dedup",
                              reason=f"near duplicate (Jaccard ~{best_j:.2f} >= {threshold})",
                              duplicate_of=best))
            continue
        exact[key] = row.id
        if row.id not in sigs:  # a repeated id would break the LSH index; its text still counts
            sigs[row.id] = mh.hashvalues  # kept alone (uint32), not the MinHash with its permutations
            lsh.insert(row.id, mh)
        kept.append(row)
    return kept, drops
