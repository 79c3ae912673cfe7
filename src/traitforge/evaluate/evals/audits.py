"""Repeated audits (out of distribution): several auditor rollouts per seed scenario; violation
rate, first violation and consistency across rollouts."""

from __future__ import annotations

from typing import Any

from traitforge.evaluate.ood import audit_section, ood_eval
from traitforge.shared.eval_registry import Metric, register


def _detail(sample: Any, score: Any, messages: list[dict[str, str]], main: float | None) -> dict[str, Any]:
    # the seed's own source (generated or a seed file) is what the report shows
    return {"source": (score.metadata or {}).get("source", "inspect"), "via": "inspect",
            "judge_reply": (score.explanation or "")[:2000]}


register(ood_eval(
    "audits", rows="audit",
    metric=Metric("Repeated audits: no violation", "proportion", True,
                  "several auditor rollouts per seed scenario; the trait held through every turn"),
    build="traitforge.evaluate.repeated_audits:repeated_audits_eval",
    section=lambda s: audit_section(s.rows, s.checkpoints, s.resamples, s.seed),
    task="traitforge_audit", value_key="survived", detail=_detail))
