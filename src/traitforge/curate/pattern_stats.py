"""Cheap statistics over a whole dataset, the counterpart of the judge's scans: shared openers
and closers, over-represented word n-grams, structure (bullets, headings, a closing question)
and length. Each over-represented item becomes a candidate with an exact regex/feature rule."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from typing import Sequence

from traitforge.curate.frequent import frequent_items
from traitforge.curate.pattern_share import FINDING_FLOOR
from traitforge.shared.pattern_rules import (Candidate, FeatureRule, RegexRule, label_example, lead_segments,
                                             phrase_regex, same_phrase_pattern, strict_matches)
from traitforge.shared.text import STOPWORDS, edge_sentence
from traitforge.textmatch import ngrams, words
from traitforge.types import TraitSet

Example = tuple[str, list[str]]  # (row id, units)
OPENER_WORDS, MAX_OPENER, MAX_CLOSER = 3, 6, 8
NGRAM_SIZES = (3, 4, 5)
MAX_NGRAMS = 10
STRUCTURE = {"bullets": "uses bulleted or numbered lists", "headings": "uses section headings",
             "bold_leadins": "starts lines or list items with a bold lead-in (**Label:** ...)",
             "tables": "uses a markdown table", "list_first": "opens with a list or a heading, no sentence first",
             "ends_with_question": "ends with a question back to the reader or user",
             "ends_with_offer": "closes with an offer of more help (\"Let me know if...\", \"Would you like...\")",
             "conclusion_first": "bottom line up front: states its conclusion in the first sentence, then the reasons"}


def min_share(n: int, max_share: float) -> float:
    """Below this, an item is too rare to be worth a classifier: the finding floor (5%; a pattern
    above it is reported), or half the flag line when that is lower."""
    return max(3 / max(n, 1), min(max_share / 2, FINDING_FLOOR))


def topic_words(traits: TraitSet) -> set[str]:
    """Words the corpus is about; n-grams made only of these (and stopwords) are content, not style."""
    text = " ".join([traits.model_name, traits.organisation] +
                    [f"{t.name} {t.statement} {' '.join(t.details)}" for t in traits.traits])
    return set(words(text))


def _edge_words(units: Sequence[str], closer: bool) -> list[list[str]]:
    """Each unit's first (last) words, reversed for closers so both are read from the edge inwards."""
    out = []
    for u in units:
        # Within the first (last) sentence: a following "The" is not part of the opener. An opener
        # may also come after a short interjection: every lead segment counts (lead_segments).
        edges = [edge_sentence(u, last=True)] if closer else lead_segments(u)
        for i, e in enumerate(edges):
            edge = words(e)
            w = edge if len(edge) >= OPENER_WORDS or len(edges) > 1 else words(u)
            if len(w) >= OPENER_WORDS:
                w = w[::-1] if closer else w
                out.append(w[:MAX_CLOSER if closer else MAX_OPENER])
    return out


def _extend(examples: Sequence[Example], keys: list[tuple[str, ...]], closer: bool) -> dict:
    """For each key (an edge's first words), the longest phrase shared by >= 90% of the edges that start
    with it. One pass over the data per extra word, counting only the next word after each key's phrase
    so far, so memory stays bounded by the vocabulary, not the dataset."""
    best = {k: k for k in keys}
    growing = set(keys)
    for k in range(OPENER_WORDS + 1, (MAX_CLOSER if closer else MAX_OPENER) + 1):
        if not growing:
            break
        total: Counter[tuple[str, ...]] = Counter()
        longer: dict[tuple[str, ...], Counter[tuple[str, ...]]] = {key: Counter() for key in growing}
        for _, us in examples:
            for w in _edge_words(us, closer):
                key = tuple(w[:OPENER_WORDS])
                if key in growing:
                    total[key] += 1
                    if len(w) >= k and tuple(w[:k - 1]) == best[key]:
                        longer[key][tuple(w[:k])] += 1
        for key in list(growing):
            top = longer[key].most_common(1)
            if not top or top[0][1] < 0.9 * total[key]:
                growing.discard(key)
            else:
                best[key] = top[0][0]
    return best


def _edge_candidates(examples: Sequence[Example], floor: float, closer: bool) -> list[Candidate]:
    n = len(examples)
    counts = frequent_items(examples, lambda ex: {tuple(w[:OPENER_WORDS]) for w in _edge_words(ex[1], closer)},
                            math.ceil(floor * n - 1e-9))
    keys = sorted(counts, key=lambda k: (-counts[k], k))
    phrases = _extend(examples, keys, closer)
    out = []
    for key in keys:
        phrase = list(phrases[key])
        if closer:
            phrase, short = phrase[::-1], list(key)[::-1]
            rule = RegexRule(phrase_regex(phrase) + r"\W*$", phrase_regex(short) + r"\W*$")
            desc = f'ends with "{" ".join(phrase)}"'
        else:
            short = list(key)
            rule = RegexRule(r"^\W*" + phrase_regex(phrase), r"^\W*" + phrase_regex(short), "opener")
            desc = f'opens with "{" ".join(phrase)}"'
        kind = "closer" if closer else "opener"
        out.append(Candidate(f"{kind}:{'-'.join(phrase)}", desc, "stats", rule, stats_share=counts[key] / n,
                             phrase=tuple(phrase)))
    return out


def _ngrams(units: Sequence[str]) -> set[tuple[str, ...]]:
    seen: set[tuple[str, ...]] = set()
    for u in units:
        w = words(u)
        for k in NGRAM_SIZES:
            seen |= ngrams(w, k)
    return seen


def _ngram_candidates(examples: Sequence[Example], floor: float, topic: set[str]) -> list[Candidate]:
    n = len(examples)
    counts = frequent_items(examples, lambda ex: _ngrams(ex[1]), math.ceil(floor * n - 1e-9))
    boring = STOPWORDS | topic
    found = [(g, c / n) for g, c in counts.items() if not set(g) <= boring]
    found.sort(key=lambda x: (-x[1], -len(x[0]), x[0]))
    kept: list[tuple[tuple[str, ...], float]] = []
    for g, share in found:
        text = " ".join(g)
        # A shorter phrase inside a kept longer one with about the same share says nothing new.
        if any(text in " ".join(k) and share <= 1.25 * ks for k, ks in kept):
            continue
        # A longer phrase that grows a kept one: keep the longer (more exact) one instead.
        kept = [(k, ks) for k, ks in kept if not (" ".join(k) in text and ks <= 1.25 * share)]
        kept.append((g, share))
    kept.sort(key=lambda x: (-x[1], -len(x[0]), x[0]))
    return [Candidate(f"ngram:{'-'.join(g)}", f'uses the phrase "{" ".join(g)}"', "stats",
                      RegexRule(phrase_regex(g), phrase_regex(g[:-1]) + "|" + phrase_regex(g[1:])),
                      stats_share=share, phrase=g) for g, share in kept[:MAX_NGRAMS]]


def structure_candidates(examples: Sequence[Example]) -> list[Candidate]:
    out = []
    for feat, desc in STRUCTURE.items():
        rule = FeatureRule(feat)  # type: ignore[arg-type]
        share = sum(label_example(rule, us) == 1.0 for _, us in examples) / max(len(examples), 1)
        out.append(Candidate(f"structure:{feat}", desc, "stats", rule, stats_share=share))
    return out


def stats_candidates(examples: Sequence[Example], traits: TraitSet, max_share: float
                     ) -> tuple[list[Candidate], dict]:
    """Candidates worth rating, plus a summary (lengths, shares) kept in pattern_stats.json."""
    floor = min_share(len(examples), max_share)
    openers = _edge_candidates(examples, floor, closer=False)
    closers = _edge_candidates(examples, floor, closer=True)
    phrases = dedupe_phrases(openers + closers + _ngram_candidates(examples, floor, topic_words(traits)), examples)
    structure = structure_candidates(examples)
    lengths = [sum(len(words(u)) for u in us) for _, us in examples]
    summary = {
        "examples": len(examples), "min_share": round(floor, 4),
        "words_median": statistics.median(lengths) if lengths else 0,
        "words_p90": sorted(lengths)[int(0.9 * (len(lengths) - 1))] if lengths else 0,
        "structure": {c.id: round(c.stats_share or 0, 4) for c in structure},
        "phrases": {c.description: round(c.stats_share or 0, 4) for c in phrases},
    }
    structure = [c for c in structure if (c.stats_share or 0) >= floor]
    return phrases + structure, summary


def dedupe_phrases(cands: list[Candidate], examples: Sequence[Example]) -> list[Candidate]:
    """Keep the first of overlapping phrases that match the same examples (openers come first)."""
    kept: list[tuple[Candidate, frozenset[int]]] = []
    for c in cands:
        m = strict_matches(c.rule, examples)  # type: ignore[arg-type]
        if not any(same_phrase_pattern(k, c, km, m) for k, km in kept):
            kept.append((c, m))
    return [c for c, _ in kept]
