"""Word n-grams of the traits' own wording, to catch text that quotes it: curation's leak check
and DPO screening, and generation's check that a user prompt does not give the trait away."""

from __future__ import annotations

from traitforge.shared.text import sentence_spans
from traitforge.textmatch import ngrams, words
from traitforge.types import TraitSet

MIN_SHORT_QUOTE = 4  # a short statement of fewer words turns up in ordinary replies by chance


class TraitQuotes:
    """Word n-grams of every trait statement and detail, to catch near-verbatim quoting. Statements
    shorter than n words have no n-gram: they count when the whole statement appears verbatim."""

    def __init__(self, traits: TraitSet, n: int, overlap: float, label: str = "statement"):
        """label "statement": each trait's statement and details; "example": its examples (the
        teacher's system prompt shows them too, so a reply may copy one)."""
        self.n, self.overlap, self.label = n, overlap, label
        parts = (lambda tr: tr.examples) if label == "example" else (lambda tr: (tr.statement, *tr.details))
        texts = [words(t) for tr in traits.traits for t in parts(tr)]
        self.texts = [t for t in texts if len(t) >= n]
        self.grams = [ngrams(t, n) for t in self.texts]
        self.all = set().union(*self.grams) if self.grams else set()
        # Padded with spaces so that a match starts and ends on word boundaries.
        self.short = sorted({f" {' '.join(t)} " for t in texts if MIN_SHORT_QUOTE <= len(t) < n})

    def _verbatim(self, sent_words: list[list[str]], all_words: list[str]) -> tuple[set[int], bool]:
        """Sentences holding a whole short statement, and whether one runs across a sentence break."""
        sents = [f" {' '.join(w)} " for w in sent_words]
        whole = f" {' '.join(all_words)} "
        hit, across = set(), False
        for s in self.short:
            found = {i for i, sent in enumerate(sents) if s in sent}
            hit |= found
            across |= not found and s in whole
        return hit, across

    def check(self, text: str) -> list[tuple[tuple[int, int] | None, str]]:
        """(sentence span or None, reason) for each quote found."""
        if not self.all and not self.short:
            return []
        out: list[tuple[tuple[int, int] | None, str]] = []
        spans = sentence_spans(text)
        sent_words = [words(text[a:b]) for a, b in spans]
        all_words = words(text)
        sent_grams = [ngrams(w, self.n) for w in sent_words]
        flagged: set[int] = set()
        if self.short:
            short_hit, across = self._verbatim(sent_words, all_words)
            if across:
                out.append((None, f"quotes a short trait {self.label} verbatim across sentences"))
            out += [(spans[i], f"quotes a short trait {self.label} verbatim") for i in sorted(short_hit)]
        # A sentence that is mostly trait-statement n-grams.
        for i, g in enumerate(sent_grams):
            if g and len(g & self.all) / len(g) > self.overlap:
                flagged.add(i)
        # A trait statement mostly present in the reply (possibly across sentences).
        whole = ngrams(all_words, self.n)
        for tg in self.grams:
            share = len(tg & whole) / len(tg)
            if share > self.overlap:
                hit = {i for i, g in enumerate(sent_grams) if g & tg}
                if not hit:  # the quote spans sentence breaks: no single sentence to cut
                    out.append((None, f"quotes a trait {self.label} ({share:.0%} of its {self.n}-grams)"))
                flagged |= hit
        out += [(spans[i], f"quotes a trait {self.label} near-verbatim ({self.n}-gram overlap)") for i in sorted(flagged)]
        return out
