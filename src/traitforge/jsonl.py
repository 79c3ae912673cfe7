"""Append-only JSONL that survives crashes: a torn last line is dropped on read and cut on append."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import uuid
from pathlib import Path
from typing import Any, Iterable, Iterator, TypeVar

from pydantic import BaseModel, ValidationError

from traitforge.errors import InputError

T = TypeVar("T", bound=BaseModel)
log = logging.getLogger(__name__)
_torn_seen: set[tuple[str, int]] = set()  # (file, size): each torn tail is logged once, not per read


def _named(e: OSError, path: Path, always: bool = False) -> OSError:
    """The OSError with the file named: a write() that fails (a full disk) carries no file name,
    and the command line prints the name to say where (`always`: the file meant, not its temp file)."""
    if e.filename is None or always:
        e.filename = str(path)
    return e


def _torn(path: Path, size: int, what: str) -> None:
    key = (str(path), size)
    if key not in _torn_seen:
        _torn_seen.add(key)
        log.warning("%s: its last line was torn (a crash mid-write); %s", path, what)


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
                _torn(path, size, f"cut off ({size - start - idx - 1} bytes); the row is made again")
                f.truncate(start + idx + 1)
                return
            pos = start
        _torn(path, size, f"cut off ({size} bytes); the row is made again")
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
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write("".join(lines))
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise _named(e, path)
    return len(lines)


def iter_jsonl_dicts(path: str | Path) -> Iterator[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        return
    with open(path, "rb") as f:
        raw = f.readlines()
    lines = []
    for i, b in enumerate(raw, 1):
        try:
            lines.append(b.decode("utf-8"))
        except UnicodeDecodeError as e:
            if i == len(raw) and not b.endswith(b"\n"):
                lines.append("")  # a torn last line may end inside a character
                break
            raise InputError(f"{path}: line {i}: not UTF-8 text (byte {e.start + 1} of the line)") from None
    for i, line in enumerate(lines, 1):
        if not line.strip():
            if i == len(lines) and not line.endswith("\n") and i <= len(raw) and raw[-1].strip():
                _torn(path, path.stat().st_size, "ignored until the next write cuts it")
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) and not line.endswith("\n"):
                # torn last line from a crash: ignored here, cut by the next append, made again
                _torn(path, path.stat().st_size, "ignored until the next write cuts it")
                return
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


def temp_path(path: Path) -> Path:
    """A fresh temp file beside `path`, unique to this process and call: two writers of one file
    never share (or delete) each other's temp file; the rename then decides whose copy wins."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def _discard(tmp: Path) -> None:
    with contextlib.suppress(OSError):  # the error being raised is the one to report
        tmp.unlink(missing_ok=True)


def replace_file(tmp: Path, path: Path) -> None:
    """os.replace, an error naming `path` (the temp file is removed)."""
    try:
        os.replace(tmp, path)
    except OSError as e:
        _discard(tmp)
        raise _named(e, path, always=True)


def write_jsonl(path: str | Path, rows: Iterable[BaseModel | dict[str, Any]]) -> int:
    """Replace a file atomically (write to a temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        n = append_jsonl(tmp, rows)
        if not tmp.exists():
            tmp.touch()
    except BaseException as e:
        _discard(tmp)
        raise _named(e, path, always=True) if isinstance(e, OSError) else e
    replace_file(tmp, path)
    return n


def write_json_atomic(path: str | Path, obj: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, ensure_ascii=False, sort_keys=False)
            f.flush()
            os.fsync(f.fileno())
    except BaseException as e:
        _discard(tmp)
        raise _named(e, path, always=True) if isinstance(e, OSError) else e
    replace_file(tmp, path)
