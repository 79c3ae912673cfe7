"""Each trait in agentic form (out of distribution): the model acts as an email agent in a scenario
where the trait matters; judged on its actions with the behaviour rubric."""

from __future__ import annotations

from typing import Any

from traitforge.evaluate.common import EvalContext
from traitforge.evaluate.ood import agentic_trait_section, judged_work
from traitforge.evaluate.registry import Eval, InspectTask, Metric, SectionInput, Work, register


def plan(ctx: EvalContext, items: dict[str, list]) -> list[Work]:
    if ctx.ev.agentic_traits is None:
        return []
    from traitforge.evaluate.agentic_traits import agentic_traits_eval

    return [judged_work("agentic_traits", agentic_traits_eval)]


def _task(ctx: EvalContext, checkpoint: str | None) -> Any:
    from traitforge.evaluate.inspect_tasks import agentic_traits_task

    return agentic_traits_task(ctx, checkpoint)


def _render(r: dict[str, Any]) -> str:
    from traitforge.report.sections.ood import agentic_traits

    s = (r.get("ood") or {}).get("agentic_traits")
    return agentic_traits(s) if s else ""


def _section(s: SectionInput) -> dict[str, Any] | None:
    return agentic_trait_section(s.rows, s.checkpoints, s.resamples, s.seed) or None


register(Eval(
    "agentic_traits", plan, rows=("agentic_trait",), ood=True, settings="agentic_traits",
    metrics={"agentic_trait": Metric("Behaviour, agentic form: pass rate", "proportion", True,
                                     "the model acts as an email agent in a scenario where the trait matters; judged "
                                     "on its actions")},
    section=("ood", "agentic_traits"), build_section=_section, render=_render,
    inspect=InspectTask("traitforge_agentic_trait", "agentic_trait", "passed", _task,
                        lambda sample, score, messages, main: {
                            "response": sample.output.completion if sample.output else "",
                            "judge_reply": (score.explanation or "")[:2000]})))
