"""`traitforge evals fetch NAME DIR`: download an external evaluation set at a pinned upstream
commit into DIR (network at the user's side) and check its layout. traitforge ships none of
their text; a spec then names DIR (evaluation.agentic_misalignment.dir, evaluation.delusion.dir,
evaluation.odcv.dir)."""

from __future__ import annotations

import json
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from traitforge.errors import InputError

ARCHIVE_URL = "https://codeload.github.com/{repo}/tar.gz/{commit}"


@dataclass(frozen=True)
class Source:
    repo: str
    commit: str
    spec_field: str

    def check(self) -> Callable[[Path], list[str]]:
        if self.spec_field == "agentic_misalignment":
            from traitforge.evaluate.agentic_misalignment import check_layout
        elif self.spec_field == "odcv":
            from traitforge.evaluate.odcv.layout import check_layout
        else:
            from traitforge.evaluate.delusion import check_layout
        return check_layout


SOURCES = {
    "agentic-misalignment": Source("anthropic-experimental/agentic-misalignment",
                                   "ea0630e1a3eaae7f9f9740fd2703229d3854ccda", "agentic_misalignment"),
    "ai-psychosis": Source("tim-hua-01/ai-psychosis", "b6593b38b18edf0b9267784c1f3e9357c6a6be6e", "delusion"),
    "odcv-bench": Source("McGill-DMaS/ODCV-Bench", "7353f1cf4b2579a3a8a5b8a5061d7c7d41f60668", "odcv"),
}


def find_layout(root: Path, check: Callable[[Path], list[str]], depth: int = 2) -> Path | None:
    """`root` or the first folder under it (at most `depth` levels) in which `check` finds nothing missing."""
    if not check(root):
        return root
    if depth > 0:
        for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            found = find_layout(d, check, depth - 1)
            if found is not None:
                return found
    return None


def _extract(archive: Path, dest: Path) -> None:
    """A GitHub archive (one top-level folder) into dest, that folder stripped; no member may
    land outside dest."""
    with tarfile.open(archive, "r:gz") as tar:
        members = []
        for m in tar.getmembers():
            parts = Path(m.name).parts[1:]
            if not parts or not (m.isfile() or m.isdir()):
                continue
            rel = Path(*parts)
            if rel.is_absolute() or ".." in rel.parts:
                raise InputError(f"{archive}: unsafe path in the archive: {m.name}")
            m.name = str(rel)
            members.append(m)
        tar.extractall(dest, members=members, filter="data")


def fetch_eval(name: str, dest: Path, url: str | None = None, timeout: float = 60) -> Path:
    """Download NAME at its pinned commit into `dest` (created; must be empty or absent) and
    return the folder in the expected layout. One-line InputError when offline or wrong."""
    if name not in SOURCES:
        raise InputError(f"evals fetch: unknown eval '{name}' (have: {', '.join(SOURCES)})")
    src = SOURCES[name]
    check = src.check()
    if dest.exists() and any(dest.iterdir()):
        found = find_layout(dest, check)
        if found is not None:
            return found
        raise InputError(f"evals fetch {name}: {dest} exists and is not empty; give an empty or new directory")
    url = url or ARCHIVE_URL.format(repo=src.repo, commit=src.commit)
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "archive.tar.gz"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp, archive.open("wb") as out:
                shutil.copyfileobj(resp, out)
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            reason = getattr(e, "reason", None) or e
            raise InputError(f"evals fetch {name}: cannot download {url}: {reason} (offline? run this where "
                             f"github.com is reachable and copy {dest} here)") from None
        try:
            dest.mkdir(parents=True, exist_ok=True)
            _extract(archive, dest)
        except (tarfile.TarError, EOFError) as e:
            raise InputError(f"evals fetch {name}: {url} is not a readable .tar.gz: {e}") from None
    found = find_layout(dest, check)
    if found is None:
        raise InputError(f"evals fetch {name}: {dest} does not have the expected layout after download: "
                         f"missing {', '.join(check(dest))}")
    (dest / "FETCHED.json").write_text(json.dumps({"name": name, "repo": src.repo, "commit": src.commit, "url": url},
                                                  indent=2) + "\n", encoding="utf-8")
    return found
