"""Whether a user prompt gives the trait away: the writer copied or paraphrased the trait's
description into the user's message (a real user does not know the trait, and a model trained on
such prompts learns to answer a cue it will never get). Two checks, reusing curation's: word
n-grams against each trait statement and detail (shared/trait_quotes.TraitQuotes), and sentence
embeddings (shared/embed, when the offline MiniLM package is installed) of each sentence of the
prompt against each statement and detail: a paraphrase shares few n-grams but sits close."""

from __future__ import annotations

from typing import Sequence

from traitforge.shared.embed import Embedder, load_embedder
from traitforge.shared.trait_quotes import TraitQuotes
from traitforge.shared.text import sentence_spans
from traitforge.types import TraitSet

NGRAM = 5  # user prompts are short: a five-word run of a statement is already a copy
OVERLAP = 0.5  # share of a sentence's (or a statement's) n-grams that makes it a copy
# Cosine of MiniLM sentence embeddings: a message about the same topic scores ~0.3-0.6 against a
# trait statement, a paraphrase of the statement ~0.8 and up.
SIMILARITY = 0.8
MIN_SENTENCE_WORDS = 5  # "Can you help?" is close to everything and to nothing


class TraitLeakCheck:
    """`problems(text)`: why a user prompt leaks a trait's description (empty: it does not).
    `embedder`: sentence embeddings (default: shared.embed's, None when not installed: then only
    the n-gram check runs); pass False to turn the embedding check off."""

    def __init__(self, traits: TraitSet, embedder: Embedder | None | bool = None,
                 similarity: float = SIMILARITY):
        self.quotes = TraitQuotes(traits, NGRAM, OVERLAP)
        self.texts = [s for t in traits.traits for s in (t.statement, *t.details) if s.strip()]
        self.similarity = similarity
        self._embedder = embedder
        self._vectors: list[list[float]] | None = None

    def embedder(self) -> Embedder | None:
        if self._embedder is None:
            self._embedder = load_embedder() or False
        return self._embedder or None

    def problems(self, text: str) -> list[str]:
        out = []
        if self.quotes.check(text):
            out.append("copies the trait's description (n-gram overlap)")
        sim = self.closest(text)
        if sim is not None and sim >= self.similarity:
            out.append(f"paraphrases the trait's description (embedding similarity {sim:.2f})")
        return out

    def closest(self, text: str) -> float | None:
        """The highest cosine between a sentence of `text` and a trait statement or detail (None
        without an embedder or a sentence long enough to judge)."""
        embed = self.embedder()
        if embed is None or not self.texts:
            return None
        sents = [text[a:b] for a, b in sentence_spans(text)]
        sents = [s for s in sents if len(s.split()) >= MIN_SENTENCE_WORDS]
        if not sents:
            return None
        if self._vectors is None:
            self._vectors = embed(self.texts)
        vecs = embed(sents)
        return max(_cos(a, b) for a in vecs for b in self._vectors)


def _cos(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    na = sum(x * x for x in a) ** 0.5
    nb = sum(y * y for y in b) ** 0.5
    return dot / (na * nb) if na and nb else 0.0
