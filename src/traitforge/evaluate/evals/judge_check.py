"""The judge check's report section (RUN/judge_check.json, written by `traitforge judge-check`; the
report reads it beside results.json): no work in the evaluation, only a section to show."""

from __future__ import annotations

from typing import Any

from traitforge.shared.eval_registry import Eval, lazy, register


def _render(r: dict[str, Any]) -> str:
    return lazy("traitforge.report.judged:render_judge_check")(r.get("judge_check")) if r.get("judge_check") else ""


register(Eval("judge_check", render=_render))
