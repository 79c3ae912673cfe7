"""Evaluate every checkpoint on the same items: knowledge, behaviour (judge and log-prob),
multi-turn pressure, external probes and capability, into RUN/eval/*.jsonl and RUN/results.json
(run.py: `run_evaluation`, loaded on first use; the evals register in shared/eval_registry.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from traitforge.lazy import entry_points

if TYPE_CHECKING:
    from traitforge.evaluate.run import run_evaluation, eval_context, side_by_side_calls

__all__ = ["run_evaluation", "eval_context", "side_by_side_calls"]
__getattr__ = entry_points(__name__, "run", __all__)
