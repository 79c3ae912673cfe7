"""Read the user's chats or documents into the run's records, with a report of what was left out."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from traitforge.errors import InputError
from traitforge.inputs.report import ImportReport
from traitforge.inputs.rows import Bad, row_format, to_chat, to_document
from traitforge.inputs.sources import iter_rows
from traitforge.inputs.spec import CHAT_FORMATS, DOCUMENT_FORMATS
from traitforge.types import Chat, Document

CONTAINERS = {"parquet": "parquet", "hf": "hf"}


def _known(traits: Iterable[str] | None) -> set[str] | None:
    return None if traits is None else set(traits)


def read_chats(path: str | Path, format: str = "auto", trait_field: str | None = None,
               traits: Iterable[str] | None = None) -> tuple[list[Chat], ImportReport]:
    """Every well-formed chat under `path`, and the report (kept, left out by reason with where).
    `traits`: the run's trait ids; a tag naming another is left out ("unknown trait")."""
    if format in DOCUMENT_FORMATS:
        raise InputError(f"{path}: format '{format}' is for documents, not chats")
    path, report, known = Path(path), ImportReport(str(path), "chats"), _known(traits)
    chats: list[Chat] = []
    seen: dict[str, str] = {}
    for raw in iter_rows(path, CONTAINERS.get(format)):
        if raw.data is None:
            report.drop(raw.error, raw.where, raw.detail)
            continue
        fmt = format if format in CHAT_FORMATS else row_format(raw.data)
        if fmt not in CHAT_FORMATS:
            report.drop("not a chat", raw.where, "no messages or conversations field")
            continue
        try:
            chat, system = to_chat(raw.data, fmt, raw.where, trait_field, known)
        except Bad as b:
            report.drop(b.reason, raw.where, b.detail)
            continue
        if chat.id in seen:  # the same conversation twice: one id, one row
            report.drop("duplicate", raw.where, f"of {seen[chat.id]}")
            continue
        seen[chat.id] = raw.where
        report.formats[fmt] += 1
        report.system_turns += system
        report.chats_with_system += system > 0
        report.untagged += not chat.trait_ids
        chats.append(chat)
    report.kept = len(chats)
    return chats, report


def read_documents(path: str | Path, format: str = "auto", trait_field: str | None = None,
                   traits: Iterable[str] | None = None) -> tuple[list[Document], ImportReport]:
    """Every usable document under `path` (a `text` field per row; a .txt/.md file is one)."""
    if format in CHAT_FORMATS:
        raise InputError(f"{path}: format '{format}' is a chat format, not documents")
    path, report, known = Path(path), ImportReport(str(path), "documents"), _known(traits)
    docs: list[Document] = []
    seen: dict[str, str] = {}
    for raw in iter_rows(path, CONTAINERS.get(format)):
        if raw.data is None:
            report.drop(raw.error, raw.where, raw.detail)
            continue
        try:
            doc = to_document(raw.data, raw.where, trait_field, known)
        except Bad as b:
            report.drop(b.reason, raw.where, b.detail)
            continue
        if doc.id in seen:
            report.drop("duplicate", raw.where, f"of {seen[doc.id]}")
            continue
        seen[doc.id] = raw.where
        report.formats[raw.container or "text"] += 1
        report.untagged += not doc.trait_ids
        docs.append(doc)
    report.kept = len(docs)
    return docs, report
