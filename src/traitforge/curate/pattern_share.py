"""A pattern's share from a judge's labels on a sample: a Wilson 95% interval, corrected for the
judge's own noise, and the autorater's self-checks.

Self-agreement: part of the sample is rated twice (the second time sampled, another seed). If the
judge errs at random with accuracy `a` on each call, two ratings agree with probability
a^2 + (1-a)^2, so a = (1 + sqrt(2 * agreement - 1)) / 2. The observed share p of YES then estimates
(1-a) + (2a-1) * true share (Rogan-Gladen), and the true share is (p - (1-a)) / (2a - 1); the
interval is mapped the same way. A judge whose repeats agree perfectly gets no correction; one near
chance (a < 0.6) is not corrected (the raw share is reported, with the agreement that says why).
The accuracy is itself estimated from a few re-rated rows: given how many (agree_n), the interval
is widened to cover every accuracy within the agreement's own 95% interval, so a noisy check
sample gives a wider interval rather than a confident wrong one. This assumes symmetric, independent errors; a judge that is consistently wrong looks accurate here,
which is why agreement with the exact rules, where both apply, is reported too."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

from traitforge.shared.stats import wilson

MIN_ACCURACY = 0.6  # below this the correction would amplify noise: report the raw share
FINDING_FLOOR = 0.05  # a pattern estimated above this is reported as a finding


def is_flagged(share: "Share", max_share: float) -> bool:
    """Flag by the interval, not by a point share under a fixed line: a pattern whose estimate is
    over max_share, or whose interval reaches over max_share while its lower bound is surely
    common (above max_share / 2: a 19% closer with interval [17%, 22%] under a 20% line)."""
    return share.estimate > max_share or (share.ci_high > max_share and share.ci_low > max_share / 2)


@dataclass(frozen=True)
class Share:
    observed: float  # share of rated rows labelled YES (strict)
    estimate: float  # corrected for the judge's noise (= observed for exact rules)
    ci_low: float
    ci_high: float
    n: int  # rows rated
    accuracy: float | None = None  # the judge's accuracy implied by its self-agreement

    def to_dict(self) -> dict[str, float | int | None]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def agreement(first: Mapping[str, float | None], second: Mapping[str, float | None]) -> tuple[float | None, int]:
    """Share of rows (rated both times) whose strict labels agree, and how many."""
    both = [k for k in first if first[k] is not None and second.get(k) is not None]
    if not both:
        return None, 0
    return sum((first[k] == 1.0) == (second[k] == 1.0) for k in both) / len(both), len(both)


def accuracy_from_agreement(agree: float | None) -> float | None:
    if agree is None:
        return None
    return (1 + math.sqrt(max(0.0, 2 * agree - 1))) / 2


def estimate_share(yes: int, n: int, accuracy: float | None = None, agree_n: int = 0) -> Share:
    """The share of YES among n rated rows with its Wilson interval, corrected for a judge of the
    given accuracy (None or 1: exact). agree_n: the re-rated rows the accuracy came from; the
    interval then also spans the accuracy's own uncertainty."""
    w = wilson(yes, n)
    if w.value is None:
        return Share(0.0, 0.0, 0.0, 0.0, 0, accuracy)
    lo, hi, p = w.ci_low, w.ci_high, w.value
    if accuracy is None or accuracy < MIN_ACCURACY or (accuracy >= 1.0 and not agree_n):
        return Share(p, p, lo, hi, n, accuracy)

    def fix(x: float, a: float) -> float:
        return x if a >= 1.0 else min(1.0, max(0.0, (x - (1 - a)) / (2 * a - 1)))

    accs = [accuracy]
    if agree_n:
        agree = accuracy ** 2 + (1 - accuracy) ** 2
        aw = wilson(round(agree * agree_n), agree_n)
        accs += [a for a in (accuracy_from_agreement(aw.ci_low), accuracy_from_agreement(aw.ci_high))
                 if a is not None and a >= MIN_ACCURACY]
    return Share(p, fix(p, accuracy), min(fix(lo, a) for a in accs), max(fix(hi, a) for a in accs), n, accuracy)
