"""Behaviour: held-out prompts answered by each checkpoint, graded blind on the trait's rubric."""

from __future__ import annotations

from typing import Any

from traitforge.evaluate.common import EvalContext
from traitforge.shared.eval_registry import Eval, InspectTask, Metric, Work, lazy, register


def plan(ctx: EvalContext, items: dict[str, list]) -> list[Work]:
    from traitforge.evaluate.behaviour import behaviour_replies, run_behaviour

    behaviour = items["behaviour"]
    return [Work("behaviour", lambda c: run_behaviour(c, behaviour), lambda c: behaviour_replies(c, behaviour))]


def _detail(sample: Any, score: Any, messages: list[dict[str, str]], main: float | None) -> dict[str, Any]:
    passed = (score.value or {}).get("passed") if isinstance(score.value, dict) else None
    passed = None if passed is None or passed != passed else float(passed)
    return {"passed": None if passed is None else bool(passed),
            "response": sample.output.completion if sample.output else "", "prompt": str(sample.input)}


register(Eval(
    "behaviour", plan, rows=("behaviour",),
    settings=("behaviour_prompts_per_trait", "ood_share", "overlap_ngram", "overlap_max"),
    metrics={"behaviour_pass": Metric("Behaviour: pass rate", "proportion", True,
                                      "held-out prompts; blind judge says the reply shows the trait"),
             "behaviour_pass_ood": Metric("Behaviour: pass rate, out-of-distribution", "proportion", True,
                                          "held-out prompts in other domains, agentic, role-play and temptation "
                                          "framings"),
             "behaviour_score": Metric("Behaviour: judge score (1-10)", "mean", True, "blind judge rubric score")},
    inspect=InspectTask("traitforge_behaviour", "behaviour", "score",
                        lazy("traitforge.evaluate.inspect_tasks:behaviour_task"), _detail)))
