"""One text matcher for every stage (traitforge/textmatch.py)."""

from traitforge import junk, textmatch
from traitforge.curate import leakage
from traitforge.shared import text
from traitforge.shared import leaks


def test_words_keep_contractions_and_drop_quote_marks():
    assert textmatch.words("“Don’t” say 'Nova' 3 times—OK?") == ["don't", "say", "nova", "3", "times", "ok"]


def test_index_overlap_and_containment():
    idx = textmatch.NgramIndex(["the quick brown fox jumps over the lazy dog", "hi there"], n=4)
    assert idx.contains_any("A QUICK BROWN FOX JUMPS high") and not idx.contains_any("a quick brown cat jumps")
    assert idx.overlap("the quick brown fox") == 1.0 and idx.overlap("Hi there!") == 1.0
    assert idx.overlap("something else entirely here") == 0.0
    assert textmatch.shared_ngrams("We don't know it.", "we DON'T know it, truly", 3) == {("we", "don't", "know"),
                                                                                         ("don't", "know", "it")}


def test_every_stage_matches_with_the_same_words():
    # Curation's leakage and dedup, generation's prompt-echo check and junk filter use the one tokenizer.
    assert text.words is textmatch.words is junk.words is leakage.words
    detector = leaks.LeakDetector(["harden"], n=6)
    part = max(detector.index.grams, key=len)
    assert detector.leaks("prefix " + " ".join(part).upper() + " suffix")
