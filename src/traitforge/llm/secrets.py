"""Scrub API keys out of text before it is printed or saved: a server error may echo the key it
was sent ("Incorrect API key provided: sk-proj-..."), and error texts end up on screen, in the run's
log and in the manifest."""

from __future__ import annotations

import os
import re

# The providers' own key variables; an `api_key_env` a model spec names is added when it is used.
KEY_ENV_VARS = ["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY"]
_IN_USE: set[str] = set()
# Key-shaped tokens even where no variable holds them: OpenAI / Anthropic "sk-..." keys, Google "AIza..." keys.
_TOKEN = re.compile(r"\b(?:sk-[A-Za-z0-9_\-]{16,}|AIza[0-9A-Za-z_\-]{30,})")
# A value shorter than this is not a key worth hunting for (and would mangle ordinary words).
_MIN_LEN = 8


def register(env_var: str | None) -> None:
    """Scrub this variable's value too (a model spec's `api_key_env`)."""
    if env_var:
        _IN_USE.add(env_var)


def scrub(text: str) -> str:
    """`text` with the values of the key variables, and any key-shaped token, replaced by
    "[redacted]" (naming the variable where one holds it)."""
    if not text:
        return text
    for var in (*KEY_ENV_VARS, *sorted(_IN_USE)):
        value = os.environ.get(var) or ""
        if len(value) >= _MIN_LEN and value in text:
            text = text.replace(value, f"[redacted ${var}]")
    return _TOKEN.sub("[redacted]", text)
