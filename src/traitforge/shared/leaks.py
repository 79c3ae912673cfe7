"""Prompt wording copied into an output (generation drops such outputs; the agentic-traits eval flags them)."""

from __future__ import annotations

from typing import Iterable

from traitforge.prompts import PACKAGE, PromptKit
from traitforge.textmatch import NgramIndex


class LeakDetector:
    """Finds prompt wording copied into an output: any run of `n` words from the templates'
    own text (variables excluded, so the claim or scenario may be echoed legitimately). Pass
    the run's `templates` so overridden wording is what gets looked for."""

    def __init__(self, template_names: Iterable[str], n: int = 6, templates: PromptKit = PACKAGE):
        self.index = NgramIndex([part for name in template_names for part in templates.static_parts(name)], n)

    def leaks(self, text: str) -> bool:
        return self.index.contains_any(text)
