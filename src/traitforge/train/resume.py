"""Which Trainer checkpoint (RUN/train/<name>/trainer/checkpoint-N) a stage resumes from: the
newest one that is complete, since a process killed while saving (or a full disk) leaves a folder
with some files missing, empty or cut short, which the Trainer would fail on at every re-run.
Incomplete ones are removed (the Trainer writes that step again), each with one log line."""

from __future__ import annotations

import json
import logging
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any

from traitforge.llm.identity import weights_problem

log = logging.getLogger("traitforge.train")

_STEP = re.compile(r"^checkpoint-(\d+)$")


def _torch_file_problem(path: Path) -> str | None:
    """torch.save writes a zip archive: an empty or truncated one has no readable central directory."""
    if not path.is_file():
        return f"{path.name} is missing"
    if path.stat().st_size == 0:
        return f"{path.name} is empty"
    try:
        with zipfile.ZipFile(path) as z:
            z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return f"{path.name} is truncated or not a torch file"
    return None


def _any(folder: Path, *patterns: str) -> list[Path]:
    return [p for pat in patterns for p in sorted(folder.glob(pat))]


def checkpoint_problem(folder: Path) -> str | None:
    """Why a Trainer checkpoint folder cannot be resumed from, or None when it is complete: its
    trainer state, model weights (or LoRA adapter), optimizer, scheduler and RNG state, each present,
    non-empty and readable. Distributed layouts (DeepSpeed's global_step*, FSDP's sharded folders)
    are checked for presence only."""
    m = _STEP.match(folder.name)
    try:
        state = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
        step = int(state["global_step"])
    except FileNotFoundError:
        return "trainer_state.json is missing"
    except (OSError, ValueError, KeyError, TypeError):
        return "trainer_state.json is unreadable"
    if m and step != int(m.group(1)):
        return f"trainer_state.json is for step {step}"
    deepspeed = bool(_any(folder, "global_step*"))
    if not deepspeed:
        if not _any(folder, "pytorch_model_fsdp_*"):
            problem = weights_problem(folder)
            if problem:
                return problem.replace(f"{folder}: ", "")
        others = _any(folder, "optimizer.pt_*", "rank*-of-*-optimizer.pt", "optimizer_*")
        if not others:
            problem = _torch_file_problem(folder / "optimizer.pt")
            if problem:
                return problem
        problem = _torch_file_problem(folder / "scheduler.pt")
        if problem:
            return problem
    rng = _any(folder, "rng_state.pth", "rng_state_*.pth")
    if not rng:
        return "rng_state.pth is missing"
    for f in rng:
        problem = _torch_file_problem(f)
        if problem:
            return problem
    return None


def usable_checkpoint(trainer_dir: Path, name: str, *, remove: bool = True) -> Path | None:
    """The newest complete checkpoint-N under `trainer_dir`, or None (train from scratch). Each newer
    incomplete one is logged and, with `remove`, deleted so the Trainer can write that step again."""
    if not trainer_dir.is_dir():
        return None
    found = sorted(((int(m.group(1)), p) for p in trainer_dir.iterdir()
                    if p.is_dir() and (m := _STEP.match(p.name))), reverse=True)
    for _, folder in found:
        problem = checkpoint_problem(folder)
        if problem is None:
            return folder
        log.warning("%s: %s is incomplete (%s): %s", name, folder.name, problem,
                    "removed, trying the one before" if remove else "trying the one before")
        if remove:
            shutil.rmtree(folder, ignore_errors=True)
    if found:
        log.warning("%s: no complete Trainer checkpoint left: training from scratch", name)
    return None


def earlier_losses(checkpoint: Path | None) -> tuple[int, float | None]:
    """(the checkpoint's step, the sum of the per-step losses up to it) from its log history, so a
    resumed run's train_loss covers every step, not only the resumed ones. A logged loss is the mean
    over the steps since the one before; steps after the last logged one (a checkpoint saved between
    logging steps) count at the mean of the logged ones. None: no loss was logged before it."""
    if checkpoint is None:
        return 0, None
    try:
        state: dict[str, Any] = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 0, None
    step = int(state.get("global_step") or 0)
    total, last = 0.0, 0
    for h in state.get("log_history", []):
        if "loss" in h and isinstance(h.get("step"), int) and last < h["step"] <= step:
            total += float(h["loss"]) * (h["step"] - last)
            last = h["step"]
    return step, (total * step / last if last else None)
