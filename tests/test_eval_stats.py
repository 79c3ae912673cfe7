"""Statistics against known values: Wilson intervals from the literature, bootstrap vs the
normal-theory interval on a large sample, paired differences."""

from __future__ import annotations

import numpy as np
import pytest

from traitforge.shared.stats import bootstrap, paired_difference, proportion, wilson


def test_wilson_known_values() -> None:
    # Newcombe (1998) / standard tables: 8 of 10 -> 0.490-0.943; 0 of 10 -> 0-0.278; 1 of 1 -> 0.207-1.
    e = wilson(8, 10)
    assert e.value == 0.8 and e.n == 10
    assert e.ci_low == pytest.approx(0.4902, abs=1e-3) and e.ci_high == pytest.approx(0.9433, abs=1e-3)
    z = wilson(0, 10)
    assert z.ci_low == 0.0 and z.ci_high == pytest.approx(0.2775, abs=1e-3)
    one = wilson(1, 1)
    assert one.ci_low == pytest.approx(0.2065, abs=1e-3) and one.ci_high == 1.0
    assert wilson(0, 0).value is None and wilson(0, 0).n == 0


def test_proportion_counts_truthy() -> None:
    e = proportion([True, False, True, True])
    assert (e.value, e.n) == (0.75, 4)


def test_bootstrap_matches_normal_theory_and_is_seeded() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(5.0, 2.0, size=2000)
    e = bootstrap(x, resamples=2000, seed=3)
    half = 1.96 * x.std(ddof=1) / np.sqrt(len(x))
    assert e.value == pytest.approx(x.mean())
    assert e.ci_low == pytest.approx(x.mean() - half, abs=0.02)
    assert e.ci_high == pytest.approx(x.mean() + half, abs=0.02)
    assert bootstrap(x, resamples=500, seed=3) == bootstrap(x, resamples=500, seed=3)
    assert bootstrap([4.0]).ci_low is None and bootstrap([]).n == 0


def test_paired_difference_uses_shared_items_only() -> None:
    a = {"i1": 1.0, "i2": 1.0, "i3": 0.0, "only_a": 1.0}
    b = {"i1": 0.0, "i2": 1.0, "i3": 0.0, "only_b": 0.0}
    d = paired_difference(a, b, resamples=500, seed=0)
    assert d.n == 3 and d.value == pytest.approx(1 / 3)
    assert 0.0 <= d.ci_low <= d.value <= d.ci_high <= 1.0
    same = paired_difference(a, a, resamples=200)
    assert (same.value, same.ci_low, same.ci_high) == (0.0, 0.0, 0.0)
