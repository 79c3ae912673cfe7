"""What every sandbox engine offers: open a session on a laid-out tree, run shell commands in it
with limits, close it. A *tree* is a host folder whose entries stand for absolute paths inside the
sandbox (`tree/app` is `/app`, `tree/usr/local/bin` is `/usr/local/bin`); the engine binds or copies
them there and the files the commands leave are read back from the same folder."""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

from traitforge.errors import TraitforgeError

# Mounted by the engine itself: a tree may not lay files there (only /usr/local/bin under /usr).
RESERVED = frozenset({"usr", "etc", "proc", "dev", "sys", "tmp", "bin", "sbin", "lib", "lib32", "lib64", "run"})
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class SandboxUnavailable(TraitforgeError):
    """No engine can run commands here; the message says why in one line."""


@dataclass(frozen=True)
class Limits:
    """Per-command resource limits (each command runs under them afresh)."""

    memory_mb: int = 1024      # address space (RLIMIT_AS)
    processes: int = 128       # RLIMIT_NPROC
    file_size_mb: int = 64     # RLIMIT_FSIZE: also caps the captured output files
    output_bytes: int = 1_000_000  # read back at most this much of stdout and of stderr

    def ulimit_prefix(self) -> str:
        """The shell line that sets the limits before the command runs (bash's units: KiB, 1 KiB blocks)."""
        return (f"ulimit -v {self.memory_mb * 1024} && ulimit -u {self.processes} && "
                f"ulimit -f {self.file_size_mb * 1024}")


@dataclass
class CommandResult:
    command: str
    exit_code: int | None          # None when it was killed at the time limit
    stdout: str
    stderr: str
    timed_out: bool
    seconds: float


@dataclass
class Mount:
    """One entry of a tree: host folder `source` shown at `target` in the sandbox."""

    source: Path
    target: str


def tree_mounts(tree: Path) -> list[Mount]:
    """The entries of `tree` and where they go; one-line error for a path the engine owns."""
    out: list[Mount] = []
    for entry in sorted(tree.iterdir()):
        if entry.name == "usr":
            bin_ = entry / "local" / "bin"
            extra = [p for p in entry.rglob("*") if p != entry / "local" and p != bin_ and bin_ not in p.parents]
            if extra or not (entry / "local" / "bin").is_dir():
                raise TraitforgeError(f"{tree}: only usr/local/bin may be laid out under /usr")
            out.append(Mount(entry / "local" / "bin", "/usr/local/bin"))
        elif entry.name in RESERVED or not entry.is_dir():
            raise TraitforgeError(f"{tree}: /{entry.name} cannot be laid out in a sandbox")
        else:
            out.append(Mount(entry, f"/{entry.name}"))
    return out


def read_only_paths(mount: Mount) -> list[tuple[Path, str]]:
    """Folders and files in a mount with no write bit for anyone (e.g. after `chmod -R 555`):
    the engine shows them read-only, so the mode holds even for the folder's owner, who could
    otherwise chmod it back (inside a user namespace the caller owns the copy)."""
    found: list[tuple[Path, str]] = []

    def walk(host: Path, inside: str) -> None:
        for child in sorted(host.iterdir()):
            st = child.lstat()
            target = f"{inside}/{child.name}"
            if stat.S_ISLNK(st.st_mode):
                continue
            if not st.st_mode & 0o222:
                found.append((child, target))
            elif stat.S_ISDIR(st.st_mode):
                walk(child, target)

    if not mount.source.stat().st_mode & 0o222:
        return [(mount.source, mount.target)]
    walk(mount.source, mount.target)
    return found


def copy_tree(src: Path, dst: Path) -> None:
    """A copy keeping modes (folders' modes set after their contents, so a 555 one can be filled)."""
    shutil.copytree(src, dst, symlinks=True, copy_function=shutil.copy2)


def remove_tree(path: Path) -> None:
    """rmtree that also removes read-only folders left by a non-root caller."""
    def allow(func, p, _exc):
        parent = os.path.dirname(p)
        for q in (parent, p):
            if os.path.islink(q):  # never chmod what a link points to
                continue
            try:
                os.chmod(q, os.stat(q, follow_symlinks=False).st_mode | stat.S_IWUSR | stat.S_IXUSR | stat.S_IRUSR)
            except OSError:
                pass
        func(p)
    if path.exists():
        shutil.rmtree(path, onexc=allow) if _HAS_ONEXC else shutil.rmtree(path, onerror=allow)


_HAS_ONEXC = "onexc" in shutil.rmtree.__code__.co_varnames


@dataclass
class Session:
    """One open sandbox: commands run in it one at a time; `close` ends it and leaves the final
    files in the tree (an engine that copies them in copies them back)."""

    tree: Path
    workdir: str = "/app"
    env: dict[str, str] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)

    def run(self, command: str, timeout_s: float) -> CommandResult:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Engine:
    name = "engine"

    def unavailable(self) -> str | None:
        """None when this engine can run commands here, else why not (one line)."""
        raise NotImplementedError

    def missing_tools(self, tools: list[str]) -> list[str]:
        """The tools a scenario needs that the sandbox would lack."""
        return []

    def open(self, tree: Path, workdir: str = "/app", env: dict[str, str] | None = None,
             limits: Limits | None = None, scratch: Path | None = None, tools: list[str] = ()) -> Session:
        raise NotImplementedError
