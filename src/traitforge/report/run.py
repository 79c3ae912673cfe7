"""The run's report: RUN/report.html from RUN/results.json and RUN/curation/dataset_card.json (never
calls a model)."""

from __future__ import annotations

import json
from pathlib import Path

from traitforge.errors import InputError
from traitforge.runstore import RunStore

__all__ = ["write_report"]


def write_report(store: RunStore) -> Path:
    from traitforge.report.html import render_report

    src = store.root / "results.json"
    if not src.is_file():
        raise InputError(f"{src}: no results yet (run the evaluation first)")
    try:
        results = json.loads(src.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(f"{src}: not valid JSON (line {e.lineno})") from None
    if not isinstance(results, dict) or "checkpoints" not in results:
        raise InputError(f"{src}: not a traitforge results file (no 'checkpoints')")
    card = store.root / "curation" / "dataset_card.json"
    if card.is_file() and "dataset_card" not in results:
        try:
            results["dataset_card"] = json.loads(card.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise InputError(f"{card}: not valid JSON (line {e.lineno})") from None
    check = store.root / "judge_check.json"  # `traitforge judge-check`: its section and warning
    if check.is_file() and "judge_check" not in results:
        try:
            results["judge_check"] = json.loads(check.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise InputError(f"{check}: not valid JSON (line {e.lineno})") from None
    out = store.path("report.html")
    tmp = out.with_suffix(".html.tmp")
    tmp.write_text(render_report(results), encoding="utf-8")
    tmp.replace(out)
    return out
