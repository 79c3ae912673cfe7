"""The "things to avoid" list: ONE mechanism for naming patterns a generator should not produce,
shared by generation (known offenders named in generation prompts, and the top-up rounds) and by
curation (regenerating a row without a pattern curation found).

- `render_avoid(patterns)`: the text block to put in a prompt ("" for none);
- `read_found(root)`: the patterns curation flagged in a run (RUN/curation/avoid.json);
- `write_found(root, patterns)`: what curation writes there.
Patterns are short descriptions ("opens by validating the user's feelings"), most important first."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

AVOID_FILE = ("curation", "avoid.json")
MAX_ITEMS = 8  # a longer list dilutes the prompt


def render_avoid(patterns: Iterable[str], header: str = "Avoid these patterns, which are already "
                 "over-represented in the data:") -> str:
    """A prompt block naming each pattern once, or "" when there are none."""
    items = list(dict.fromkeys(p.strip() for p in patterns if p and p.strip()))[:MAX_ITEMS]
    if not items:
        return ""
    return header + "\n" + "\n".join(f"- {p}" for p in items)


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
