"""Curation: dedup, leakage, judge quality and pattern-collapse mitigation over the generated
documents and chats (see run.py for the order and the files written; loaded on first use)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from traitforge.lazy import entry_points

if TYPE_CHECKING:
    from traitforge.curate.run import curate, run_curation

__all__ = ["curate", "run_curation"]
__getattr__ = entry_points(__name__, "run", __all__)
