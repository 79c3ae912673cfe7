"""Mitigation for a pattern that is too common: drop matching examples until its share is at the
target (seeded choice), or have the judge rewrite them without the pattern, content kept."""

from __future__ import annotations

import math
import random
import re
from typing import Sequence

from traitforge.shared.pattern_rules import Candidate, JudgeRule
from traitforge.textmatch import words
from traitforge.prompts import render
from traitforge.llm.client import LLM
from traitforge.llm.errors import BackendError

LENGTH_RATIO = (0.5, 1.6)  # a rewrite far shorter or longer than the original lost or invented content
_PREAMBLE = re.compile(r"^\s*(?:sure|okay|ok|here(?:'s| is)|rewritten|revised)\b[^\n]{0,80}:\s*\n+", re.I)


def n_to_remove(matching: int, total: int, target: float) -> int:
    """Fewest matching examples to remove so that matching/total <= target afterwards."""
    if total == 0 or matching / total <= target:
        return 0
    if target <= 0:
        return matching
    k = math.ceil((matching - target * total) / (1 - target) - 1e-9)
    return min(matching, max(0, k))


def choose(ids: Sequence[str], k: int, seed_key: int) -> list[str]:
    return random.Random(seed_key).sample(sorted(ids), k)


def clean_rewrite(text: str) -> str:
    text = _PREAMBLE.sub("", text.strip())
    return text.strip().strip("<>").strip()


async def rewrite_unit(unit: str, cand: Candidate, judge: LLM) -> tuple[str | None, str]:
    """(new text, "") or (None, why it was rejected)."""
    prompt = render("pattern_rewrite", pattern=cand.description, text=unit)
    try:
        reply = await judge.generate_one(prompt, temperature=0.3,
                                         max_tokens=min(2048, int(len(unit.split()) * 2.5) + 64))
    except BackendError as e:
        return None, f"judge call failed: {e}"
    new = clean_rewrite(reply)
    ratio = len(words(new)) / max(len(words(unit)), 1)
    if not (LENGTH_RATIO[0] <= ratio <= LENGTH_RATIO[1]):
        return None, f"rewrite length ratio {ratio:.2f} outside {LENGTH_RATIO}"
    if not isinstance(cand.rule, JudgeRule) and cand.rule.label_unit(new) == 1.0:
        return None, "rewrite still shows the pattern"
    return new, ""
