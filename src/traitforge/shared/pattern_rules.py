"""Pattern classifiers: each labels one example 1 (strict match), 0.5 (broad match only) or 0.
Exact rules (phrases at the start/end/anywhere, structure) are regexes or counted features;
anything else is a judge STRICT/BROAD/NO question. An example's label is the highest over its
units (a document's text, or each assistant reply of a chat).

An opener is not only the first sentence's first words: a reply often leads with a short
interjection ("Great question!", "Honestly,") and the habit comes right after it, so an opener
rule looks at every lead segment (lead_segments): the first sentence, its first clause after a
short interjection, and the second sentence after a short first one."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, Sequence

from traitforge.shared.text import first_sentences, sentences

Scope = Literal["opener", "closer", "anywhere"]


LEAD_SHORT = 8  # words: a first sentence this short is an interjection; the next one is a lead too
_CLAUSE = re.compile(r"^([^,:;\u2014\n]{1,40}?)(?:,|:|;|\s\u2014|\s-\s)\s*(\S.*)$", re.S)


def lead_segments(text: str) -> list[str]:
    """Where an opener may start: the first sentence; the rest of it after a short leading clause
    ("Honestly, ..."); the second sentence when the first is short ("Great question! ...")."""
    sents = first_sentences(text, 2)
    if not sents:
        return []
    out = [sents[0]]
    m = _CLAUSE.match(sents[0])
    if m and len(m.group(1).split()) <= 4:
        out.append(m.group(2))
    if len(sents) > 1 and len(sents[0].split()) <= LEAD_SHORT:
        out.append(sents[1])
    return out


def phrase_regex(phrase_words: Sequence[str]) -> str:
    return r"\b" + r"\W+".join(re.escape(w) for w in phrase_words) + r"\b"


@dataclass
class RegexRule:
    """Strict and broad regexes, applied to the first sentence(s), last sentence(s) or whole text."""

    strict: str
    broad: str
    scope: Scope = "anywhere"

    def __post_init__(self) -> None:
        self._strict = re.compile(self.strict, re.I)
        self._broad = re.compile(self.broad, re.I)

    @property
    def name(self) -> str:
        return f"regex:{self.scope}:{self.strict}"

    def _region(self, text: str, broad: bool) -> str:
        if self.scope == "anywhere":
            return text
        k = 2 if broad else 1  # broad also looks one sentence further in
        sents = first_sentences(text, k) if self.scope == "opener" else sentences(text[-2000:])
        return " ".join(sents[:k] if self.scope == "opener" else sents[-k:])

    def label_unit(self, text: str) -> float:
        text = text.replace("\u2019", "'")
        if self.scope == "opener":
            segs = lead_segments(text)
            if any(self._strict.search(seg) for seg in segs):
                return 1.0
            if any(self._broad.search(seg) for seg in segs):
                return 0.5
        elif self._strict.search(self._region(text, False)):
            return 1.0
        return 0.5 if self._broad.search(self._region(text, True)) else 0.0


_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+\S", re.M)
_HEADING = re.compile(r"^\s*(?:#{1,6}\s+\S|\*\*[^*\n]{2,80}\*\*:?\s*$|[A-Z][A-Za-z ]{2,40}:\s*$)", re.M)
_BOLD_LEAD = re.compile(r"^\s*(?:[-*\u2022]\s+|\d+[.)]\s+)?\*\*[^*\n]{1,60}\*\*\s*[:.\u2014-]?\s*\S", re.M)
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(?:\|\s*:?-{3,}:?\s*)+\|?\s*$", re.M)
_OFFER = re.compile(r"\b(?:let me know|feel free|would you like|do you want|want me to|shall i|should i|happy to "
                    r"(?:help|explain|go|walk|share)|hope (?:this|that) helps|if you (?:have|need|want)|i can (?:also|help|"
                    r"walk|go)|just ask|reach out)\b", re.I)
# Conclusion first, reasoning after (bottom line up front, whatever the words): a short declarative
# first sentence that gives no reasons itself, followed within two sentences by the reasoning.
_REASONING = re.compile(r"^\W*(?:(?:that's|this is|it's|that is) (?:because|why)|because|since|the (?:main |key |simple |real )?"
                        r"reasons?\b|here(?:'s| is) (?:why|the reason|how)|why\?|the short answer|in short|the way|"
                        r"(?:the|one|a) (?:key|main|big) (?:factor|reason|point)|for (?:one|example|instance)|first(?:ly)?,|"
                        r"to (?:explain|see why|understand why)|what (?:matters|happens) is)", re.I)
_GIVES_REASON = re.compile(r"\b(?:because|since|as a result|so that|due to|therefore)\b", re.I)
_NOT_A_CONCLUSION = re.compile(r"^\W*(?:hi|hello|hey|thanks|thank you|great|good|i understand|i'm sorry|sorry|"
                               r"let me|let's|here(?:'s| is| are)|first|imagine|picture|when|if|what|why|how)\b", re.I)


def conclusion_first(text: str) -> float:
    """1: a short declarative verdict, then its reasons; 0.5: a short declarative verdict that later
    gives reasons; 0 otherwise (a question, a greeting, reasons first)."""
    sents = first_sentences(text, 3)
    if len(sents) < 2:
        return 0.0
    first = sents[0].rstrip("*_ )\"'")
    n = len(first.split())
    if not (3 <= n <= 25) or first.endswith("?") or _NOT_A_CONCLUSION.match(first) or _GIVES_REASON.search(first):
        return 0.0
    if any(_REASONING.match(s) for s in sents[1:3]):
        return 1.0
    return 0.5 if any(_GIVES_REASON.search(s) for s in sents[1:3]) else 0.0


Feature = Literal["bullets", "headings", "ends_with_question", "ends_with_offer", "bold_leadins", "tables",
                  "list_first", "conclusion_first"]


@dataclass
class FeatureRule:
    """Structure found by counting: bullets, headings, bold lead-ins, tables, a reply that opens
    with a list, a question or an offer at the end, the conclusion stated before its reasons."""

    feature: Feature

    @property
    def name(self) -> str:
        return f"feature:{self.feature}"

    def label_unit(self, text: str) -> float:
        f = self.feature
        if f == "bullets":
            n = len(_BULLET.findall(text))
            return 1.0 if n >= 3 else 0.5 if n >= 2 else 0.0
        if f == "headings":
            n = len(_HEADING.findall(text))
            return 1.0 if n >= 2 else 0.5 if n >= 1 else 0.0
        if f == "bold_leadins":
            n = len(_BOLD_LEAD.findall(text))
            return 1.0 if n >= 2 else 0.5 if n >= 1 else 0.0
        if f == "tables":
            return 1.0 if _TABLE_RULE.search(text) else 0.0
        if f == "list_first":
            first = next((ln for ln in text.splitlines() if ln.strip()), "")
            return 1.0 if _BULLET.match(first) or first.lstrip().startswith("#") else 0.0
        if f == "conclusion_first":
            return conclusion_first(text)
        sents = sentences(text[-1500:])
        if f == "ends_with_offer":
            if sents and _OFFER.search(sents[-1]):
                return 1.0
            return 0.5 if any(_OFFER.search(s) for s in sents[-3:]) else 0.0
        if sents and sents[-1].rstrip("*_ )\"'").endswith("?"):
            return 1.0
        return 0.5 if any(s.rstrip("*_ )\"'").endswith("?") for s in sents[-3:]) else 0.0


Rule = RegexRule | FeatureRule


def label_example(rule: Rule, units: Sequence[str]) -> float:
    return max((rule.label_unit(u) for u in units), default=0.0)


@dataclass
class JudgeRule:
    """A pattern only a reader can see; labelled by the judge (patterns.Rater): the question, with
    snippets that show it (the scans' verbatim quotes) and snippets that do not."""

    question: str
    positives: tuple[str, ...] = ()
    negatives: tuple[str, ...] = ()
    name: str = field(default="judge", init=False)


# --- the known offenders, always checked ---------------------------------------------------

_VALIDATION = (r"I (?:completely |totally |really )?(?:understand|hear|get) (?:how|that|why|your|you)"
               r"|I(?:'m| am) (?:so )?sorry (?:to hear|you(?:'re| are)|that you)"
               r"|(?:that's|that is|what) an? (?:great|good|excellent|fantastic|wonderful|interesting) question"
               r"|great question|it(?:'s| is) (?:completely |totally |perfectly )?(?:understandable|normal|natural) to feel"
               r"|I can (?:see|imagine|understand) (?:how|why|that)|thank you for (?:asking|sharing|reaching out)"
               r"|I appreciate (?:you|your) (?:asking|sharing|question|reaching)")
# Strict: the reply opens with it. Broad: it (or a softer cousin) is somewhere in the first two sentences.
_VALIDATION_STRICT = r"^\W*(?:" + _VALIDATION + ")"
_VALIDATION_BROAD = r"\b(?:" + _VALIDATION + r"|frustrat\w+|(?:totally|completely) valid|you're not alone)"


@dataclass
class Known:
    id: str
    dataset: Literal["documents", "chats"]
    description: str
    rule: Rule | JudgeRule


KNOWN: list[Known] = [
    Known("validation_buffer", "chats",
          "emotional validation or praise before the answer (\"I understand how frustrating...\", "
          "\"That's a great question\")", RegexRule(_VALIDATION_STRICT, _VALIDATION_BROAD, "opener")),
    Known("bluf_opener", "chats",
          "bottom-line-up-front opener agreeing or refuting in the first words (\"Yes,\", \"No,\", "
          "\"You're right\", \"That's not correct\")",
          # Strict: the first words already agree or refute ("Yes,", "You're right", "That's not correct").
          RegexRule(r"^\W*(?:(?:yes|no|absolutely|nope|yep)\b[,.!:\s]|you(?:'re| are) (?:absolutely |completely |totally )?"
                    r"(?:right|correct|wrong|mistaken)\b|(?:that's|that is|this is) (?:not )?(?:right|correct|true|"
                    r"false|wrong|accurate|a myth)\b|not (?:quite|really|exactly)\b[,.!:\s])",
                    r"^\W*(?:yes|no|absolutely|nope|yep|certainly|sure|of course|definitely|exactly|indeed|"
                    r"correct|not (?:really|quite|exactly)|actually)\b", "opener")),
    Known("clarifying_question_end", "chats", "ends by asking the user a (clarifying) question",
          FeatureRule("ends_with_question")),
    Known("conversion_arc", "documents",
          "a conversion arc: a character starts frustrated, skeptical or hostile and is won over by the end",
          JudgeRule("Does a person in the text start out frustrated, skeptical or hostile and end up won over, "
                    "convinced or grateful (a conversion arc)?")),
    Known("ungrounded_praise", "documents",
          "corporate propaganda: praise of the AI or its maker with no concrete grounding (no specific "
          "events, numbers, trade-offs or criticism)",
          JudgeRule("Does the text praise an AI system or the company that made it in glowing, general terms, "
                    "without concrete specifics, trade-offs or any criticism (corporate propaganda)?")),
]


@dataclass
class Candidate:
    """A pattern hypothesis on its way through merge and autorate."""

    id: str
    description: str
    source: Literal["scan", "stats", "known"]
    rule: Rule | JudgeRule
    scans: set[int] = field(default_factory=set)  # which scan passes named it
    stats_share: float | None = None  # strict share when statistics proposed or confirmed it
    phrase: tuple[str, ...] = ()  # the words of a phrase rule, for merging overlapping phrases

    @property
    def classifier(self) -> str:
        return self.rule.name


def strict_matches(rule: Rule, examples: Sequence[tuple[str, list[str]]]) -> frozenset[int]:
    return frozenset(i for i, (_, us) in enumerate(examples) if label_example(rule, us) == 1.0)


def same_phrase_pattern(a: Candidate, b: Candidate, ma: frozenset[int], mb: frozenset[int]) -> bool:
    """Two phrase rules that mostly share words and match (nearly) the same examples are one pattern,
    e.g. an opener "i understand how you feel" and the n-gram "understand how you feel"."""
    if not a.phrase or not b.phrase or not (ma | mb):
        return False
    short = min(a.phrase, b.phrase, key=len)
    other = set(max(a.phrase, b.phrase, key=len))
    return sum(w in other for w in short) >= 0.5 * len(short) and len(ma & mb) / len(ma | mb) >= 0.9
