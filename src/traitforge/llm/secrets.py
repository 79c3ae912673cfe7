"""Scrub API keys out of text before it is printed or saved: a server error may echo the key it
was sent, and error texts end up on screen and in the run's manifest."""

from __future__ import annotations

import os

KEY_ENV_VARS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY")
_MIN_LEN = 8  # shorter values are no key worth hunting for (and would mangle ordinary words)


def scrub(text: str) -> str:
    """`text` with the value of each key variable replaced by "***"."""
    if not text:
        return text
    for var in KEY_ENV_VARS:
        value = os.environ.get(var) or ""
        if len(value) >= _MIN_LEN:
            text = text.replace(value, "***")
    return text
