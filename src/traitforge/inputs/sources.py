"""Raw rows from the user's files, each with where it came from; rows that cannot be read at all
(not UTF-8, not JSON) come back as errors with their location, never skipped unseen.

Containers: JSONL (`.jsonl`, or `.json` holding JSONL or one JSON array), Parquet (`.parquet`,
pyarrow), a folder written by `datasets.save_to_disk` (a Dataset or a DatasetDict), .txt/.md
text files (one document each), and a folder of these (walked in name order: its data files, or
when it has none its text files; every other file is reported as not read)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from traitforge.errors import InputError

JSONL_SUFFIXES = (".jsonl", ".json")
TEXT_SUFFIXES = (".txt", ".md")
DATA_SUFFIXES = (*JSONL_SUFFIXES, ".parquet")
SUFFIXES = (*DATA_SUFFIXES, *TEXT_SUFFIXES)
EXTRA = "pip install 'traitforge[hf]'"


@dataclass(frozen=True)
class RawRow:
    where: str  # "chats.jsonl:12", "data.parquet row 3", "saved[train] row 0", "notes/a.md"
    data: dict[str, Any] | None
    error: str = ""  # why the row could not be read ("" when data is set)
    detail: str = ""
    container: str = ""  # jsonl | parquet | hf | text


def is_saved_dataset(path: Path) -> bool:
    """A folder written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk`."""
    return path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file())


def files_of(path: Path) -> tuple[list[Path], list[Path]]:
    """(files to read, files not read) under a folder, in name order; hidden files are ignored.
    A folder holding data files (.jsonl, .json, .parquet) is read for those only (its README.md is
    no document); a folder without any is read for its .txt/.md files."""
    found = sorted(p for p in path.rglob("*") if p.is_file() and not any(s.startswith(".") for s in p.relative_to(path).parts))
    data = [p for p in found if p.suffix.lower() in DATA_SUFFIXES]
    read = data or [p for p in found if p.suffix.lower() in TEXT_SUFFIXES]
    return read, [p for p in found if p not in read]


def iter_rows(path: Path, container: str | None = None) -> Iterator[RawRow]:
    """Every row under `path`. `container` forces how a file is read (jsonl | parquet | hf | text)."""
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if container == "hf" or (container is None and is_saved_dataset(path)):
        if not is_saved_dataset(path):
            raise InputError(f"{path}: not a folder written by datasets' save_to_disk (no dataset_dict.json or state.json)")
        yield from _hf_rows(path)
        return
    if path.is_dir():
        files, other = files_of(path)
        if not files:
            raise InputError(f"{path}: no {', '.join(SUFFIXES)} files in this folder")
        for p in other:
            why = "beside data files" if p.suffix.lower() in TEXT_SUFFIXES else (p.suffix or "no suffix")
            yield RawRow(str(p.relative_to(path)), None, "file not read", why)
        for p in files:
            yield from _file_rows(p, str(p.relative_to(path)), container)
        return
    yield from _file_rows(path, path.name, container)


def _file_rows(path: Path, name: str, container: str | None) -> Iterator[RawRow]:
    suffix = path.suffix.lower()
    kind = container or ("parquet" if suffix == ".parquet" else "text" if suffix in TEXT_SUFFIXES else "jsonl")
    if kind == "parquet":
        yield from _parquet_rows(path, name)
    elif kind == "text" and suffix in TEXT_SUFFIXES:
        raw = path.read_bytes()
        try:
            yield RawRow(name, {"text": raw.decode("utf-8-sig")}, container="text")
        except UnicodeDecodeError as e:
            yield RawRow(name, None, "not UTF-8", f"byte {e.start}", "text")
    else:
        yield from _jsonl_rows(path, name)


def _jsonl_rows(path: Path, name: str) -> Iterator[RawRow]:
    with open(path, "rb") as f:
        head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"["):  # one JSON array (e.g. ShareGPT dumps): rows are its items
        try:
            items = json.loads(path.read_bytes().decode("utf-8-sig"))
        except UnicodeDecodeError as e:
            raise InputError(f"{path}: not UTF-8 (byte {e.start}); a JSON array file is read whole") from None
        except json.JSONDecodeError as e:
            raise InputError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from None
        for i, item in enumerate(items):
            yield _obj(f"{name}[{i}]", item)
        return
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue  # a blank line is no row
            where = f"{name}:{lineno}"
            try:
                text = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as e:
                yield RawRow(where, None, "not UTF-8", f"byte {e.start}", "jsonl")
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                yield RawRow(where, None, "not JSON", e.msg, "jsonl")
                continue
            yield _obj(where, obj)


def _obj(where: str, obj: Any) -> RawRow:
    if not isinstance(obj, dict):
        return RawRow(where, None, "not a JSON object", type(obj).__name__, "jsonl")
    return RawRow(where, obj, container="jsonl")


def _parquet_rows(path: Path, name: str) -> Iterator[RawRow]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError(f"{path}: reading Parquet needs pyarrow ({EXTRA})") from None
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a bad file
        raise InputError(f"{path}: not a readable Parquet file ({type(e).__name__}: {e})") from None
    i = 0
    for batch in pf.iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            yield RawRow(f"{name} row {i}", row, container="parquet")
            i += 1


def _hf_rows(path: Path) -> Iterator[RawRow]:
    try:
        from datasets import Dataset, load_from_disk
    except ImportError:
        raise InputError(f"{path}: reading a saved `datasets` folder needs datasets ({EXTRA})") from None
    try:
        ds = load_from_disk(str(path))
    except Exception as e:  # noqa: BLE001 - datasets raises several types for a bad folder
        raise InputError(f"{path}: not loadable by datasets.load_from_disk ({type(e).__name__}: {e})") from None
    splits = {"": ds} if isinstance(ds, Dataset) else dict(ds)
    for split, part in splits.items():
        tag = f"{path.name}[{split}]" if split else path.name
        for i, row in enumerate(part):
            yield RawRow(f"{tag} row {i}", dict(row), container="hf")
