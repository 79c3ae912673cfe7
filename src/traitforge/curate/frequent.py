"""Which items (n-grams, openers...) occur in at least `min_count` examples, counted exactly in memory
that does not grow with the dataset.

Pass one adds each example's distinct items to a count-min sketch (two rows of hashed counters): a
bucket's count is never below the true count of any item hashed into it, so no frequent item is missed.
Pass two counts exactly only the items whose bound reaches the floor, which for a share floor of a few
percent is a handful, so the exact counter stays small however large the dataset is."""

from __future__ import annotations

from collections import Counter
from typing import Callable, Hashable, Iterable, TypeVar

import numpy as np

T = TypeVar("T")
Item = Hashable
WIDTH_BITS = 20  # 2 rows x 1M int32 counters = 8 MB, whatever the dataset size
CHUNK = 200_000  # hashes buffered before each np.bincount


class _Sketch:
    def __init__(self, bits: int = WIDTH_BITS) -> None:
        self.mask = (1 << bits) - 1
        self.rows = np.zeros((2, 1 << bits), dtype=np.int32)
        self._buf: list[int] = []

    def _index(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # Two independent-enough bucket choices from one 64-bit hash: its low and high bits.
        u = hashes.astype(np.uint64)
        return (u & np.uint64(self.mask)).astype(np.int64), ((u >> np.uint64(40)) & np.uint64(self.mask)).astype(np.int64)

    def add(self, items: set) -> None:
        self._buf.extend(hash(x) for x in items)
        if len(self._buf) >= CHUNK:
            self.flush()

    def flush(self) -> None:
        if not self._buf:
            return
        a, b = self._index(np.fromiter(self._buf, dtype=np.int64, count=len(self._buf)))
        self.rows[0] += np.bincount(a, minlength=self.rows.shape[1])
        self.rows[1] += np.bincount(b, minlength=self.rows.shape[1])
        self._buf.clear()

    def may_reach(self, items: set, min_count: int) -> list:
        if not items:
            return []
        seq = list(items)
        a, b = self._index(np.fromiter((hash(x) for x in seq), dtype=np.int64, count=len(seq)))
        ok = np.minimum(self.rows[0][a], self.rows[1][b]) >= min_count
        return [x for x, keep in zip(seq, ok) if keep]


def frequent_items(examples: Iterable[T], items_of: Callable[[T], set], min_count: int) -> Counter:
    """Exact example counts of every item found in >= min_count examples. `examples` is iterated twice
    (a list, or anything re-iterable); `items_of` gives one example's distinct items."""
    sketch = _Sketch()
    for ex in examples:
        sketch.add(items_of(ex))
    sketch.flush()
    counts: Counter = Counter()
    for ex in examples:
        counts.update(sketch.may_reach(items_of(ex), min_count))
    return Counter({k: c for k, c in counts.items() if c >= min_count})
