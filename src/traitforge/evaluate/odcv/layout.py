"""ODCV-Bench scenarios (McGill-DMaS/ODCV-Bench, loaded by path) and the Dockerfile interpreter that
lays one out into a fresh tree for a sandbox (`traitforge.sandbox`).

Interpreted: FROM (the image, for the docker engine; a python image implies python3), WORKDIR, ENV,
CMD (recorded, not run: it starts the upstream command server), COPY (Docker's rules: globs, a
folder's contents, a trailing `/` or several sources meaning a folder) and, in RUN, `&&`/`;` chains of
mkdir, chmod (octal and symbolic, -R), mv, cp, rm and dos2unix, done in Python on the tree.

Skipped, by one rule: what only the upstream command server or the image build needs. COPYs of
`requirements.txt`, `task_executor_api.py` and `templates/` (the server's files, not in the
benchmark's copy), `pip install` (the server's requirements), `apt-get update`, and `rm` under
/var/lib/apt. `apt-get install` is not run either: the tools it names (bc, jq, dos2unix, python3)
are checked on the sandbox's side instead (`Engine.missing_tools`). Anything else is refused with
one line naming the Dockerfile line, as is a COPY whose source is missing (naming the file).

Modes: the benchmark's copy may be read-only with every bit set, so a COPY'd file gets what a git
checkout gives (0755 with a `#!` line, else 0644), folders 0755; the Dockerfile's chmods then apply
and the final modes are written last (so a `chmod -R 555` folder can still be filled first).
"""

from __future__ import annotations

import fnmatch
import json
import posixpath
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from traitforge.errors import InputError
from traitforge.sandbox.base import RESERVED, remove_tree

VARIANTS = ("mandated", "incentivized")
SERVER_FILES = frozenset({"requirements.txt", "task_executor_api.py", "templates"})
TOOL_PACKAGES = {"python3": "python3", "bc": "bc", "jq": "jq", "dos2unix": "dos2unix"}
GLOB_CHARS = frozenset("*?[")


class LayoutError(InputError):
    """A scenario that cannot be laid out; one line naming the scenario and the file or line."""


@dataclass(frozen=True)
class Scenario:
    name: str
    variant: str
    dir: Path
    system_prompt: str
    user_prompt: str

    @property
    def id(self) -> str:
        return f"{self.variant}/{self.name}"


@dataclass
class LaidOut:
    """A scenario laid out in `root` (`root/app` is /app, `root/usr/local/bin` is /usr/local/bin)."""

    scenario: str
    root: Path
    workdir: str = "/"
    env: dict[str, str] = field(default_factory=dict)
    image: str = ""
    tools: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def check_layout(root: Path) -> list[str]:
    """What is missing for the benchmark's layout (empty when `root` is usable)."""
    missing = []
    for v in VARIANTS:
        if not list((root / f"{v}_scenarios").glob("*/prompt.json")):
            missing.append(f"{v}_scenarios/*/prompt.json")
    return missing


def load_scenarios(root: Path, variants: list[str] | tuple[str, ...] = VARIANTS,
                   names: list[str] | int | None = None) -> list[Scenario]:
    """The scenarios under `root` (sorted by name), restricted to `names` (a list) or the first
    `names` per variant (an int)."""
    where = "evaluation.odcv.dir"
    if not root.is_dir():
        raise InputError(f"{where}: {root} is not a directory (get one with: traitforge evals fetch odcv-bench DIR)")
    missing = check_layout(root)
    if missing:
        raise InputError(f"{where}: {root} is not in the ODCV-Bench layout: missing {', '.join(missing)}")
    out: list[Scenario] = []
    for v in variants:
        if v not in VARIANTS:
            raise InputError(f"evaluation.odcv.variants: unknown '{v}' (have: {', '.join(VARIANTS)})")
        found = sorted(p.parent for p in (root / f"{v}_scenarios").glob("*/prompt.json"))
        if isinstance(names, list):
            unknown = sorted(set(names) - {d.name for d in found})
            if unknown:
                raise InputError(f"evaluation.odcv.scenarios: unknown {unknown} in {v}_scenarios")
            found = [d for d in found if d.name in names]
        elif isinstance(names, int):
            found = found[:names]
        out += [_scenario(d, v) for d in found]
    return out


def _scenario(d: Path, variant: str) -> Scenario:
    path = d / "prompt.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Scenario(d.name, variant, d, str(data["system_prompt"]).strip(), str(data["user_prompt"]).strip())
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(f"{path}: not a scenario prompt (needs system_prompt and user_prompt): {e}") from None


class _Interpreter:
    def __init__(self, ctx: Path, root: Path, name: str):
        self.ctx, self.root, self.name = ctx, root, name
        self.out = LaidOut(name, root)
        self.modes: dict[str, int] = {}  # container path -> mode set by a chmod
        self.where = ""

    # --- paths ---------------------------------------------------------------------
    def cpath(self, p: str) -> str:
        """A container path, absolute and normalised (relative ones from WORKDIR)."""
        return posixpath.normpath(posixpath.join(self.out.workdir, p))

    def host(self, cp: str) -> Path:
        top = cp.strip("/").split("/")[0]
        if cp == "/" or (top in RESERVED and not (cp + "/").startswith("/usr/local/bin/")):
            raise self.error(f"lays out {cp}, which the sandbox owns (only /usr/local/bin under /usr)")
        return self.root / cp.lstrip("/")

    def expand(self, p: str) -> list[str]:
        """A shell glob over the tree (unmatched: the word itself, as a shell leaves it)."""
        cp = self.cpath(p)
        if not GLOB_CHARS & set(cp):
            return [cp]
        self.host(cp)
        pattern = cp.strip("/")
        depth = pattern.count("/")
        hits = sorted("/" + r for r in (q.relative_to(self.root).as_posix() for q in self.root.rglob("*"))
                      if r.count("/") == depth and fnmatch.fnmatchcase(r, pattern))
        return hits or [cp]

    def error(self, msg: str) -> LayoutError:
        return LayoutError(f"{self.name}: {self.where}: {msg}")

    # --- modes ---------------------------------------------------------------------
    def mode_of(self, cp: str) -> int:
        if cp in self.modes:
            return self.modes[cp]
        h = self.root / cp.lstrip("/")  # already in the tree: checked when it was made
        if h.is_dir():
            return 0o755
        with h.open("rb") as f:
            return 0o755 if f.read(2) == b"#!" else 0o644

    def forget(self, cp: str) -> None:
        for k in [k for k in self.modes if k == cp or k.startswith(cp + "/")]:
            del self.modes[k]

    def move_modes(self, src: str, dst: str) -> None:
        for k in [k for k in self.modes if k == src or k.startswith(src + "/")]:
            self.modes[dst + k[len(src):]] = self.modes.pop(k)

    # --- instructions --------------------------------------------------------------
    def copy(self, args: list[str]) -> None:
        args = [a for a in args if not a.startswith("--")]
        if len(args) < 2:
            raise self.error("COPY needs a source and a destination")
        *srcs, dest = args
        many = len(srcs) > 1 or any(GLOB_CHARS & set(s) for s in srcs)
        to_dir = dest.endswith("/") or many
        dcp = self.cpath(dest)
        for src in srcs:
            rel = posixpath.normpath(src.lstrip("/"))
            if rel.split("/")[0] in SERVER_FILES and rel.count("/") == 0:
                self.out.skipped.append(f"COPY {src} (the upstream command server's file)")
                continue
            if GLOB_CHARS & set(rel):
                hits = sorted(p for p in self.ctx.glob(rel) if p.name != "Dockerfile")
                if not hits:
                    raise self.error(f"{src} matches no file in {self.ctx}")
            else:
                hits = [self.ctx / rel]
                if not hits[0].exists():
                    raise self.error(f"{rel} is missing from {self.ctx}")
            for h in hits:
                if h.is_dir():
                    self._put_dir(h, dcp)
                elif to_dir or self.host(dcp).is_dir():
                    self._put_file(h, f"{dcp}/{h.name}")
                else:
                    self._put_file(h, dcp)

    def _put_file(self, src: Path, cp: str) -> None:
        dst = self.host(cp)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        self.forget(cp)

    def _put_dir(self, src: Path, cp: str) -> None:
        self.host(cp).mkdir(parents=True, exist_ok=True)
        for child in sorted(src.iterdir()):
            (self._put_dir if child.is_dir() else self._put_file)(child, f"{cp}/{child.name}")

    def run(self, line: str) -> None:
        try:
            lex = shlex.shlex(line, posix=True, punctuation_chars="&;|")
            lex.whitespace_split = True
            lex.commenters = ""
            tokens = list(lex)
        except ValueError as e:
            raise self.error(f"cannot parse: {e}") from None
        cmd: list[str] = []
        for tok in [*tokens, ";"]:
            if tok in ("&&", ";"):
                if cmd:
                    self.command(cmd)
                cmd = []
            elif set(tok) <= set("&;|"):
                raise self.error(f"'{tok}' is not interpreted")
            else:
                cmd.append(tok)

    def command(self, argv: list[str]) -> None:
        prog, args = argv[0], argv[1:]
        opts = [a for a in args if a.startswith("-")]
        words = [a for a in args if not a.startswith("-")]
        if prog == "apt-get":
            if args[:1] == ["update"]:
                return
            if "install" in words:
                for pkg in words[words.index("install") + 1:]:
                    if pkg in TOOL_PACKAGES and TOOL_PACKAGES[pkg] not in self.out.tools:
                        self.out.tools.append(TOOL_PACKAGES[pkg])
                self.out.skipped.append(f"apt-get install {' '.join(words[1:])} (host tools checked instead)")
                return
        elif prog in ("pip", "pip3") or argv[:3] in (["python3", "-m", "pip"], ["python", "-m", "pip"]):
            self.out.skipped.append(f"{' '.join(argv)} (the upstream command server's requirements)")
            return
        elif prog == "mkdir":
            for w in words:
                self.host(self.cpath(w)).mkdir(parents=True, exist_ok=True)
            return
        elif prog == "chmod" and words:
            recursive = any(o in ("-R", "--recursive") for o in opts)
            for w in words[1:]:
                for cp in self.expand(w):
                    self._chmod(cp, words[0], recursive)
            return
        elif prog == "rm":
            force = any("f" in o for o in opts)
            for w in words:
                if self.cpath(w).startswith("/var/lib/apt/"):
                    continue
                for cp in self.expand(w):
                    h = self.host(cp)
                    if h.is_dir() and not h.is_symlink():
                        if not any("r" in o.lower() for o in opts):
                            raise self.error(f"rm: {cp} is a folder")
                        remove_tree(h)
                    elif h.exists():
                        h.unlink()
                    elif not force:
                        raise self.error(f"rm: {cp} does not exist")
                    self.forget(cp)
            return
        elif prog in ("mv", "cp") and len(words) >= 2:
            srcs = [cp for w in words[:-1] for cp in self.expand(w)]
            dcp = self.cpath(words[-1])
            for scp in srcs:
                src = self.host(scp)
                if not src.exists():
                    raise self.error(f"{prog}: {scp} does not exist")
                target = f"{dcp}/{posixpath.basename(scp)}" if self.host(dcp).is_dir() else dcp
                if prog == "mv":
                    src.rename(self.host(target))
                    self.move_modes(scp, target)
                elif src.is_dir():
                    if not any("r" in o.lower() or "a" in o for o in opts):
                        raise self.error(f"cp: {scp} is a folder")
                    self._put_dir(src, target)
                else:
                    self._put_file(src, target)
            return
        elif prog == "dos2unix":
            for w in words:
                for cp in self.expand(w):
                    h = self.host(cp)
                    if h.is_file():
                        h.write_bytes(h.read_bytes().replace(b"\r\n", b"\n"))
            return
        raise self.error(f"'{' '.join(argv)}' is not interpreted")

    def _chmod(self, cp: str, spec: str, recursive: bool) -> None:
        h = self.host(cp)
        if not h.exists():
            raise self.error(f"chmod: {cp} does not exist")
        targets = [cp]
        if recursive and h.is_dir():
            targets += ["/" + q.relative_to(self.root).as_posix() for q in sorted(h.rglob("*"))]
        for t in targets:
            self.modes[t] = self._new_mode(self.mode_of(t), spec, self.host(t).is_dir())

    def _new_mode(self, mode: int, spec: str, is_dir: bool) -> int:
        if spec.isdigit():
            return int(spec, 8)
        for clause in spec.split(","):
            who = ""
            while clause and clause[0] in "ugoa":
                who, clause = who + clause[0], clause[1:]
            mask = 0
            for w in who or "a":
                mask |= {"u": 0o700, "g": 0o070, "o": 0o007, "a": 0o777}[w]
            if len(clause) < 1 or clause[0] not in "+-=":
                raise self.error(f"chmod mode '{spec}' is not interpreted")
            op, perms = clause[0], clause[1:]
            bits = 0
            for c in perms:
                if c == "X":
                    c = "x" if is_dir or mode & 0o111 else ""
                bits |= {"r": 0o444, "w": 0o222, "x": 0o111, "": 0}.get(c, -1)
                if bits < 0:
                    raise self.error(f"chmod mode '{spec}' is not interpreted")
            bits &= mask
            mode = mode | bits if op == "+" else mode & ~bits if op == "-" else (mode & ~mask) | bits
        return mode

    def finish(self) -> None:
        """Every path's final mode, deepest first (a 555 folder is closed after its contents)."""
        paths = sorted(self.root.rglob("*"), key=lambda p: -len(p.parts))
        for p in paths:
            if not p.is_symlink():
                p.chmod(self.mode_of("/" + p.relative_to(self.root).as_posix()))


def lay_out(scenario_dir: Path, dest: Path, name: str | None = None) -> LaidOut:
    """Interpret `scenario_dir/Dockerfile` into a fresh tree at `dest` (replaced if present)."""
    name = name or scenario_dir.name
    dockerfile = scenario_dir / "Dockerfile"
    if not dockerfile.is_file():
        raise LayoutError(f"{name}: {dockerfile} is missing")
    remove_tree(dest)
    dest.mkdir(parents=True)
    it = _Interpreter(scenario_dir, dest, name)
    text = dockerfile.read_text(encoding="utf-8").replace("\\\n", " ")
    try:
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            it.where = f"Dockerfile line {lineno} ({line[:60]})"
            op, _, rest = line.partition(" ")
            op, rest = op.upper(), rest.strip()
            if op == "FROM":
                it.out.image = rest.split()[0]
                if it.out.image.startswith("python:") and "python3" not in it.out.tools:
                    it.out.tools.append("python3")
            elif op == "WORKDIR":
                it.out.workdir = it.cpath(rest)
                it.host(it.out.workdir).mkdir(parents=True, exist_ok=True)
            elif op == "ENV":
                _env(rest, it.out.env)
            elif op == "CMD":
                it.out.skipped.append(f"CMD {rest} (starts the upstream command server)")
            elif op == "COPY":
                it.copy(shlex.split(rest))
            elif op == "RUN":
                it.run(rest)
            else:
                raise it.error(f"{op} is not interpreted")
        it.finish()
    except BaseException:
        remove_tree(dest)
        raise
    return it.out


def _env(rest: str, env: dict[str, str]) -> None:
    parts = shlex.split(rest)
    if parts and "=" not in parts[0]:  # legacy `ENV KEY value with spaces`
        env[parts[0]] = rest.split(None, 1)[1] if len(parts) > 1 else ""
        return
    for p in parts:
        k, _, v = p.partition("=")
        env[k] = v
