"""Tagged model output, parsed tolerantly: prompts ask for `<reasoning>...</reasoning>` then
`<verdict>...</verdict>` (or `<message>`, `<reply>`), and these helpers read them back from strong
models (who follow the format) and weak ones (who drop a closing tag, add markdown, or answer
with a bare word). A verdict is always read after the reasoning: the last one given wins."""

from __future__ import annotations

import re
from typing import Iterable


def _tag_re(name: str) -> re.Pattern[str]:
    return re.compile(rf"<\s*{name}\s*>(.*?)(?:<\s*/\s*{name}\s*>|$)", re.I | re.S)


def tag(text: str, name: str) -> str | None:
    """The content of the last `<name>...</name>` in `text` (an unclosed last tag runs to the end),
    stripped; None when there is no such tag."""
    found = _tag_re(name).findall(text)
    return found[-1].strip() if found else None


def tags(text: str, name: str) -> list[str]:
    """The contents of every complete `<name>...</name>`, in order, stripped and non-empty (an
    unclosed last one, cut by the token limit, is left out)."""
    found = re.findall(rf"<\s*{name}\s*>(.*?)<\s*/\s*{name}\s*>", text, re.I | re.S)
    return [f.strip() for f in found if f.strip()]


def has_empty_tag(text: str, name: str) -> bool:
    """Whether the text holds `<name/>` (or `<name></name>`): e.g. refine's keep exit."""
    return bool(re.search(rf"<\s*{name}\s*/\s*>|<\s*{name}\s*>\s*<\s*/\s*{name}\s*>", text, re.I))


def after_reasoning(text: str) -> str:
    """What follows the reasoning block: all of the text when there is none; nothing when it was
    opened and never closed (a reply cut mid-reasoning has no verdict yet)."""
    m = re.search(r"<\s*/\s*reasoning\s*>", text, re.I)
    if m:
        return text[m.end():]
    return "" if re.search(r"<\s*reasoning\s*>", text, re.I) else text


def verdict(text: str, choices: Iterable[str]) -> str | None:
    """The verdict (one of `choices`, upper case) given after the reasoning: from a <verdict> tag,
    else a "VERDICT: X" line, else the last choice written in capitals after the reasoning.
    None: no verdict (the row stays unjudged, never a guess)."""
    words = [c.upper() for c in choices]
    alt = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    body = tag(text, "verdict")
    if body is not None:
        m = re.search(rf"\b({alt})\b", body, re.I)
        if m:
            return m.group(1).upper()
    rest = after_reasoning(text)
    lines = re.findall(rf"^[\s*_#>-]*verdict[\s*_]*[:=][\s*_]*({alt})\b", rest, re.I | re.M)
    if lines:
        return lines[-1].upper()
    caps = re.findall(rf"\b({alt})\b", rest)
    return caps[-1] if caps else None
