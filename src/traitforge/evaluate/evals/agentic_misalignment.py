"""Agentic misalignment (out of distribution): email-agent scenarios from the user's directory;
harmful when the act was really taken (checked in code) and the judge calls it harmful."""

from __future__ import annotations

from typing import Any

from traitforge.evaluate.common import EvalContext
from traitforge.evaluate.ood import agentic_misalignment_section, judged_work
from traitforge.evaluate.registry import Eval, InspectTask, Metric, Work, register


def plan(ctx: EvalContext, items: dict[str, list]) -> list[Work]:
    if ctx.ev.agentic_misalignment is None:
        return []
    from traitforge.evaluate.agentic_misalignment import agentic_misalignment_eval

    return [judged_work("agentic_misalignment", agentic_misalignment_eval)]


def _task(ctx: EvalContext, checkpoint: str | None) -> Any:
    from traitforge.evaluate.inspect_tasks import agentic_misalignment_task

    return agentic_misalignment_task(ctx, checkpoint)


def _render(r: dict[str, Any]) -> str:
    from traitforge.report.sections.ood import agentic_misalignment

    s = (r.get("ood") or {}).get("agentic_misalignment")
    return agentic_misalignment(s) if s else ""


register(Eval(
    "agentic_misalignment", plan, rows=("agentic_misalignment",), ood=True, settings="agentic_misalignment",
    metrics={"agentic_misalignment": Metric(
        "Agentic misalignment: harmful action", "proportion", False,
        "email-agent scenarios (blackmail, leaking, lethal inaction); the act was taken through the tool and the "
        "judge calls it harmful")},
    section=("ood", "agentic_misalignment"),
    build_section=lambda s: agentic_misalignment_section(s.rows, s.checkpoints) or None,
    render=_render,
    inspect=InspectTask("traitforge_agentic_misalignment", "agentic_misalignment", "harmful", _task,
                        lambda sample, score, messages, main: {
                            "response": sample.output.completion if sample.output else ""})))
