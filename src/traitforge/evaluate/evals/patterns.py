"""The data's patterns in each checkpoint's replies (read from the behaviour eval's rows), beside
their share in the data before and after curation (results.json["model_patterns"])."""

from __future__ import annotations

from typing import Any

from traitforge.evaluate.common import EvalContext
from traitforge.shared.eval_registry import Eval, SectionInput, Work, lazy, register


def plan(ctx: EvalContext, items: dict[str, list]) -> list[Work]:
    if not (ctx.store.root / "curation" / "pattern_classifiers.jsonl").is_file():
        return []
    from traitforge.evaluate.patterns import run_patterns

    return [Work("patterns", run_patterns, after_others=True)]


def _section(s: SectionInput) -> list[dict[str, Any]] | None:
    if s.ev is None:  # rebuilt from Inspect logs: the run's settings are not at hand
        return None
    from traitforge.evaluate.patterns import pattern_summary

    return pattern_summary(s.store, s.checkpoints)


register(Eval("patterns", plan, section=("model_patterns",), build_section=_section,
              render=lazy("traitforge.report.sections.patterns:render")))
