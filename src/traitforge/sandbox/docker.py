"""docker engine, for a user who has one running: the same tree and the same rules as bubblewrap,
as a generated Dockerfile (the tree copied in with its modes, the host tools installed, a non-root
user) and a container with no network, no capabilities, `no-new-privileges`, a pids/memory limit,
and one `docker exec` per command (killed at the time limit). On close the tree's folders are
copied back out of the container, so the episode's diff reads the same folder as with bwrap."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from pathlib import Path

from traitforge.sandbox.base import CommandResult, Engine, Limits, Session, copy_tree, remove_tree, tree_mounts

UID = "65534:65534"
# Debian package per host tool a scenario asks for.
PACKAGES = {"bc": "bc", "jq": "jq", "dos2unix": "dos2unix", "python3": "python3"}


def dockerfile(tree: Path, image: str, tools: list[str], workdir: str = "/app",
               env: dict[str, str] | None = None) -> str:
    """The Dockerfile that lays `tree` out (its build context) the way bubblewrap binds it: the
    writable entries owned by the sandbox's user, the unwritable ones (no w bit: after `chmod 555`)
    owned by root, so their modes hold for that user."""
    lines = [f"FROM {image}"]
    pkgs = sorted({PACKAGES[t] for t in tools if t in PACKAGES})
    if pkgs:
        lines.append("RUN apt-get update && apt-get install -y --no-install-recommends "
                     f"{' '.join(pkgs)} && rm -rf /var/lib/apt/lists/*")
    for m in tree_mounts(tree):
        rel = m.source.relative_to(tree).as_posix()
        writable = bool(m.source.stat().st_mode & 0o222)
        chown = f"--chown={UID} " if writable else ""
        lines.append(f"COPY {chown}{rel}/ {m.target}/")
        # COPY keeps each file's mode bits but not the target folder's own mode or owner.
        owner = f" && chown {UID} {m.target}" if writable else ""
        lines.append(f"RUN chmod {m.source.stat().st_mode & 0o7777:o} {m.target}{owner}")
    for k, v in (env or {}).items():
        lines.append(f"ENV {k}={_quote(v)}")
    lines += [f"USER {UID}", "ENV HOME=/tmp", f"WORKDIR {workdir}", 'CMD ["sleep", "infinity"]']
    return "\n".join(lines) + "\n"


def _quote(v: str) -> str:
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


def run_args(name: str, image_tag: str, limits: Limits) -> list[str]:
    return ["run", "-d", "--name", name, "--network", "none", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges", "--user", UID, "--pids-limit", str(limits.processes),
            "--memory", f"{limits.memory_mb}m", "--ulimit", f"fsize={limits.file_size_mb * 1024 * 1024}",
            image_tag]


class DockerSession(Session):
    def __init__(self, tree: Path, workdir: str, env: dict[str, str], limits: Limits, docker: str,
                 image: str, tools: list[str]):
        super().__init__(tree, workdir, env, limits)
        self.docker = docker
        self.name = f"traitforge-sbx-{uuid.uuid4().hex[:12]}"
        ctx = tree.parent / f".{tree.name}-docker"
        remove_tree(ctx)
        copy_tree(tree, ctx)
        (ctx / "Dockerfile").write_text(dockerfile(tree, image, tools, workdir, env))
        self._docker("build", "-q", "-t", self.name, str(ctx), timeout=900)
        remove_tree(ctx)
        self._docker(*run_args(self.name, self.name, limits), timeout=120)

    def _docker(self, *args: str, timeout: float) -> subprocess.CompletedProcess:
        r = subprocess.run([self.docker, *args], capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"docker {args[0]}: {(r.stderr.strip().splitlines() or ['failed'])[-1]}")
        return r

    def run(self, command: str, timeout_s: float) -> CommandResult:
        start = time.monotonic()
        secs = max(int(timeout_s + 0.999), 1)
        argv = [self.docker, "exec", "-w", self.workdir, self.name, "timeout", "-s", "KILL", str(secs),
                "bash", "-c", command]
        try:
            r = subprocess.run(argv, capture_output=True, timeout=secs + 30, stdin=subprocess.DEVNULL)
            code: int | None = r.returncode
            out, err = r.stdout, r.stderr
        except subprocess.TimeoutExpired as e:
            code, out, err = None, e.stdout or b"", e.stderr or b""
        timed_out = code is None or code == 137 and time.monotonic() - start >= secs
        cap = self.limits.output_bytes
        return CommandResult(command, None if timed_out else code, out[:cap].decode("utf-8", "replace"),
                             err[:cap].decode("utf-8", "replace"), timed_out, time.monotonic() - start)

    def close(self) -> None:
        try:
            for m in tree_mounts(self.tree):
                back = m.source.with_name(m.source.name + ".out")
                remove_tree(back)
                self._docker("cp", f"{self.name}:{m.target}/.", str(back), timeout=300)
                remove_tree(m.source)
                back.rename(m.source)
        finally:
            subprocess.run([self.docker, "rm", "-f", self.name], capture_output=True, timeout=120)
            subprocess.run([self.docker, "rmi", "-f", self.name], capture_output=True, timeout=120)


class DockerEngine(Engine):
    name = "docker"

    def __init__(self, docker: str | None = None, image: str = "debian:bookworm-slim"):
        self.docker = docker or shutil.which("docker") or "docker"
        self.image = image

    def unavailable(self) -> str | None:
        if not shutil.which(self.docker):
            return "docker is not installed"
        try:
            r = subprocess.run([self.docker, "info", "--format", "{{.ServerVersion}}"], capture_output=True,
                               text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"docker does not answer: {e}"
        if r.returncode != 0:
            return f"no docker engine running ({(r.stderr.strip().splitlines() or ['docker info failed'])[-1]})"
        return None

    def missing_tools(self, tools: list[str]) -> list[str]:
        # The generated Dockerfile installs the ones it knows.
        return [t for t in tools if t not in PACKAGES]

    def open(self, tree: Path, workdir: str = "/app", env: dict[str, str] | None = None,
             limits: Limits | None = None, scratch: Path | None = None, tools: list[str] = ()) -> Session:
        return DockerSession(tree, workdir, env or {}, limits or Limits(), self.docker, self.image, list(tools))
