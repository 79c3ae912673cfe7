"""Copy imported files into the run directory with their sha256, so a run stays self-contained
and relocatable: the run reads its copy, and a changed original is seen by its hash."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from traitforge.errors import InputError


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def hashes(path: Path) -> dict[str, str]:
    """Relative file name -> sha256, for a file (its own name) or every file under a folder."""
    if path.is_file():
        return {path.name: sha256_file(path)}
    return {p.relative_to(path).as_posix(): sha256_file(p) for p in sorted(path.rglob("*")) if p.is_file()}


def _combined(files: dict[str, str]) -> str:
    return hashlib.sha256("".join(f"{h}  {n}\n" for n, h in sorted(files.items())).encode()).hexdigest()


def snapshot(path: str | Path, dest_dir: str | Path, name: str | None = None) -> dict[str, Any]:
    """Copy `path` (a file or a folder) to `dest_dir/name` (default: its own name), replacing an
    older copy whole. Returns {source, copy (relative to dest_dir), files {name: sha256}, sha256
    (over the files), bytes}; the copy is skipped when it already holds the same files."""
    src, dest_dir = Path(path), Path(dest_dir)
    if not src.exists():
        raise InputError(f"{src}: no such file or folder to import")
    name = name or src.name
    target = dest_dir / name
    files = hashes(src)
    entry = {"source": str(src.resolve()), "copy": name, "files": files, "sha256": _combined(files),
             "bytes": sum((src / n if src.is_dir() else src).stat().st_size for n in files)}
    if target.exists() and hashes(target) == files:
        return entry
    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=dest_dir))
    try:  # copy beside the target, then swap it in: a crash never leaves a half copy under `name`
        staged = tmp / name
        shutil.copytree(src, staged) if src.is_dir() else shutil.copy2(src, staged)
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(staged, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return entry


def verify(entry: dict[str, Any], dest_dir: str | Path) -> list[str]:
    """Files of a snapshot whose copy is missing or changed ([] = intact)."""
    target = Path(dest_dir) / entry["copy"]
    have = hashes(target) if target.exists() else {}
    return sorted(n for n, h in entry["files"].items() if have.get(n) != h) + sorted(set(have) - set(entry["files"]))
