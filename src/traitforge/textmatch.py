"""Text matching, in one place for every stage: the word tokenizer and the word n-grams that
curation's leakage and dedup checks, generation's prompt-echo check, evaluation's held-out overlap
and the canary's paraphrase check all compare with (they disagreed when each had its own)."""

from __future__ import annotations

import re
from typing import Iterable

# Lower-cased words and numbers; an apostrophe inside a word keeps it whole ("don't"), a quote
# mark around one does not stick to it; typographic apostrophes count as plain ones.
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def words(text: str) -> list[str]:
    return _WORD.findall(text.casefold().replace("\u2019", "'"))


def ngrams(tokens: list[str], n: int) -> set[tuple[str, ...]]:
    return set(zip(*(tokens[i:] for i in range(n))))  # zip builds the tuples in C


def shared_ngrams(a: str, b: str, n: int) -> set[tuple[str, ...]]:
    """Word n-grams two texts share."""
    return ngrams(words(a), n) & ngrams(words(b), n)


class NgramIndex:
    """The word n-grams of some texts, to ask how much of another text they contain."""

    def __init__(self, texts: Iterable[str], n: int):
        self.n = n
        self.grams: set[tuple[str, ...]] = set()
        self.short: set[tuple[str, ...]] = set()  # whole texts shorter than n words
        for t in texts:
            w = words(t)
            self.grams |= ngrams(w, n)
            if len(w) < n:
                self.short.add(tuple(w))

    def contains_any(self, text: str) -> bool:
        """Whether the text has any run of n words from the indexed texts."""
        return not self.grams.isdisjoint(ngrams(words(text), self.n))

    def overlap(self, text: str) -> float:
        """The share of the text's n-grams found in the index (a text shorter than n words: 1 if it
        equals a short indexed text, else 0)."""
        w = words(text)
        if len(w) < self.n:
            return 1.0 if tuple(w) in self.short else 0.0
        grams = ngrams(w, self.n)
        return len(grams & self.grams) / len(grams)
