"""bubblewrap engine (Debian package `bubblewrap`): each command is a fresh `bwrap` process.

Policy, and why (checked on Linux 6.x with bubblewrap 0.8, run as root and as a plain user):
- `--unshare-all` (user, pid, net, ipc, uts, cgroup namespaces): no network at all, only a
  loopback of its own (a server on the host's 127.0.0.1 is unreachable), no other process visible.
  `--disable-userns` (bubblewrap 0.8 and later; left out by older ones) stops the command making a
  nested user namespace to regain capabilities.
- `--unshare-user --uid 65534 --gid 65534 --cap-drop ALL`: the command is `nobody` with no
  capabilities. Unprivileged user namespaces are enough; no setuid bwrap is needed. Inside that
  namespace the caller's own uid is mapped to 65534, so the laid-out copy (which the caller owns)
  is writable as it would be for the container's user, while a folder or file the Dockerfile made
  unwritable (`chmod -R 555 /usr/local/bin`) is bound read-only on top: the owner could otherwise
  chmod it back. When the caller is root the process is still uid 0 to the host kernel, but with
  no capability in any namespace, `no_new_privs` (bwrap sets it), and every host path it can see
  read-only (bwrap itself covers /proc/sys and friends read-only), that gives it nothing.
- Host `/usr` read-only, with /bin, /lib, /lib64, /sbin as the usrmerge symlinks (or read-only
  binds where the host has real folders); of /etc only `alternatives` (awk etc. are links into it),
  `ld.so.cache` and a generated passwd/group; the root itself is remounted read-only at the end.
  The tree's /usr/local/bin hides the host's (an empty one when the tree has none).
  Nothing else of the host is bound, so the evaluation files beside the repository, the caller's
  home and its temporary folders are not even visible.
- `/tmp`: a folder private to the episode, bound read-write (a tmpfs would vanish between
  commands, since every command is its own bwrap; a container's /tmp persists).
- `--clearenv` then PATH, HOME=/tmp, LANG and the scenario's ENV only: no API key is visible.
- `--die-with-parent --new-session` (no TIOCSTI into the caller's terminal), stdin /dev/null.
- rlimits (address space, processes, file size) set by `ulimit` in the wrapper shell before the
  command, and a wall-clock limit per command (the whole process group is killed). The kernel
  exempts the host's root user from RLIMIT_NPROC, so when the caller is root each session also gets
  a `pids` cgroup of its own (v1 `/sys/fs/cgroup/pids` or a v2 hierarchy offering `pids`) with
  `pids.max` at the same limit; where none can be made, that session has no process cap beyond the
  pid namespace and the time limit (`BwrapSession.process_cap` says which).
Every command runs as `bash -c` in the WORKDIR, like the upstream command server's one
subprocess per request: files persist between commands, the shell's cwd and variables do not.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

from traitforge.sandbox.base import DEFAULT_PATH, CommandResult, Engine, Limits, Session, read_only_paths, tree_mounts

PASSWD = "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/tmp:/bin/bash\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"
SYSTEM_DIRS = ("/usr/bin", "/usr/sbin")


def _host_root_links() -> list[str]:
    """/bin, /sbin, /lib, /lib64: a symlink like the host's, or its folder bound read-only."""
    args: list[str] = []
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        p = Path("/") / name
        if p.is_symlink():
            args += ["--symlink", os.readlink(p), f"/{name}"]
        elif p.is_dir():
            args += ["--ro-bind", str(p), f"/{name}"]
    return args


CGROUP_ROOTS = (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup"))


def _pids_cgroup(limit: int) -> Path | None:
    """A new cgroup with pids.max = limit (root callers only), or None where none can be made."""
    if os.geteuid() != 0:
        return None
    for base in CGROUP_ROOTS:
        group = base / f"traitforge-sbx-{uuid.uuid4().hex[:12]}"
        try:
            group.mkdir()
        except OSError:
            continue
        try:
            (group / "pids.max").write_text(str(limit))
            return group
        except OSError:
            group.rmdir()
    return None


class BwrapSession(Session):
    def __init__(self, tree: Path, workdir: str, env: dict[str, str], limits: Limits, scratch: Path,
                 bwrap: str, extra: tuple[str, ...] = ()):
        super().__init__(tree, workdir, env, limits)
        self.scratch = scratch
        (scratch / "tmp").mkdir(parents=True, exist_ok=True)
        (scratch / "passwd").write_text(PASSWD)
        (scratch / "group").write_text(GROUP)
        self.bwrap = bwrap
        self.extra = extra
        self.cgroup = _pids_cgroup(limits.processes)
        self.process_cap = "rlimit" if os.geteuid() != 0 else "cgroup" if self.cgroup else "none"

    def close(self) -> None:
        if self.cgroup is None:
            return
        for _ in range(100):  # a killed command's processes take a moment to leave
            try:
                self.cgroup.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.05)
        self.cgroup = None

    def argv(self, command: str) -> list[str]:
        args = [self.bwrap, "--unshare-all", "--unshare-user", *self.extra, "--uid", "65534", "--gid", "65534",
                "--cap-drop", "ALL", "--die-with-parent", "--new-session", "--clearenv",
                "--ro-bind", "/usr", "/usr", *_host_root_links(),
                "--proc", "/proc", "--dev", "/dev",
                "--ro-bind", str(self.scratch / "passwd"), "/etc/passwd",
                "--ro-bind", str(self.scratch / "group"), "/etc/group",
                "--ro-bind-try", "/etc/alternatives", "/etc/alternatives",
                "--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache",
                "--bind", str(self.scratch / "tmp"), "/tmp"]
        mounts = tree_mounts(self.tree)
        if "/usr/local/bin" not in {m.target for m in mounts}:  # not the host's own tools either
            (self.scratch / "empty").mkdir(exist_ok=True)
            args += ["--ro-bind", str(self.scratch / "empty"), "/usr/local/bin"]
        for m in mounts:
            args += ["--bind", str(m.source), m.target]
            for host, inside in read_only_paths(m):
                args += ["--ro-bind", str(host), inside]
        env = {"PATH": DEFAULT_PATH, "HOME": "/tmp", "LANG": "C.UTF-8", **self.env}
        for k, v in env.items():
            args += ["--setenv", k, v]
        args += ["--remount-ro", "/", "--chdir", self.workdir, "--",
                 "/bin/bash", "-c", f'{self.limits.ulimit_prefix()} && exec /bin/bash -c "$1"', "sandbox", command]
        if self.cgroup is not None:  # join the cgroup first, so bwrap and all it starts count
            args = ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.cgroup / "cgroup.procs"), *args]
        return args

    def run(self, command: str, timeout_s: float) -> CommandResult:
        out_path, err_path = self.scratch / "stdout", self.scratch / "stderr"
        start = time.monotonic()
        with out_path.open("wb") as out, err_path.open("wb") as err:
            proc = subprocess.Popen(self.argv(command), stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    start_new_session=True)
            try:
                code: int | None = proc.wait(timeout=max(timeout_s, 0.1))
                timed_out = False
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # bwrap's children die with it (--die-with-parent)
                proc.wait()
                code, timed_out = None, True
        return CommandResult(command, code, _read(out_path, self.limits.output_bytes),
                             _read(err_path, self.limits.output_bytes), timed_out, time.monotonic() - start)


def _read(path: Path, cap: int) -> str:
    with path.open("rb") as f:
        data = f.read(cap + 1)
    text = data[:cap].decode("utf-8", errors="replace")
    return text + ("\n[output cut]" if len(data) > cap else "")


class BwrapEngine(Engine):
    name = "bwrap"

    def __init__(self, bwrap: str | None = None):
        self.bwrap = bwrap or shutil.which("bwrap") or "bwrap"
        self._why: str | None | bool = False  # False: not probed yet

    def unavailable(self) -> str | None:
        if self._why is False:
            self._why = self._probe()
        return self._why  # type: ignore[return-value]

    def _probe(self) -> str | None:
        if not shutil.which(self.bwrap):
            return "bwrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
        try:
            r = subprocess.run([self.bwrap, "--unshare-all", "--unshare-user", "--uid", "65534", "--gid", "65534",
                                "--cap-drop", "ALL", "--die-with-parent", "--ro-bind", "/usr", "/usr",
                                *_host_root_links(), "--", "/bin/true"],
                               capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"bwrap cannot start: {e}"
        if r.returncode != 0:
            msg = (r.stderr.strip().splitlines() or [f"exit code {r.returncode}"])[-1]
            return f"bwrap cannot create namespaces here ({msg}; user namespaces disabled?)"
        return None

    def missing_tools(self, tools: list[str]) -> list[str]:
        return [t for t in tools if not any((Path(d) / t).exists() for d in SYSTEM_DIRS)]

    def open(self, tree: Path, workdir: str = "/app", env: dict[str, str] | None = None,
             limits: Limits | None = None, scratch: Path | None = None, tools: list[str] = ()) -> Session:
        if scratch is None:
            raise ValueError("bwrap sessions need a scratch folder (the episode's /tmp and captured output)")
        tree_mounts(tree)  # a bad tree fails here, not at the first command
        return BwrapSession(tree, workdir, env or {}, limits or Limits(), scratch, self.bwrap, self._extra())

    def _extra(self) -> tuple[str, ...]:
        """--disable-userns where this bwrap has it (0.8 and later)."""
        try:
            text = subprocess.run([self.bwrap, "--help"], capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.TimeoutExpired):
            return ()
        return ("--disable-userns",) if "--disable-userns" in text else ()
