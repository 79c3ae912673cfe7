"""One record per backend call, and one reply per sample: what the cache, the budget, the usage
counters and a run's per-call ledger all read.

`CallRecord` is emitted by the client (`LLM.sink`, a callback the caller attaches) for every
backend request as it completes: a run layer appends it to an append-only ledger so that paid
calls survive a kill. `Reply` is one sample as a stage sees it: its text, its outcome ("ok",
"refused", "blocked", "truncated") and the provider's finish reason, so a stage can tell a
truncated reply from a complete one (`LLM.generate_replies`). Nothing here knows of runs.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from traitforge.llm.base import BLOCKED, NOT_ANSWERS, OK, REFUSED, TRUNCATED_OUTCOME, Completion

# The worst outcome of a call's samples names the call (a blocked sample outweighs a refused one...).
_RANK = {OK: 0, TRUNCATED_OUTCOME: 1, REFUSED: 2, BLOCKED: 3}


def worst(outcomes: list[str]) -> str:
    return max(outcomes, key=lambda o: _RANK.get(o, 0), default=OK)


@dataclass(frozen=True)
class Reply:
    """One sample: the text (for a refusal, the provider's refusal message if it sent one: never an
    answer), its outcome, the finish reason and, for a refusal or block, the provider's reason."""

    text: str
    outcome: str = OK
    finish_reason: str = ""
    reason: str = ""
    reasoning_tokens: int = 0
    cached: bool = False

    @property
    def ok(self) -> bool:
        """An answer (a truncated one included: it has text, cut at the limit)."""
        return self.outcome not in NOT_ANSWERS

    @property
    def truncated(self) -> bool:
        return self.outcome == TRUNCATED_OUTCOME


def refusal_reason(comp: Completion, i: int) -> str:
    """The provider's reason for sample i: its finish reason, with the refusal message it sent."""
    finish = comp.finish_reasons[i] if i < len(comp.finish_reasons) else ""
    text = comp.texts[i].strip() if i < len(comp.texts) and isinstance(comp.texts[i], str) else ""
    if comp.outcome(i) in NOT_ANSWERS and text:
        return f"{finish}: {text[:200]}" if finish else text[:200]
    return finish


@dataclass
class CallRecord:
    """One backend request (or, with `batch`, one collected batch item), as it completed.

    cost_usd: at the client's prices (None: the model has no price). usage_estimated: a token
    figure was estimated rather than read from the provider's usage fields. counter/seq: which
    usage counter counted it and its place there, so a ledger can tell which records a summary
    (e.g. a manifest's usage, written when the counter is drained) already covers."""

    model: str
    outcome: str = OK  # the worst of the samples' outcomes
    outcomes: list[str] = field(default_factory=list)
    finish_reasons: list[str] = field(default_factory=list)
    reason: str = ""  # the provider's reason, for a refusal or block
    samples: int = 1
    input_tokens: int = 0
    output_tokens: int = 0  # everything billed as output, thinking included
    reasoning_tokens: int = 0
    usage_estimated: bool = False
    cost_usd: float | None = None
    cached: bool = False  # served from the cache (free); the client emits backend calls only
    batch: bool = False
    time: float = field(default_factory=time.time)
    latency_s: float | None = None
    counter: str = ""
    seq: int = 0

    @classmethod
    def of(cls, model: str, comp: Completion, *, cost_usd: float | None, batch: bool = False,
           latency_s: float | None = None) -> "CallRecord":
        outcomes = [comp.outcome(i) for i in range(len(comp.texts))]
        bad = [i for i, o in enumerate(outcomes) if o in NOT_ANSWERS]
        u = comp.usage
        return cls(model=model, outcome=worst(outcomes), outcomes=outcomes,
                   finish_reasons=list(comp.finish_reasons), reason=refusal_reason(comp, bad[0]) if bad else "",
                   samples=len(comp.texts), input_tokens=u.input_tokens, output_tokens=u.output_tokens,
                   reasoning_tokens=u.reasoning_tokens, usage_estimated=u.estimated, cost_usd=cost_usd,
                   batch=batch, latency_s=None if latency_s is None else round(latency_s, 3))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CallRecord":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


Sink = Callable[[CallRecord], None]
