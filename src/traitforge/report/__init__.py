"""The run's report: RUN/report.html from RUN/results.json and RUN/curation/dataset_card.json (never
calls a model; run.py: `write_report`, loaded on first use)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from traitforge.lazy import entry_points

if TYPE_CHECKING:
    from traitforge.report.run import write_report

__all__ = ["write_report"]
__getattr__ = entry_points(__name__, "run", __all__)
