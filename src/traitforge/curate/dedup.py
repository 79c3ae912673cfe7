"""Step 1: exact duplicates (hash of the normalised text) and near duplicates (MinHash LSH over
word shingles, datasketch's index), within one dataset. The first occurrence is kept; later ones
are dropped with `duplicate_of` naming the kept row."""

from __future__ import annotations

import hashlib
import zlib
from typing import Sequence, TypeVar

import numpy as np
from datasketch import LeanMinHash, MinHashLSH

from traitforge.curate.records import Dataset
from traitforge.curate.text import dedup_text, words
from traitforge.types import Chat, Document, Drop

R = TypeVar("R", Document, Chat)
NUM_PERM = 128
_PRIME = np.uint64((1 << 61) - 1)
_MAX32 = np.uint64(0xFFFFFFFF)
# Odd multipliers that mix the word hashes of one shingle (position matters: "a b" != "b a").
_MIX = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93,
                 0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53], dtype=np.uint64)


class Signer:
    """MinHash signatures computed with numpy, one row at a time: stable word hashes (crc32),
    combined per shingle, then num_perm affine permutations (the scheme datasketch uses) and a
    minimum. About 20x faster than hashing every shingle string with sha1 in Python."""

    def __init__(self, shingle: int, num_perm: int = NUM_PERM, seed: int = 1):
        if shingle > len(_MIX):
            raise ValueError(f"dedup_shingle must be at most {len(_MIX)}")
        self.k = shingle
        rng = np.random.RandomState(seed)
        self.a = rng.randint(1, (1 << 61) - 1, size=num_perm, dtype=np.uint64)[:, None]
        self.b = rng.randint(0, (1 << 61) - 1, size=num_perm, dtype=np.uint64)[:, None]
        self.num_perm, self.seed = num_perm, seed
        self._word: dict[str, int] = {}

    def _word_hashes(self, toks: list[str]) -> np.ndarray:
        cache = self._word
        out = []
        for t in toks:
            h = cache.get(t)
            if h is None:
                h = cache[t] = zlib.crc32(t.encode()) | 1
            out.append(h)
        return np.array(out, dtype=np.uint64)

    def sign(self, toks: list[str]) -> LeanMinHash:
        w = self._word_hashes(toks or [""])
        k = min(self.k, len(w))  # short texts: the whole text is one shingle
        n = len(w) - k + 1
        sh = np.zeros(n, dtype=np.uint64)
        # uint64 multiplication wraps around silently for arrays: that is the mixing we want.
        for j in range(k):
            sh ^= w[j:j + n] * _MIX[j]
        sh = np.unique(sh >> np.uint64(32))
        hv = ((self.a * sh[None, :] + self.b) % _PRIME) & _MAX32
        # LeanMinHash: just the values (a MinHash would rebuild its permutations every time).
        return LeanMinHash(seed=self.seed, hashvalues=hv.min(axis=1), scheme="legacy")


def _band_digest(band: bytes) -> bytes:
    return hashlib.blake2b(band, digest_size=8).digest()


def dedup(rows: Sequence[R], dataset: Dataset, threshold: float, shingle: int = 3,
          seed: int = 1) -> tuple[list[R], list[Drop]]:
    kept: list[R] = []
    drops: list[Drop] = []
    exact: dict[bytes, str] = {}
    # Bands are indexed by an 8-byte digest instead of their ~100 raw bytes: a large share of the index's memory.
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
            sigs[row.id] = mh.hashvalues.astype(np.uint32)  # values are < 2**32: half the memory
            lsh.insert(row.id, mh)
        kept.append(row)
    return kept, drops
