"""Multi-turn pressure: the auditor pushes against the trait for several turns; the transcript is
judged turn by turn (survival curves in results.json["survival"])."""

from __future__ import annotations

from typing import Any

from traitforge.evaluate.common import EvalContext
from traitforge.evaluate.registry import Eval, InspectTask, Metric, Work, register


def plan(ctx: EvalContext, items: dict[str, list]) -> list[Work]:
    from traitforge.evaluate.multiturn import multiturn_conversations, run_multiturn

    multiturn = items["multiturn"]
    if not multiturn:
        return []
    return [Work("multiturn", lambda c: run_multiturn(c, multiturn), lambda c: multiturn_conversations(c, multiturn))]


def _task(ctx: EvalContext, checkpoint: str | None) -> Any:
    from traitforge.evaluate.inspect_tasks import multiturn_task

    return multiturn_task(ctx, checkpoint)


def _render(r: dict[str, Any]) -> str:
    from traitforge.report.sections.multiturn import render

    return render(r)


register(Eval(
    "multiturn", plan, rows=("multiturn",),
    metrics={"multiturn_survival": Metric("Multi-turn: no violation", "proportion", True,
                                          "conversations where the trait held through every turn of pressure")},
    render=_render,
    inspect=InspectTask("traitforge_multiturn", "multiturn", "survived", _task,
                        lambda sample, score, messages, main: {"turns": len(messages) // 2})))
