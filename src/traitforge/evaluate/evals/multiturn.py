"""Multi-turn pressure: the auditor pushes against the trait for several turns; the transcript is
judged turn by turn (survival curves in results.json["survival"])."""

from __future__ import annotations

from traitforge.evaluate.common import EvalContext
from traitforge.shared.eval_registry import Eval, InspectTask, Metric, Work, lazy, register


def plan(ctx: EvalContext, items: dict[str, list]) -> list[Work]:
    from traitforge.evaluate.multiturn import multiturn_conversations, run_multiturn

    multiturn = items["multiturn"]
    if not multiturn:
        return []
    return [Work("multiturn", lambda c: run_multiturn(c, multiturn), lambda c: multiturn_conversations(c, multiturn))]


register(Eval(
    "multiturn", plan, rows=("multiturn",),
    settings=("multiturn_conversations_per_trait", "multiturn_turns"),
    metrics={"multiturn_survival": Metric("Multi-turn: no violation", "proportion", True,
                                          "conversations where the trait held through every turn of pressure")},
    render=lazy("traitforge.report.sections.multiturn:render"),
    inspect=InspectTask("traitforge_multiturn", "multiturn", "survived",
                        lazy("traitforge.evaluate.inspect_tasks:multiturn_task"),
                        lambda sample, score, messages, main: {"turns": len(messages) // 2})))
