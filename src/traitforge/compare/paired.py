"""Paired differences between two arms on the items both evaluated: a bootstrap CI
(shared/stats.paired_difference), the minimum detectable effect of a paired test on those items,
a two-sided p-value (normal approximation of the paired mean) and Holm's adjustment over all of them."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from traitforge.shared.stats import Z_POWER, paired_difference


def paired(arm: dict[str, float], ref: dict[str, float], *, resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """arm - ref over the items both scored (item id -> value); the items only one has are counted."""
    shared = sorted(set(arm) & set(ref))
    left_out = len(set(arm) ^ set(ref))
    est = paired_difference(arm, ref, resamples=resamples, seed=seed)
    diffs = np.array([arm[k] - ref[k] for k in shared], dtype=float)
    n = len(shared)
    sd = float(diffs.std(ddof=1)) if n > 1 else 0.0
    mde = Z_POWER * sd / math.sqrt(n) if n > 1 and sd > 0 else None
    if n < 2:
        p = None
    elif sd == 0:
        p = 1.0 if diffs.mean() == 0 else 0.0
    else:
        p = math.erfc(abs(diffs.mean()) / (sd / math.sqrt(n)) / math.sqrt(2))
    return {"diff": est.value, "ci_low": est.ci_low, "ci_high": est.ci_high, "n": n, "left_out": left_out,
            "mde": mde, "p": p}


def holm(ps: list[float | None]) -> list[float | None]:
    """Holm's step-down adjustment (family-wise error) of the p-values; None stays None."""
    idx = sorted((p, i) for i, p in enumerate(ps) if p is not None)
    m, out, running = len(idx), list(ps), 0.0
    for rank, (p, i) in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def excludes_zero(d: dict[str, Any]) -> bool:
    return d.get("ci_low") is not None and (d["ci_low"] > 0 or d["ci_high"] < 0)
