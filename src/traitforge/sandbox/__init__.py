"""Sandboxes for commands a model writes: a library below the stages (nothing here knows of runs).

`make_engine("bwrap" | "docker" | "auto")` returns an engine that works on this machine, or raises
`SandboxUnavailable` with one line saying why; `engine.open(tree, ...)` gives a `Session` whose
`run(command, timeout_s)` is the only way a model's command is ever executed. Policies:
`sandbox/bwrap.py` (the default) and `sandbox/docker.py`."""

from __future__ import annotations

from traitforge.sandbox.base import (CommandResult, Engine, Limits, Session, SandboxUnavailable, copy_tree,
                                     remove_tree, tree_mounts)
from traitforge.sandbox.bwrap import BwrapEngine
from traitforge.sandbox.docker import DockerEngine

ENGINES = {"bwrap": BwrapEngine, "docker": DockerEngine}

__all__ = ["CommandResult", "Engine", "Limits", "Session", "SandboxUnavailable", "BwrapEngine", "DockerEngine",
           "make_engine", "copy_tree", "remove_tree", "tree_mounts", "ENGINES"]


def make_engine(name: str = "auto") -> Engine:
    """The named engine if it works here; "auto": bubblewrap, else docker."""
    if name not in (*ENGINES, "auto"):
        raise SandboxUnavailable(f"unknown sandbox engine '{name}' (have: auto, {', '.join(ENGINES)})")
    names = list(ENGINES) if name == "auto" else [name]
    reasons = []
    for n in names:
        engine = ENGINES[n]()
        why = engine.unavailable()
        if why is None:
            return engine
        reasons.append(f"{n}: {why}")
    raise SandboxUnavailable("no sandbox engine available (" + "; ".join(reasons) + ")")
