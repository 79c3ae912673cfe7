"""Diversity axes of the documents (author, era, place, register, length, stance, and language
where the spec asks): one value of each axis per document, sampled by the document's unit key
from prompts/axes.txt (overridable through the spec's prompts_dir) and recorded in its row."""

from __future__ import annotations

from dataclasses import dataclass
from string import Template

from traitforge.errors import InputError
from traitforge.prompts import PromptKit
from traitforge.types import stable_hash

ORDER = ("genre", "author", "era", "place", "register", "length", "stance", "language")


@dataclass(frozen=True)
class Value:
    text: str
    tokens: int = 0  # output tokens this value needs (length only); 0 = any


def load_axes(templates: PromptKit, model_name: str, name: str = "axes") -> dict[str, list[Value]]:
    """axis -> values, from the axes template `name` ("axis | value [| tokens]" lines; the user
    prompts' axes are user_style.txt)."""
    out: dict[str, list[Value]] = {}
    for n, line in enumerate(templates.text(name).splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = [p.strip() for p in line.split("|")]
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            raise InputError(f"{name}.txt line {n}: write 'axis | value' or 'axis | value | tokens', got {line!r}")
        tokens = 0
        if len(parts) == 3:
            if not parts[2].isdigit():
                raise InputError(f"{name}.txt line {n}: the third part must be a number of tokens, got {parts[2]!r}")
            tokens = int(parts[2])
        text = Template(parts[1]).safe_substitute(model_name=model_name)
        out.setdefault(parts[0], []).append(Value(text, tokens))
    return out


def sample_axes(key: str, axes: dict[str, list[Value]], *, max_tokens: int, genre: str = "",
                languages: list[str] | tuple[str, ...] = ()) -> dict[str, str]:
    """One value per axis for the document with unit key `key` (stable across runs). Values that
    need more output tokens than `max_tokens` are left out (the shortest stays when none fits)."""
    out: dict[str, str] = {"genre": genre} if genre else {}
    for axis, values in axes.items():
        fits = [v for v in values if v.tokens <= max_tokens] or [min(values, key=lambda v: v.tokens)]
        out[axis] = fits[int(stable_hash([key, axis], 8), 16) % len(fits)].text
    if languages:
        out["language"] = languages[int(stable_hash([key, "language"], 8), 16) % len(languages)]
    return out


def describe_axes(axes: dict[str, str]) -> str:
    """The prompt block that asks for these values (the genre is the prompt's own subject)."""
    lines = {"author": "Written by: {}", "era": "Written in: {}", "place": "Set in or written from: {}",
             "register": "Register: {}", "length": "Length: {}", "stance": "The author's stance: {}",
             "language": "Language: write it entirely in {}"}
    body = [lines.get(a, a + ": {}").format(v) for a, v in axes.items() if a != "genre"]
    if not body:
        return ""
    return "For this document (adapt the idea to these where they differ):\n" + "\n".join(f"- {b}" for b in body)
