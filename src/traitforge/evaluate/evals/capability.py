"""Capability: perplexity on held-out generic text (judge-free) and lm-evaluation-harness tasks."""

from __future__ import annotations

from traitforge.evaluate.common import EvalContext
from traitforge.shared.eval_registry import Eval, Metric, Work, register


def plan(ctx: EvalContext, items: dict[str, list]) -> list[Work]:
    from traitforge.evaluate.capability import run_perplexity

    return [Work("capability", run_perplexity, per_checkpoint=True)]


register(Eval(
    "capability", plan, rows=("capability", "lm_eval"),
    settings=("capability_text", "capability_window", "capability_max_tokens", "lm_eval_tasks", "lm_eval_limit"),
    metrics={"perplexity": Metric("Capability: perplexity", "ppl", False, "held-out generic text; lower is better"),
             "lm_eval:": Metric("lm-eval: {}", "accuracy", True, "lm-evaluation-harness task")}))
