"""Read the user's chats or documents into the run's records, with a report of what was left out."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

from traitforge.errors import InputError
from traitforge.inputs.report import ImportReport
from traitforge.inputs.rows import Bad, row_format, to_chat, to_document
from traitforge.inputs.sources import RawRow, iter_rows
from traitforge.inputs.spec import CHAT_FORMATS, DOCUMENT_FORMATS
from traitforge.types import Chat, Document

CONTAINERS = {"parquet": "parquet", "hf": "hf"}


def read_chats(path: str | Path, format: str = "auto", trait_field: str | None = None,
               traits: Iterable[str] | None = None) -> tuple[list[Chat], ImportReport]:
    """Every well-formed chat under `path`, and the report (kept, left out by reason with where).
    `traits`: the run's trait ids; a tag naming another is left out ("unknown trait")."""
    if format in DOCUMENT_FORMATS:
        raise InputError(f"{path}: format '{format}' is for documents, not chats")

    def chat(raw: RawRow, known: set[str] | None) -> tuple[Chat, str, int]:
        fmt = format if format in CHAT_FORMATS else row_format(raw.data)
        if fmt not in CHAT_FORMATS:
            raise Bad("not a chat", "no messages or conversations field")
        c, system = to_chat(raw.data, fmt, raw.where, trait_field, known)
        return c, fmt, system

    return _read(path, "chats", format, traits, chat)


def read_documents(path: str | Path, format: str = "auto", trait_field: str | None = None,
                   traits: Iterable[str] | None = None) -> tuple[list[Document], ImportReport]:
    """Every usable document under `path` (a `text` field per row; a .txt/.md file is one)."""
    if format in CHAT_FORMATS:
        raise InputError(f"{path}: format '{format}' is a chat format, not documents")

    def document(raw: RawRow, known: set[str] | None) -> tuple[Document, str, int]:
        return to_document(raw.data, raw.where, trait_field, known), raw.container or "text", 0

    return _read(path, "documents", format, traits, document)


def _read(path: str | Path, kind: str, format: str, traits: Iterable[str] | None,
          convert: Callable[[RawRow, set[str] | None], tuple[Any, str, int]]) -> tuple[list[Any], ImportReport]:
    """Each row `convert`ed to (record, format counted, system turns stripped); a row that fails
    (unreadable, `Bad`, or the same record twice: one id, one row) is counted with where it was."""
    path, report = Path(path), ImportReport(str(path), kind)
    known = None if traits is None else set(traits)
    out: list[Any] = []
    seen: dict[str, str] = {}
    for raw in iter_rows(path, CONTAINERS.get(format)):
        if raw.data is None:
            report.drop(raw.error, raw.where, raw.detail)
            continue
        try:
            record, fmt, system = convert(raw, known)
        except Bad as b:
            report.drop(b.reason, raw.where, b.detail)
            continue
        if record.id in seen:
            report.drop("duplicate", raw.where, f"of {seen[record.id]}")
            continue
        seen[record.id] = raw.where
        report.formats[fmt] += 1
        report.system_turns += system
        report.chats_with_system += system > 0
        report.untagged += not record.trait_ids
        out.append(record)
    report.kept = len(out)
    return out, report
