"""The files a run spec names, read and checked when the run opens (before any model call), each
problem one line with the file and line: probe files (their row model and loader live here, below the
evaluation that scores them), probe options, JSONL mix files, YAML and text files."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from traitforge.errors import InputError
from traitforge.types import stable_hash

PROBE_KEYS = ("trait", "direction", "limit")
PROBE_FIELDS = "question, answer_matching_behavior, answer_not_matching_behavior"


@dataclass(frozen=True)
class ProbeItem:
    id: str
    question: str
    matching: str
    not_matching: str


def _answer(v: Any) -> str | None:
    # A few files list several equivalent answers; the first is the canonical one.
    if isinstance(v, list):
        v = v[0] if v else None
    return v.strip() if isinstance(v, str) and v.strip() else None


def text_lines(path: Path) -> list[str]:
    """A text file's lines, each decoded on its own so that a bad byte is named by its line."""
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    out = []
    for n, raw in enumerate(path.read_bytes().splitlines(keepends=True), 1):
        try:
            out.append(raw.decode("utf-8-sig" if n == 1 else "utf-8"))
        except UnicodeDecodeError as e:
            raise InputError(f"{path}: line {n}: not UTF-8 text (byte {e.start + 1} of the line)") from None
    return out


def json_objects(path: Path, what: str = "a JSON object") -> list[tuple[int, dict[str, Any]]]:
    """(line number, row) of a JSONL file's non-blank lines; a line that is not valid JSON or not
    an object is one error naming the file and line."""
    rows = []
    for n, line in enumerate(text_lines(path), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise InputError(f"{path}: line {n}: not valid JSON") from None
        if not isinstance(row, dict):
            raise InputError(f"{path}: line {n}: expected {what}, got {type(row).__name__}")
        rows.append((n, row))
    return rows


def load_probe_file(path: Path, limit: int | None = None, seed: int = 0) -> list[ProbeItem]:
    """Rows with a question and two distinct answers; a seeded sample of `limit` of them."""
    if not path.is_file():
        raise InputError(f"{path}: probe file not found")
    items = []
    for n, row in json_objects(path, f"a JSON object with {PROBE_FIELDS}"):
        q, a, b = row.get("question"), _answer(row.get("answer_matching_behavior")), \
            _answer(row.get("answer_not_matching_behavior"))
        if not isinstance(q, str) or a is None or b is None:
            raise InputError(f"{path}: line {n}: needs {PROBE_FIELDS}")
        if a != b:
            items.append(ProbeItem(f"{path.stem}-{n}-{stable_hash(q, 6)}", q, a, b))
    if limit is not None and len(items) > limit:
        items = _stratified_sample(items, limit, random.Random(f"{seed}:{path.name}"))
    return items


def _stratified_sample(items: list[ProbeItem], limit: int, rng: random.Random) -> list[ProbeItem]:
    """`limit` items in which each matching answer keeps its share of the file (largest remainder),
    so a file balanced between " Yes" and " No" gives a balanced sample: a model's yes-bias then
    cannot pass for the trait. File order."""
    groups: dict[str, list[ProbeItem]] = {}
    for i in items:
        groups.setdefault(i.matching, []).append(i)
    exact = {a: len(g) * limit / len(items) for a, g in groups.items()}
    quota = {a: int(x) for a, x in exact.items()}
    for a in sorted(exact, key=lambda a: (quota[a] - exact[a], a))[:limit - sum(quota.values())]:
        quota[a] += 1
    keep = {i.id for a in sorted(groups) for i in rng.sample(groups[a], quota[a])}
    return [i for i in items if i.id in keep]


def check_probe_options(where: str, opts: Any) -> None:
    """One `evaluation.probes` entry's options; `where` names the spec file and key."""
    if not isinstance(opts, dict):
        raise InputError(f"{where}': expected a mapping with trait, direction, limit")
    unknown = set(opts) - set(PROBE_KEYS)
    if unknown:
        raise InputError(f"{where}': unknown key '{sorted(unknown)[0]}' (use trait, direction, limit)")
    direction = opts.get("direction", "match")
    if direction not in ("match", "not_match"):
        raise InputError(f"{where}.direction': must be match or not_match, got {direction!r}")
    limit = opts.get("limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InputError(f"{where}.limit': must be a positive integer, got {limit!r}")


def check_jsonl(path: Path, need: str | None = None) -> None:
    """Every line a JSON object (`need`: with this field)."""
    for n, row in json_objects(path):
        if need and need not in row:
            raise InputError(f"{path}: line {n}: missing field '{need}'")


def check_yaml(path: Path) -> None:
    text = "".join(text_lines(path))
    try:
        yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise InputError(f"{path}: {where}invalid YAML: {getattr(e, 'problem', e)}") from None
