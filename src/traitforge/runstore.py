"""A run directory: manifest.json (inputs, config, per-stage status, counts, usage, timings,
versions) plus one JSONL file per stage. Only the main process writes the manifest."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from traitforge import __version__
from traitforge.errors import InputError
from traitforge.jsonl import write_json_atomic
from traitforge.llm.identity import file_sha256
from traitforge.llm.secrets import scrub

MANIFEST = "manifest.json"
SPEC_COPY = "spec.yaml"  # the spec the run was made with, its paths pointing into the run (rundir.py)


class CorruptManifest(InputError):
    """manifest.json is not what this tool writes (edited, or a disk fault): one line, and commands
    that open the run rebuild it (`RunStore.recover`)."""


def _stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def _proc_start(pid: int) -> str | None:
    """The start time of process `pid` (Linux; None elsewhere): a PID reused by another process
    after the first one died then does not pass for it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def _alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it exists
    return start is None or _proc_start(pid) in (None, start)


def _age(iso: str | None) -> str:
    try:
        s = (datetime.now(timezone.utc) - datetime.fromisoformat(iso or "")).total_seconds()
    except ValueError:
        return "?"
    return f"{s:.0f}s" if s < 120 else f"{s / 60:.0f}min" if s < 7200 else f"{s / 3600:.1f}h"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def copy_tree(src: Path, dest: Path) -> None:
    """`src` into `dest` (replaced): copy-on-write where the file system has it (`cp --reflink=auto`),
    else a plain copy; either way `dest` is its own, so writing to it never touches `src`."""
    import shutil
    import subprocess

    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(["cp", "-a", "--reflink=auto", str(src), str(dest)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(src, dest)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"traitforge": __version__, "python": platform.python_version()}
    for pkg in ("torch", "transformers", "trl", "peft", "accelerate", "openai", "anthropic", "google-genai"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def _release(info: dict[str, Any]) -> None:
    for k in ("pid", "pid_start", "host", "heartbeat"):
        info.pop(k, None)


class RunStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._lock = threading.Lock()
        self._manifest: dict[str, Any] | None = None
        self.lock: Any = None  # the run directory's lock, when a command holds it (rundir.lock_run)

    # --- paths -----------------------------------------------------------------------
    def path(self, *parts: str) -> Path:
        p = self.root.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    @property
    def exists(self) -> bool:
        return (self.root / MANIFEST).is_file()

    # --- manifest ----------------------------------------------------------------------
    @property
    def manifest(self) -> dict[str, Any]:
        if self._manifest is None:
            p = self.root / MANIFEST
            self._manifest = self._read_manifest(p) if p.is_file() else {}
            self._manifest.setdefault("stages", {})
            self._manifest.setdefault("usage", {})
        return self._manifest

    @staticmethod
    def _read_manifest(p: Path) -> dict[str, Any]:
        try:
            m = json.loads(p.read_bytes().decode("utf-8"))
        except UnicodeDecodeError as e:
            why = f"not UTF-8 text (byte {e.start})"
        except json.JSONDecodeError as e:
            why = f"not valid JSON (line {e.lineno})"
        else:
            if isinstance(m, dict) and isinstance(m.get("stages", {}), dict) and isinstance(m.get("usage", {}), dict):
                return m
            why = "not a manifest this tool wrote"
        raise CorruptManifest(f"{p}: corrupt ({why}); a command that opens the run (e.g. `traitforge run "
                              f"{p.parent}`) rebuilds it from the run's files")

    def recover(self) -> str | None:
        """A corrupt manifest.json is moved aside (manifest.json.corrupt-TIMESTAMP) and rebuilt from the
        run's files: the trained checkpoints (their stage done, with the fingerprint they were trained
        under), and the generation steps' unit marks (so their rows are trusted unit by unit); every
        other stage runs again and skips the rows it finds. Returns the line to tell the user (None:
        nothing to do). The usage and spend recorded before are lost with it."""
        p = self.root / MANIFEST
        if not p.is_file():
            return None
        try:
            self._read_manifest(p)
            return None
        except CorruptManifest as e:
            why = str(e).split(": corrupt (", 1)[1].split(");", 1)[0]
        aside = p.with_name(f"{MANIFEST}.corrupt-{_stamp()}")
        os.replace(p, aside)
        stages: dict[str, Any] = {}
        for fp_file in sorted((self.root / "train").glob("*/fingerprint.txt")):
            name = fp_file.parent.name
            config = self.root / "checkpoints" / name / "config.json"
            # written when training under that fingerprint began; a checkpoint older than it is another's
            if config.is_file() and config.stat().st_mtime >= fp_file.stat().st_mtime:
                stages[f"train.{name}"] = {"status": "done", "fingerprint": fp_file.read_text().strip(),
                                           "rebuilt": True}
        from traitforge.jsonl import iter_jsonl_dicts

        for d in iter_jsonl_dicts(self.root / "generated" / "units_done.jsonl"):
            if d.get("step"):
                stages.setdefault(d["step"], {"status": "pending", "unit_marks": True, "rebuilt": True})
        self._manifest = {"stages": stages, "usage": {},
                          "rebuilt": {"at": _now(), "from": aside.name, "why": why}}
        self.save()
        return (f"{p}: corrupt ({why}); moved aside to {aside.name} and rebuilt from the run's files "
                f"({sum(1 for k in stages if k.startswith('train.'))} trained checkpoints kept; other stages "
                "resume from their rows); the usage and cost recorded before it are lost")

    def save(self) -> None:
        with self._lock:
            self.root.mkdir(parents=True, exist_ok=True)
            me = os.getpid()
            for info in self.manifest["stages"].values():  # the heartbeat of this process's stages
                if info.get("status") == "running" and info.get("pid") == me:
                    info["heartbeat"] = _now()
            write_json_atomic(self.root / MANIFEST, self.manifest)

    def record_inputs(self, config: dict[str, Any], inputs: dict[str, str | Path | dict[str, Any]]) -> None:
        """The config and the input files: a path (hashed here), or its record as made (a copy's)."""
        m = self.manifest
        m.setdefault("created", _now())
        m["config"] = config
        m["inputs"] = {k: p if isinstance(p, dict) else {"path": str(p), "sha256": file_sha256(p)}
                       for k, p in inputs.items()}
        m["versions"] = _versions()
        self.save()

    # --- stages ------------------------------------------------------------------------
    def stage_info(self, name: str) -> dict[str, Any]:
        return self.manifest["stages"].setdefault(name, {"status": "pending"})

    def is_done(self, name: str, fingerprint: str | None = None) -> bool:
        info = self.manifest["stages"].get(name, {})
        return info.get("status") == "done" and (fingerprint is None or info.get("fingerprint") == fingerprint)

    @contextlib.contextmanager
    def stage(self, name: str, fingerprint: str | None = None) -> Iterator[dict[str, Any]]:
        """Mark a stage running, then done (with elapsed time) or failed (with the error)."""
        info = self.stage_info(name)
        # Time adds up over resumes of the same work; a re-run that finds it done adds ~0.
        previous = info.get("elapsed_s") or 0.0 if info.get("fingerprint") == fingerprint else 0.0
        # Who runs it: `status` shows a stage whose process is gone as interrupted, not running.
        info.update(status="running", started=_now(), fingerprint=fingerprint, pid=os.getpid(),
                    pid_start=_proc_start(os.getpid()), host=socket.gethostname())
        info.pop("error", None)
        self.save()
        t0 = time.perf_counter()
        try:
            yield info
        except BaseException as e:
            _release(info)
            info.update(status="failed", error=scrub(f"{type(e).__name__}: {e}")[:500])
            info["elapsed_s"] = round(previous + time.perf_counter() - t0, 2)
            self.save()
            raise
        _release(info)
        info.update(status="done", finished=_now())
        info["elapsed_s"] = round(previous + time.perf_counter() - t0, 2)
        self.save()

    def set_counts(self, name: str, **counts: Any) -> None:
        self.stage_info(name).setdefault("counts", {}).update(counts)
        self.save()

    def add_usage(self, stage: str, model: str, *, input_tokens: int, output_tokens: int,
                  calls: int, cached: int, cost_usd: float | None, reasoning_tokens: int = 0,
                  outcomes: Any = None, save: bool = True) -> None:
        """Add to manifest["usage"][stage][model]. outcomes: per-sample outcomes, or a mapping of
        counts ({"refused": 2, ...}); refused, blocked and truncated samples are counted (a key
        appears once there is one, as does reasoning_tokens)."""
        with self._lock:
            u = self.manifest["usage"].setdefault(stage, {}).setdefault(
                model, {"calls": 0, "cached": 0, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0})
            u["calls"] += calls
            u["cached"] += cached
            u["input_tokens"] += input_tokens
            u["output_tokens"] += output_tokens
            if cost_usd is not None:
                u["cost_usd"] = round(u["cost_usd"] + cost_usd, 6)
            counts = dict(outcomes or {}) if isinstance(outcomes, dict) else \
                {o: sum(1 for x in outcomes or () if x == o) for o in set(outcomes or ())}
            counts["reasoning_tokens"] = reasoning_tokens
            for key in ("reasoning_tokens", "refused", "blocked", "truncated"):
                if counts.get(key):
                    u[key] = u.get(key, 0) + counts[key]
        if save:
            self.save()

    def record_llm_usage(self, stage: str, llm: Any, prices_file: str | None = None,
                         batch: bool = False) -> str | None:
        """Move an LLM client's usage counters into the manifest under `stage` (with its refused,
        blocked and truncated samples and thinking tokens), mark the per-call ledger's records of
        this client as covered (usage_ledger.py: one source of truth, nothing counted twice), and
        print the stage's token and cost line to stderr; None when the client was not used."""
        from traitforge import usage_ledger
        from traitforge.llm.pricing import estimate_cost

        if not getattr(self, "_folded", False):  # calls of a killed earlier process, once per process
            self._folded = True
            usage_ledger.fold_interrupted(self)
        u = llm.usage.drain()
        usage_ledger.mark(self, getattr(u, "id", ""), getattr(u, "seq", 0))
        if not (u.calls or u.cached):
            return None
        cost = estimate_cost(llm.name, u.input_tokens, u.output_tokens, prices_file, batch=batch, calls=u.calls)
        outcomes = {k: getattr(u, k, 0) for k in ("refused", "blocked", "truncated")}
        self.add_usage(stage, llm.name, input_tokens=u.input_tokens, output_tokens=u.output_tokens,
                       calls=u.calls, cached=u.cached, cost_usd=cost,
                       reasoning_tokens=getattr(u, "reasoning_tokens", 0), outcomes=outcomes)
        cost_text = "cost unknown (no price for this model)" if cost is None else f"${cost:.4f}"
        extra = ", ".join(f"{n} {k}" for k, n in outcomes.items() if n)
        line = (f"{stage}: {llm.name}: {u.calls} calls, {u.cached} cached, "
                f"{u.input_tokens} in / {u.output_tokens} out tokens, {cost_text}"
                + (f"; {extra}" if extra else "")
                + (" (docs/recipes.md: what a refusal does)" if outcomes.get("refused") or outcomes.get("blocked") else ""))
        print(line, file=sys.stderr)
        return line

    def total_cost(self) -> float:
        """The manifest's usage cost plus the per-call ledger's calls no usage summary covers yet
        (a killed step's): usage_ledger.py."""
        from traitforge import usage_ledger

        return sum(m["cost_usd"] for s in self.manifest["usage"].values() for m in s.values()) \
            + usage_ledger.unrecorded_cost(self)

    # --- status ------------------------------------------------------------------------
    def shown_status(self, info: dict[str, Any]) -> str:
        """A stage's status as `status` shows it: "running" only while the process that runs it lives
        (checked by PID on this host; another host's stage shows its last write)."""
        status = info.get("status", "?")
        if status != "running" or "pid" not in info:
            return status
        if info.get("host") != socket.gethostname():
            return f"running? (on {info.get('host')}, last write {_age(info.get('heartbeat'))} ago)"
        return "running" if _alive(int(info["pid"]), info.get("pid_start")) else "interrupted"

    def status_text(self) -> str:
        m = self.manifest
        if not self.exists:
            return f"{self.root}: no run here (no {MANIFEST})"
        lines = [f"run: {self.root}", f"created: {m.get('created', '?')}"]
        if "rebuilt" in m:
            lines.append(f"rebuilt: {m['rebuilt'].get('at', '?')} from the run's files "
                         f"({m['rebuilt'].get('from', '?')} was corrupt); usage before it is not counted")
        lines.append(f"{'stage':<28}{'status':<12}{'time':>9}  counts")
        for name, info in m["stages"].items():
            counts = ", ".join(f"{k}={v}" for k, v in info.get("counts", {}).items()
                               if not isinstance(v, dict))
            t = info.get("elapsed_s")
            status = self.shown_status(info)
            lines.append(f"{name:<28}{status:<12}{(f'{t:.1f}s' if t is not None else ''):>9}  {counts}")
            if info.get("status") == "failed":
                lines.append(f"{'':<28}error: {scrub(str(info.get('error')))}")
            elif status == "interrupted":
                lines.append(f"{'':<28}its process ({info.get('pid')}) ended without finishing it "
                             f"(last write {_age(info.get('heartbeat'))} ago); run again to resume")
        if m["usage"]:
            lines.append("usage:")
            for stage, models in m["usage"].items():
                for model, u in models.items():
                    lines.append(
                        f"  {stage:<26}{model:<32} calls={u['calls']} cached={u['cached']} "
                        f"in={u['input_tokens']} out={u['output_tokens']} ${u['cost_usd']:.4f}")
            lines.append(f"total estimated cost: ${self.total_cost():.4f}")
        return "\n".join(lines)
