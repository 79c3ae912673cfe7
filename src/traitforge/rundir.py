"""A run directory that stands on its own: the spec it was made with is kept inside it (RUN/spec.yaml),
with the files it names copied into RUN/inputs/ (their hashes in the manifest), so a command given the
directory works in that directory, also after it was copied or moved; and one lock per directory,
so two processes never write one run at once.

What is copied: the traits document, probe files, prompt overrides, mix files, the capability text,
the prices, canary and audit seed files, the imported `inputs:` files. What is not (large, or shared on purpose): model
directories (models.base, `local:` models), the external eval sets' folders and a shared cache_dir;
the copy names them by absolute path.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
from pathlib import Path
from typing import Any

import yaml
from filelock import FileLock, Timeout

from traitforge.config import RunSpec, probe_file_path
from traitforge.errors import InputError, TraitforgeError
from traitforge.jsonl import replace_file, temp_path
from traitforge.llm.identity import file_sha256
from traitforge.runstore import SPEC_COPY

INPUTS = "inputs"
SPEC_HEADER = "# The spec this run was made with"  # tells the run's copy from a user's own spec.yaml
LOCK_FILE = ".traitforge.lock"
OWNER_FILE = ".traitforge.lock.owner"  # who holds the lock: "pid on host, since ..."


# --- the lock --------------------------------------------------------------------------------


def lock_run(root: Path) -> FileLock:
    """Hold RUN's lock for the rest of this process (the OS frees it when the process ends, however it
    ends). Taken again by this process, it is the same lock; held by another, a one-line error naming
    that process."""
    root.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str((root / LOCK_FILE).resolve()), timeout=0, thread_local=False, is_singleton=True)
    if lock.is_locked:
        lock.acquire()  # ours already: count it
        return lock
    try:
        lock.acquire()
    except Timeout:
        owner = (root / OWNER_FILE).read_text(encoding="utf-8").strip() if (root / OWNER_FILE).is_file() else ""
        raise TraitforgeError(f"{root}: in use by another traitforge process ({owner or 'owner unknown'}); "
                              "wait for it to finish, or stop it, then run again") from None
    from datetime import datetime, timezone

    since = datetime.now(timezone.utc).isoformat(timespec="seconds")
    (root / OWNER_FILE).write_text(f"pid {os.getpid()} on {socket.gethostname()}, since {since}\n", encoding="utf-8")
    return lock


# --- the spec copy ---------------------------------------------------------------------------


def is_spec_copy(path: Path) -> bool:
    """Whether `path` is a run's spec copy (written by snapshot_spec), not a user's spec."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.readline().startswith(SPEC_HEADER)
    except (OSError, UnicodeDecodeError):
        return False


def _copy_file(src: Path, dest: Path) -> None:
    """Copy unless `dest` holds the same bytes already (a resumed run rewrites nothing)."""
    if src.resolve() == dest.resolve():
        return
    if dest.is_file() and file_sha256(dest) == file_sha256(src):
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(dest)
    try:
        shutil.copyfile(src, tmp)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise OSError(e.errno, e.strerror, str(dest)) from None
    replace_file(tmp, dest)


def _copy_dir(src: Path, dest: Path) -> None:
    if src.resolve() == dest.resolve():
        return
    dest.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.rglob("*")):
        if f.is_file():
            _copy_file(f, dest / f.relative_to(src))
    for f in sorted(dest.rglob("*")) if dest.is_dir() else []:  # a file dropped from the source
        if f.is_file() and not (src / f.relative_to(dest)).is_file():
            f.unlink()


def _dir_sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(path).as_posix()}\0{file_sha256(f)}\n".encode())
    return h.hexdigest()


class _Snapshot:
    """Copies a spec's files into RUN/inputs/ and rewrites the spec's data to name the copies."""

    def __init__(self, root: Path, previous: dict[str, Any]):
        self.root = root
        self.inputs: dict[str, dict[str, Any]] = {}
        self.taken: set[str] = set()
        # copy -> where it came from, as recorded when it was made (a run opened from its own copy)
        self.origin = {v["copy"]: v.get("path") for v in previous.values() if isinstance(v, dict) and "copy" in v}

    def place(self, key: str, src: Path, name: str | None = None) -> str:
        """Copy file or folder `src` into inputs/ under a name of its own; the spec-relative path."""
        name = name or src.name
        rel = f"{INPUTS}/{key}/{name}"
        n = 1
        while rel in self.taken:
            n += 1
            rel = f"{INPUTS}/{key}/{n}/{name}"
        self.taken.add(rel)
        dest = self.root / rel
        if src.is_dir():
            _copy_dir(src, dest)
            sha = _dir_sha256(dest)
        else:
            _copy_file(src, dest)
            sha = file_sha256(dest)
        origin = self.origin.get(rel) if src.resolve() == dest.resolve() else str(src.resolve())
        self.inputs[key if key not in self.inputs else f"{key}[{n}]"] = {"path": origin, "copy": rel, "sha256": sha}
        return rel


def _get(data: dict[str, Any], dotted: str) -> Any:
    for k in dotted.split("."):
        if not isinstance(data, dict) or k not in data:
            return None
        data = data[k]
    return data


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for k in parents:
        data = data.setdefault(k, {})
    data[last] = value


def check_copy_place(root: Path) -> Path:
    """Where the run's spec copy goes (RUN/spec.yaml); a user's own spec there is never overwritten."""
    path = root / SPEC_COPY
    if path.exists() and not is_spec_copy(path):
        raise InputError(f"{path}: a spec of your own is where the run keeps its spec copy; give the run an "
                         "output_dir of its own")
    return path


def snapshot_spec(spec: RunSpec, root: Path, previous: dict[str, Any] | None = None) -> tuple[Path, dict[str, dict[str, Any]]]:
    """Write RUN/spec.yaml: `spec` (presets merged) with output_dir "." and every file it names copied
    into RUN/inputs/ and named there by a relative path; model and eval-set folders by absolute path.
    Returns the copy's path and the inputs (key -> original path, copy, sha256) for the manifest
    (`previous`: the manifest's inputs, whose original paths a copy made from itself keeps)."""
    from traitforge.llm.embedded import EMBEDDED_NAME

    root = root.resolve()
    snap = _Snapshot(root, previous or {})
    data = spec.model_dump(mode="json", exclude_unset=True)
    data["output_dir"] = "."
    data["traits"] = snap.place("traits", spec.resolve(spec.traits))  # type: ignore[arg-type]
    ev = spec.evaluation
    if ev.probes:
        probes = {}
        for file, opts in ev.probes.items():
            rel = snap.place("probes", probe_file_path(spec, file))
            probes[rel.split("/", 2)[2]] = opts
        _set(data, "evaluation.probes", probes)
        _set(data, "evaluation.probes_dir", f"{INPUTS}/probes")
    for key in ("prompts_dir", "generation.prompts_dir", "evaluation.capability_text", "prices_file",
                "controls.canary_file", "training.midtrain.mix_file", "training.sft.mix_file",
                "training.joint.mix_file", "training.dpo.mix_file", "inputs.documents", "inputs.chats"):
        value = _get(data, key)
        if isinstance(value, str) and value != "generic":
            _set(data, key, snap.place(key, spec.resolve(value)))  # type: ignore[arg-type]
    if ev.audits is not None and ev.audits.seed_files:
        _set(data, "evaluation.audits.seed_files",
             [snap.place("evaluation.audits.seed_files", spec.resolve(f)) for f in ev.audits.seed_files])  # type: ignore[arg-type]
    for key in ("evaluation.agentic_misalignment.dir", "evaluation.delusion.dir", "cache_dir"):
        value = _get(data, key)
        if isinstance(value, str):
            _set(data, key, str(spec.resolve(value).resolve()))  # type: ignore[union-attr]
    # Model folders resolve against the working directory (config.spec_paths): absolute from now on.
    if spec.models.base != EMBEDDED_NAME and "models" in data and "base" in data["models"]:
        data["models"]["base"] = str(Path(spec.models.base).expanduser().resolve())
    for role in ("generator", "judge", "auditor", "refiner", "item_writer"):
        ms = _get(data, f"models.{role}")
        provider, _, model = ms["model"].partition(":") if isinstance(ms, dict) else ("", "", "")
        if provider == "local" and model != EMBEDDED_NAME and not Path(model).expanduser().is_absolute():
            ms["model"] = f"local:{Path(model).expanduser().resolve()}"
    for name, ms in (_get(data, "evaluation.models") or {}).items():
        provider, _, model = ms["model"].partition(":")
        if provider == "local" and model != EMBEDDED_NAME and not Path(model).expanduser().is_absolute():
            ms["model"] = f"local:{spec.resolve(model).resolve()}"  # type: ignore[union-attr]
    text = (f"{SPEC_HEADER} (presets merged); its files are copied into inputs/.\n"
            "# Commands given this directory read it; edit the original spec and pass it to change the run.\n"
            + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    path = check_copy_place(root)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        tmp = temp_path(path)
        try:
            tmp.write_text(text, encoding="utf-8")
        except OSError as e:
            raise OSError(e.errno, e.strerror, str(path)) from None
        replace_file(tmp, path)
    return path, snap.inputs
