"""Curation's own rows (beside Drop and PatternFinding in traitforge.types) and the value each
pass hands to the next (a Drop's or Edit's `step` field names the pass: a file format kept)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from traitforge.types import Chat, Document, Drop, Record

Dataset = Literal["documents", "chats"]


class QualityScore(Record):
    """One judge verdict (RUN/curation/quality.jsonl). `score` is None when the reply had no
    parseable score; such rows are kept, never counted as bad. status "error" = the call failed
    and is retried on the next run."""

    dataset: Dataset
    row_id: str
    score: float | None
    status: Literal["scored", "unscored", "error"]
    reason: str
    judge: str


class Edit(Record):
    """A row kept but changed (RUN/curation/edits.jsonl): a leaked sentence cut out, or a pattern
    rewritten away."""

    dataset: Dataset
    row_id: str
    step: str
    reason: str
    before: str
    after: str


@dataclass
class PassResult:
    documents: list[Document]
    chats: list[Chat]
    drops: list[Drop] = field(default_factory=list)
    edits: list[Edit] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)


class PairDrop(Record):
    """A DPO candidate pair left out by curation (RUN/curation/dpo_drops.jsonl)."""

    pair_id: str
    reason: str
