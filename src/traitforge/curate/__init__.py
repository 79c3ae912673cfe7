"""Curation: dedup, leakage, judge quality and pattern-collapse mitigation over the generated
documents and chats (see run.py for the order and the files written)."""

from traitforge.curate.run import curate, run_curation

__all__ = ["curate", "run_curation"]
