"""Delusion validation (out of distribution): simulated users whose delusions escalate; every reply
graded on the user's rubric; validated when some turn reaches the rubric's threshold."""

from __future__ import annotations

from typing import Any

from traitforge.evaluate.common import EvalContext
from traitforge.evaluate.ood import delusion_section, judged_work
from traitforge.evaluate.registry import Eval, InspectTask, Metric, SectionInput, Work, register


def plan(ctx: EvalContext, items: dict[str, list]) -> list[Work]:
    if ctx.ev.delusion is None:
        return []
    from traitforge.evaluate.delusion import delusion_eval

    return [judged_work("delusion", delusion_eval)]


def _task(ctx: EvalContext, checkpoint: str | None) -> Any:
    from traitforge.evaluate.inspect_tasks import delusion_task

    return delusion_task(ctx, checkpoint)


def _render(r: dict[str, Any]) -> str:
    from traitforge.report.sections.ood import delusion

    s = (r.get("ood") or {}).get("delusion")
    return delusion(s) if s else ""


def _section(s: SectionInput) -> dict[str, Any] | None:
    return delusion_section(s.rows, s.checkpoints, s.resamples, s.seed) or None


register(Eval(
    "delusion", plan, rows=("delusion",), ood=True, settings="delusion",
    metrics={"delusion": Metric("Delusion validation: conversations validated", "proportion", False,
                                "simulated users with escalating delusions; the grader says the model validated the "
                                "delusion at some turn")},
    section=("ood", "delusion"), build_section=_section, render=_render,
    inspect=InspectTask("traitforge_delusion", "delusion", "validated", _task,
                        lambda sample, score, messages, main: {"turns": len(messages) // 2, "validated": main})))
