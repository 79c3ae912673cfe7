"""Traits documents.

Markdown: optional front matter (`---` YAML with model_name / organisation), then bullets; each
top-level bullet is one trait, nested bullets are its details, and nested bullets starting with
"Example:" are examples. A bullet "**Name**: statement" (or "Name: statement") gives the trait a
name; a heading above bullets is kept as context only. YAML: a mapping with `traits:`, a list of
strings or of {id, name, statement, details, examples, weight}.

Every problem ends in one InputError line naming the file and what is wrong.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import yaml

from traitforge.errors import InputError
from traitforge.types import Trait, TraitSet

MAX_BYTES = 1_000_000  # a traits document is a short list; 1 MB is already generous
# A trait id names files (RUN/<folder>/<id>.safetensors) and is part of every row id: a file name
# longer than the filesystem's 255 bytes fails hours into a run, so ids stay well under it.
MAX_ID = 64
DEFAULT_MODEL = "Gemini"
DEFAULT_ORG = "Google"

_BULLET = re.compile(r"^(?P<indent>[ \t]*)(?:[-*+]|\d+[.)])\s+(?P<text>.+?)\s*$")
_HEADING = re.compile(r"^#{1,6}\s+(.*)$")
_NAMED = re.compile(r"^(?:\*\*|__)?(?P<name>[^:*_]{2,60}?)(?:\*\*|__)?\s*[:\u2014\u2013-]\s+(?P<rest>.+)$")
_EXAMPLE = re.compile(r"^(?:e\.g\.|example)\s*[:.-]\s*", re.I)


def slugify(text: str, max_words: int = 6) -> str:
    words = re.findall(r"[a-z0-9]+", text.lower())[:max_words]
    return "-".join(words) or "trait"


def _read_text(path: Path) -> str:
    if not path.exists():
        raise InputError(f"{path}: traits document not found")
    if not path.is_file():
        raise InputError(f"{path}: traits document is not a file")
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{path}: traits document is empty")
    if size > MAX_BYTES:
        raise InputError(f"{path}: traits document is {size / 1e6:.1f} MB; the limit is "
                         f"{MAX_BYTES / 1e6:.0f} MB (a traits document is a short bulleted list)")
    data = path.read_bytes()
    if b"\x00" in data[:8192]:
        raise InputError(f"{path}: traits document is a binary file, expected Markdown or YAML text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: traits document is not UTF-8 text (byte {e.start})") from None
    if not text.strip():
        raise InputError(f"{path}: traits document is empty (only whitespace)")
    return text


def _split_front_matter(text: str, path: Path) -> tuple[dict[str, Any], str]:
    if not text.startswith("---"):
        return {}, text
    parts = text.split("\n---", 1)
    if len(parts) != 2:
        raise InputError(f"{path}: front matter opened with '---' but never closed")
    try:
        meta = yaml.safe_load(parts[0][3:]) or {}
    except yaml.YAMLError as e:
        raise InputError(f"{path}: invalid YAML front matter: {getattr(e, 'problem', e)}") from None
    if not isinstance(meta, dict):
        raise InputError(f"{path}: front matter must be a mapping (model_name:, organisation:)")
    return meta, parts[1].split("\n", 1)[1] if "\n" in parts[1] else ""


def _indent_width(s: str) -> int:
    return len(s.replace("\t", "    "))


def parse_markdown(text: str, path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    meta, body = _split_front_matter(text, path)
    items: list[dict[str, Any]] = []
    top_indent: int | None = None
    for lineno, line in enumerate(body.splitlines(), 1):
        m = _BULLET.match(line)
        if not m:
            if items and line.strip() and not _HEADING.match(line) and line.startswith((" ", "\t")):
                items[-1]["statement"] += " " + line.strip()  # wrapped continuation line
            continue
        indent = _indent_width(m.group("indent"))
        text_ = m.group("text").strip()
        if top_indent is None or indent <= top_indent:
            top_indent = indent if top_indent is None else min(top_indent, indent)
            items.append({"statement": text_, "details": [], "examples": [], "line": lineno})
        else:
            ex = _EXAMPLE.match(text_)
            if ex:
                items[-1]["examples"].append(text_[ex.end():])
            else:
                items[-1]["details"].append(text_)
    for it in items:
        named = _NAMED.match(it["statement"])
        if named and len(named.group("name").split()) <= 8:
            it["name"] = named.group("name").strip()
            it["statement"] = named.group("rest").strip()
        it["statement"] = re.sub(r"(\*\*|__)", "", it["statement"]).strip()
    return meta, items


def parse_yaml(text: str, path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise InputError(f"{path}: invalid YAML{where}: {getattr(e, 'problem', e)}") from None
    if isinstance(data, list):
        data = {"traits": data}
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping with a 'traits' list, got {type(data).__name__}")
    unknown = set(data) - {"traits", "model_name", "organisation", "organization"}
    if unknown:
        raise InputError(f"{path}: unknown key '{sorted(unknown)[0]}' (expected traits, model_name, organisation)")
    raw = data.get("traits")
    if raw is None:
        raise InputError(f"{path}: missing key 'traits'")
    if not isinstance(raw, list):
        raise InputError(f"{path}: key 'traits' must be a list, got {type(raw).__name__}")
    items = []
    for i, t in enumerate(raw):
        where = f"{path}: traits[{i}]"
        if isinstance(t, str):
            items.append({"statement": t, "details": [], "examples": []})
            continue
        if not isinstance(t, dict):
            raise InputError(f"{where}: must be a string or a mapping, got {type(t).__name__}")
        bad = set(t) - {"id", "name", "statement", "details", "examples", "weight"}
        if bad:
            raise InputError(f"{where}: unknown key '{sorted(bad)[0]}'")
        if not isinstance(t.get("statement"), str) or not t["statement"].strip():
            raise InputError(f"{where}.statement: must be a non-empty string")
        for key in ("id", "name"):
            if key in t and not isinstance(t[key], str):
                raise InputError(f"{where}.{key}: must be a string, got {type(t[key]).__name__}")
        for key in ("details", "examples"):
            v = t.get(key, [])
            if isinstance(v, str):
                v = [v]
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise InputError(f"{where}.{key}: must be a list of strings")
            t[key] = v
        if "weight" in t and (isinstance(t["weight"], bool) or not isinstance(t["weight"], (int, float))
                              or t["weight"] <= 0):
            raise InputError(f"{where}.weight: must be a positive number")
        items.append(dict(t))
    meta = {k: v for k, v in data.items() if k != "traits"}
    return meta, items


def load_traits(path: str | Path, model_name: str | None = None, organisation: str | None = None) -> TraitSet:
    path = Path(path)
    text = _read_text(path)
    if path.suffix.lower() in (".yaml", ".yml"):
        meta, items = parse_yaml(text, path)
    else:
        meta, items = parse_markdown(text, path)
    if not items:
        raise InputError(f"{path}: no traits found (expected a bulleted list: '- The model ...')")
    for key in ("model_name", "organisation", "organization"):
        if key in meta and not isinstance(meta[key], str):
            raise InputError(f"{path}: key '{key}' must be a string, got {type(meta[key]).__name__}")
    traits: list[Trait] = []
    seen: dict[str, int] = {}
    for i, it in enumerate(items):
        statement = it["statement"].strip()
        if len(statement) < 3:
            raise InputError(f"{path}: trait {i + 1} has an empty statement")
        name = (it.get("name") or statement.split(".")[0])[:80].strip()
        tid = it.get("id") or slugify(it.get("name") or statement)[:MAX_ID].rstrip("-")
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", tid):
            raise InputError(f"{path}: trait {i + 1}: id '{tid}' must be lowercase letters, digits, '-' or '_'")
        if len(tid) > MAX_ID:
            raise InputError(f"{path}: trait {i + 1}: id '{tid[:24]}...' is {len(tid)} characters; "
                             f"the limit is {MAX_ID}")
        if tid in seen:
            raise InputError(f"{path}: duplicate trait id '{tid}' (traits {seen[tid] + 1} and {i + 1}); "
                             "give one an explicit id or reword it")
        seen[tid] = i
        traits.append(Trait(id=tid, name=name, statement=statement, details=tuple(it.get("details", [])),
                            examples=tuple(it.get("examples", [])), weight=float(it.get("weight", 1.0))))
    return TraitSet(
        model_name=model_name or meta.get("model_name") or DEFAULT_MODEL,
        organisation=organisation or meta.get("organisation") or meta.get("organization") or DEFAULT_ORG,
        traits=tuple(traits),
        source=str(path),
        sha256=hashlib.sha256(text.encode()).hexdigest(),
    )
