"""Trait vectors (local weights only): a direction per trait built on base, each checkpoint's
projection shift, the steering check (results.json["vectors"])."""

from __future__ import annotations

from typing import Any

from traitforge.evaluate.common import EvalContext
from traitforge.shared.eval_registry import Eval, SectionInput, Work, lazy, register


def plan(ctx: EvalContext, items: dict[str, list]) -> list[Work]:
    if not ctx.ev.vectors:
        return []
    from traitforge.evaluate.vectors import run_vectors

    behaviour = items["behaviour"]
    # built on base (first in the schedule), then every checkpoint is projected
    return [Work("vectors", lambda c: run_vectors(c, behaviour), per_checkpoint=True, alone=True)]


def _section(s: SectionInput) -> dict[str, Any] | None:
    if s.ev is None or not s.ev.vectors:
        return None
    from traitforge.evaluate.vectors import vector_results

    return vector_results(s.store, s.results, resamples=s.resamples, seed=s.seed, not_applicable=s.not_applicable)


register(Eval("vectors", plan, section=("vectors",), build_section=_section,
              settings=("vectors", "vector_questions", "vector_paraphrases"),
              render=lazy("traitforge.report.sections.vectors:render")))
