"""Append-only JSONL that survives crashes: a torn last line is dropped on read and cut on append."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, TypeVar

from pydantic import BaseModel, ValidationError

from traitforge.errors import InputError

T = TypeVar("T", bound=BaseModel)


def _repair_tail(path: Path) -> None:
    """Cut a partial last line (a crash mid-write) so appends start on a clean line."""
    with open(path, "rb+") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        # Walk back to the previous newline.
        pos = size - 1
        chunk = 4096
        while pos > 0:
            start = max(0, pos - chunk)
            f.seek(start)
            buf = f.read(pos - start)
            idx = buf.rfind(b"\n")
            if idx >= 0:
                f.truncate(start + idx + 1)
                return
            pos = start
        f.truncate(0)


def append_jsonl(path: str | Path, rows: Iterable[BaseModel | dict[str, Any]]) -> int:
    """Append rows, one JSON object per line, flushed and fsynced. Returns the count written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        _repair_tail(path)
    lines = []
    for row in rows:
        obj = row.model_dump(mode="json") if isinstance(row, BaseModel) else row
        lines.append(json.dumps(obj, ensure_ascii=False) + "\n")
    if not lines:
        return 0
    # One write per batch: a crash leaves at most one torn line, which readers skip.
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(lines))
        f.flush()
        os.fsync(f.fileno())
    return len(lines)


def iter_jsonl_dicts(path: str | Path) -> Iterator[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        return
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) and not line.endswith("\n"):
                return  # torn last line from a crash: ignore it, the row will be regenerated
            raise InputError(f"{path}: line {i}: not valid JSON") from None
        if not isinstance(obj, dict):
            raise InputError(f"{path}: line {i}: expected a JSON object")
        yield obj


def read_jsonl(path: str | Path, model: type[T]) -> list[T]:
    out = []
    for i, obj in enumerate(iter_jsonl_dicts(path), 1):
        try:
            out.append(model.model_validate(obj))
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(x) for x in err["loc"])
            raise InputError(f"{path}: row {i}: field '{loc}': {err['msg']}") from None
    return out


def write_jsonl(path: str | Path, rows: Iterable[BaseModel | dict[str, Any]]) -> int:
    """Replace a file atomically (write to a temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    if tmp.exists():
        tmp.unlink()
    n = append_jsonl(tmp, rows)
    if not tmp.exists():
        tmp.touch()
    os.replace(tmp, path)
    return n


def write_json_atomic(path: str | Path, obj: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False, sort_keys=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
