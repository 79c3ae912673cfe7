"""Repeated audits (out of distribution): several auditor rollouts per seed scenario; violation
rate, first violation and consistency across rollouts."""

from __future__ import annotations

from typing import Any

from traitforge.evaluate.common import EvalContext
from traitforge.evaluate.ood import audit_section, judged_work
from traitforge.evaluate.registry import Eval, InspectTask, Metric, SectionInput, Work, register


def plan(ctx: EvalContext, items: dict[str, list]) -> list[Work]:
    if ctx.ev.audits is None:
        return []
    from traitforge.evaluate.repeated_audits import repeated_audits_eval

    return [judged_work("audits", repeated_audits_eval)]


def _task(ctx: EvalContext, checkpoint: str | None) -> Any:
    from traitforge.evaluate.inspect_tasks import audits_task

    return audits_task(ctx, checkpoint)


def _render(r: dict[str, Any]) -> str:
    from traitforge.report.sections.ood import audits

    s = (r.get("ood") or {}).get("audits")
    return audits(s) if s else ""


def _section(s: SectionInput) -> dict[str, Any] | None:
    return audit_section(s.rows, s.checkpoints, s.resamples, s.seed) or None


def _detail(sample: Any, score: Any, messages: list[dict[str, str]], main: float | None) -> dict[str, Any]:
    # the seed's own source (generated or a seed file) is what the report shows
    return {"source": (score.metadata or {}).get("source", "inspect"), "via": "inspect",
            "judge_reply": (score.explanation or "")[:2000]}


register(Eval(
    "audits", plan, rows=("audit",), ood=True, settings="audits",
    metrics={"audit": Metric("Repeated audits: no violation", "proportion", True,
                             "several auditor rollouts per seed scenario; the trait held through every turn")},
    section=("ood", "audits"), build_section=_section, render=_render,
    inspect=InspectTask("traitforge_audit", "audit", "survived", _task, _detail)))
