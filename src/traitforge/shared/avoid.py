"""The "things to avoid" list: ONE mechanism for naming patterns a generator should not produce,
shared by generation (curation's known offenders named up front in generation prompts, and the
patterns curation flagged named in the top-up rounds) and by curation (regenerating a row without
a pattern it found).

- `avoid_list(patterns)`: the block to put in a prompt (template avoid.txt, overridable), "" for none;
- `known_offenders(dataset)`: curation's known over-represented patterns;
- `read_found(root)` / `write_found(root, patterns)`: the patterns curation flagged in a run
  (RUN/curation/avoid.json).
Patterns are short descriptions ("opens by validating the user's feelings"), most important first."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from traitforge.prompts import PACKAGE, PromptKit

AVOID_FILE = ("curation", "avoid.json")
MAX_ITEMS = 8  # a longer list dilutes the prompt


def avoid_list(patterns: Iterable[str], templates: PromptKit = PACKAGE) -> str:
    """The avoid.txt block naming each pattern once (most important first), or "" for none."""
    items = list(dict.fromkeys(p.strip() for p in patterns if p and p.strip()))[:MAX_ITEMS]
    if not items:
        return ""
    return templates.render("avoid", patterns="\n".join(f"- {p}" for p in items))


def known_offenders(dataset: str) -> list[str]:
    """Curation's known over-represented patterns of a dataset ("documents" or "chats")."""
    from traitforge.shared.pattern_rules import KNOWN

    return [k.description for k in KNOWN if k.dataset == dataset]


def read_found(root: Path) -> list[str]:
    path = Path(root).joinpath(*AVOID_FILE)
    if not path.is_file():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    return [str(p) for p in data.get("patterns", [])]


def write_found(root: Path, patterns: Iterable[str]) -> None:
    from traitforge.jsonl import write_json_atomic

    path = Path(root).joinpath(*AVOID_FILE)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"patterns": list(dict.fromkeys(patterns))})
