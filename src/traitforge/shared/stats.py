"""Every figure with its n and a 95% interval: Wilson for proportions, a seeded percentile
bootstrap for means and other statistics, and paired differences on shared items."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Estimate:
    value: float | None
    n: int
    ci_low: float | None
    ci_high: float | None

    def to_dict(self) -> dict[str, float | int | None]:
        d = asdict(self)
        for k in ("value", "ci_low", "ci_high"):
            if d[k] is not None:
                d[k] = round(float(d[k]), 6)
        return d


EMPTY = Estimate(None, 0, None, None)


def wilson(successes: float, n: int, z: float = Z95) -> Estimate:
    """Wilson score interval: sensible at small n and at 0 or 1, unlike the normal approximation.
    `successes` may be fractional (an accuracy times n from a harness that reports only the share)."""
    if n <= 0:
        return EMPTY
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Estimate(p, n, max(0.0, centre - half), min(1.0, centre + half))


def proportion(values: Sequence[bool | float]) -> Estimate:
    return wilson(int(sum(1 for v in values if v)), len(values))


def bootstrap(values: Sequence[float] | np.ndarray, statistic: Callable[[np.ndarray], float] | None = None,
              *, resamples: int = 1000, seed: int = 0, alpha: float = 0.05) -> Estimate:
    """Percentile bootstrap of `statistic` (default mean) over the rows of `values`.
    Seeded, so the same data gives the same interval on every machine."""
    arr = np.asarray(values, dtype=float)
    n = len(arr)
    if n == 0:
        return EMPTY
    stat = statistic or (lambda a: float(np.mean(a, axis=0)))
    value = float(stat(arr))
    if n == 1:
        return Estimate(value, 1, None, None)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n))
    if statistic is None and arr.ndim == 1:
        stats = arr[idx].mean(axis=1)  # vectorised fast path for the plain mean
    else:
        stats = np.array([stat(arr[i]) for i in idx])
    lo, hi = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return Estimate(value, n, float(lo), float(hi))


def paired_difference(a: dict[str, float], b: dict[str, float], *, resamples: int = 1000,
                      seed: int = 0) -> Estimate:
    """Mean of a[i] - b[i] over the items both scored, with a bootstrap interval. Pairing on the
    same items removes between-item variance, so small differences between checkpoints show."""
    shared = sorted(set(a) & set(b))
    diffs = [float(a[k]) - float(b[k]) for k in shared]
    return bootstrap(diffs, resamples=resamples, seed=seed)


# Power: z for a two-sided 5% test plus z for 80% power.
Z_POWER = Z95 + 0.8416212335729143


def minimum_detectable_effect(kind: str, n: int, sd: float | None = None) -> float | None:
    """The smallest difference between two checkpoints on the same n items that a 5% two-sided test
    finds with 80% power. Shares use the worst case (p = 0.5 on both sides, no pairing benefit), so
    the figure is conservative; means use the items' standard deviation."""
    if n <= 0:
        return None
    if kind in ("proportion", "accuracy"):
        return min(1.0, Z_POWER * math.sqrt(0.5 / n))
    if sd is None or sd <= 0:
        return None
    return Z_POWER * sd * math.sqrt(2 / n)


def items_needed(target: float) -> int:
    """Items per checkpoint a share needs for `target` as its minimum detectable effect."""
    return math.ceil(0.5 * (Z_POWER / target) ** 2)
