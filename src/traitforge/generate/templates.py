"""Prompt templates: .txt files in prompts/ beside this module, filled with string.Template
(`$name`), so literal braces in prompts need no escaping and a missing variable is an error."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from string import Template

from traitforge.types import stable_hash

PROMPTS_DIR = Path(__file__).with_name("prompts")


@lru_cache(maxsize=None)
def template_text(name: str) -> str:
    return (PROMPTS_DIR / f"{name}.txt").read_text(encoding="utf-8")


def render(name: str, **variables: object) -> str:
    """The template `name` with every `$var` filled; a missing one raises KeyError."""
    return Template(template_text(name)).substitute({k: str(v) for k, v in variables.items()}).strip()


def templates_hash(*names: str) -> str:
    """Changes when any of these templates is edited (part of a stage fingerprint)."""
    return stable_hash({n: template_text(n) for n in names})


def static_parts(name: str) -> list[str]:
    """The template's own wording, split at the variables: what must never leak into outputs."""
    return [p for p in re.split(r"\$\{?\w+\}?", template_text(name)) if p.strip()]
