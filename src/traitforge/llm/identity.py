"""A checkpoint's content identity: one hash of the files that make the model (weights, their
shard index, config, tokenizer and chat template), so evaluation rows say which version of a
checkpoint they came from, and a retrained or changed checkpoint is told apart from the old one.

Hashed once when the checkpoint is saved and stored beside it in CHECKPOINT/identity.json with
each file's size and mtime; a later call re-hashes only the files whose size or mtime changed (a
checkpoint that cannot be written to, e.g. a read-only model folder, is hashed in memory).
Nothing here loads a model: a safetensors file is checked by parsing its header. It sits in llm/
because the local backend keys its cache on it (the same weights answer alike wherever they lie);
training and evaluation use it too.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
from pathlib import Path
from typing import Any

from traitforge.errors import InputError

log = logging.getLogger("traitforge.llm")

IDENTITY_FILE = "identity.json"
VERSION = 1
# Besides the weights, what changes the model's answers: config, tokenizer, chat template.
MODEL_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "tokenizer.model", "vocab.json", "merges.txt", "chat_template.jinja",
               "chat_template.json", "adapter_config.json")
NOT_WEIGHTS = {"training_args.bin"}


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def weight_files(path: Path) -> list[Path]:
    """The weight files of a checkpoint folder: safetensors, else PyTorch .bin, with their shard indexes."""
    st = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.safetensors.index.json"))
    if st:
        return st
    return [p for p in sorted(path.glob("*.bin")) + sorted(path.glob("*.bin.index.json")) if p.name not in NOT_WEIGHTS]


def model_files(path: Path) -> list[Path]:
    return weight_files(path) + [path / n for n in MODEL_FILES if (path / n).is_file()]


def safetensors_problem(file: Path) -> str | None:
    """Why a safetensors file cannot load (empty, truncated, a header that does not parse), or None."""
    try:
        size = file.stat().st_size
        with open(file, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return f"{file.name} is empty" if size == 0 else f"{file.name} is truncated"
            (n,) = struct.unpack("<Q", head)
            if n > size - 8:
                return f"{file.name} is truncated (header of {n} bytes in a {size}-byte file)"
            header = json.loads(f.read(n))
    except (OSError, ValueError) as e:
        return f"{file.name}: unreadable header ({e.__class__.__name__})"
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)]
    if max(ends, default=0) != size - 8 - n:
        return f"{file.name} is truncated (its tensors need {max(ends, default=0)} bytes, it holds {size - 8 - n})"
    return None


def weights_problem(path: Path) -> str | None:
    """Why the weights of checkpoint folder `path` would not load, or None: none there, an empty or
    truncated file, a shard its index names but that is missing."""
    weights = weight_files(path)
    if not weights:
        return f"{path}: no weight files (*.safetensors or *.bin)"
    for w in weights:
        if w.name.endswith(".index.json"):
            try:
                shards = set(json.loads(w.read_text(encoding="utf-8"))["weight_map"].values())
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                return f"{w}: not a readable shard index"
            missing = sorted(s for s in shards if not (path / s).is_file())
            if missing:
                return f"{w}: shard {missing[0]} is missing"
        elif w.suffix == ".safetensors":
            problem = safetensors_problem(w)
            if problem:
                return f"{path}: {problem}"
        elif w.stat().st_size == 0:
            return f"{path}: {w.name} is empty"
    return None


def _read_record(path: Path) -> dict[str, Any]:
    try:
        rec = json.loads((path / IDENTITY_FILE).read_text(encoding="utf-8"))
        return rec if isinstance(rec, dict) and rec.get("version") == VERSION else {}
    except (OSError, ValueError):
        return {}


def recorded(path: Path) -> str | None:
    """The identity stored beside the checkpoint at save time (not checked against the files)."""
    return _read_record(path).get("identity")


def checkpoint_identity(path: str | Path, *, write: bool = True) -> str:
    """The content identity of a checkpoint folder (sha256 hex). Files whose size and mtime match
    identity.json are not read again; any other is hashed, and identity.json updated when it can be."""
    path = Path(path)
    files = model_files(path)
    if not weight_files(path):
        raise InputError(f"{path}: no weight files (*.safetensors or *.bin): retrain it or point to a checkpoint")
    old = _read_record(path).get("files", {})
    entries: dict[str, dict[str, Any]] = {}
    changed = set(old) != {f.name for f in files}
    for f in files:
        st = f.stat()
        prev = old.get(f.name)
        if prev and prev.get("size") == st.st_size and prev.get("mtime_ns") == st.st_mtime_ns and prev.get("sha256"):
            entries[f.name] = prev
        else:
            entries[f.name] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": file_sha256(f)}
            changed = True
    ident = hashlib.sha256(json.dumps({n: e["sha256"] for n, e in sorted(entries.items())}).encode()).hexdigest()
    if changed and write:
        tmp = path / f".{IDENTITY_FILE}.{os.getpid()}.tmp"
        try:
            tmp.write_text(json.dumps({"version": VERSION, "identity": ident, "files": entries}, indent=1) + "\n",
                           encoding="utf-8")
            os.replace(tmp, path / IDENTITY_FILE)
        except OSError as e:  # a read-only model folder: hashed again next time, nothing lost
            log.info("%s: identity not stored (%s)", path, e.strerror or e)
            tmp.unlink(missing_ok=True)
    return ident
