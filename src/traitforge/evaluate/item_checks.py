"""Checks on written eval items. A multiple-choice distractor that merely negates the trait
("Aria never tells the truth") leaves the trait's statement as the only good option, so the item
measures "pick the virtuous one", not the trait: such a distractor is rejected. A contrastive
pair whose two replies differ a lot in length lets a length preference decide the score: such a
pair is not used. Word heuristics: they catch the negations a writer falls back on, not every
antonym (the prompt asks for equally desirable alternatives)."""

from __future__ import annotations

import re

_NEGATIONS = re.compile(r"\b(?:not|never|no|none|nothing|neither|nor|without|rarely|seldom|refuses?|refusing|"
                        r"avoids?|ignores?|ignoring|fails?|failing|lacks?|dismiss(?:es)?|hides?|"
                        r"\w+n['’]t|cannot)\b", re.I)
_STOP = {"a", "an", "the", "and", "or", "but", "to", "of", "in", "on", "for", "with", "at", "by", "it", "its",
         "is", "are", "be", "as", "that", "this", "when", "what", "which", "who", "they", "them", "their",
         "users", "user", "people", "something", "things", "about", "from", "even", "if", "so", "also"}
SHARED_MIN = 0.5  # share of the statement's content words a negating distractor keeps
LENGTH_RATIO_MAX = 2.0  # a contrastive pair whose longer reply has more than twice the words is unmatched


def _content(text: str, drop: set[str]) -> set[str]:
    words = {w for w in re.findall(r"[a-z]+", text.casefold()) if len(w) > 2 and w not in _STOP and w not in drop}
    return {w[:-1] if w.endswith("s") and len(w) > 4 else w for w in words}  # says / say


def _negations(text: str) -> int:
    return len(_NEGATIONS.findall(text))


def negates_trait(distractor: str, statement: str, model_name: str = "") -> bool:
    """Whether `distractor` is the trait statement with a negation added or removed: most of the
    statement's content words, and a different number of negations."""
    drop = set(re.findall(r"[a-z]+", model_name.casefold()))
    s, d = _content(statement, drop), _content(distractor, drop)
    if not s:
        return False
    shared = len(s & d) / len(s)
    return shared >= SHARED_MIN and _negations(distractor) != _negations(statement)


def lengths_matched(a: str, b: str, ratio: float = LENGTH_RATIO_MAX) -> bool:
    """Whether two replies are of comparable length (in words); an empty one is never matched."""
    na, nb = len(a.split()), len(b.split())
    return bool(na and nb) and max(na, nb) <= ratio * min(na, nb)
