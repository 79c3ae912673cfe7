"""Capability: perplexity on held-out generic text (judge-free) and lm-evaluation-harness tasks."""

from __future__ import annotations

from typing import Any

from traitforge.evaluate.settings import EvaluationSpec
from traitforge.evaluate.common import EvalContext
from traitforge.shared.eval_registry import Eval, Metric, Work, register


def _weights_only(run: Any, ev: EvaluationSpec) -> list[str]:
    from traitforge.evaluate.capability import lm_eval_installed

    return ["perplexity"] + ([f"lm_eval:{t}" for t in ev.lm_eval_tasks] if lm_eval_installed() else [])


def plan(ctx: EvalContext, items: dict[str, list]) -> list[Work]:
    from traitforge.evaluate.capability import run_perplexity

    return [Work("capability", run_perplexity, per_checkpoint=True)]


register(Eval(
    "capability", plan, rows=("capability", "lm_eval"),
    settings=("capability_text", "capability_window", "capability_max_tokens", "lm_eval_tasks", "lm_eval_limit"),
    weights_only=_weights_only,
    metrics={"perplexity": Metric("Capability: perplexity", "ppl", False, "held-out generic text; lower is better"),
             "lm_eval:": Metric("lm-eval: {}", "accuracy", True, "lm-evaluation-harness task")}))
