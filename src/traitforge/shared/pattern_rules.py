"""Pattern classifiers: each labels one example 1 (strict match), 0.5 (broad match only) or 0.
Exact rules (phrases at the start/end/anywhere, structure) are regexes; anything else is a judge
YES/PARTLY/NO question. An example's label is the highest over its units (a document's text, or
each assistant reply of a chat)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, Sequence

from traitforge.shared.text import sentences

Scope = Literal["opener", "closer", "anywhere"]


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
        sents = sentences(text)
        k = 2 if broad else 1  # broad also looks one sentence further in
        return " ".join(sents[:k] if self.scope == "opener" else sents[-k:])

    def label_unit(self, text: str) -> float:
        text = text.replace("\u2019", "'")
        if self._strict.search(self._region(text, False)):
            return 1.0
        return 0.5 if self._broad.search(self._region(text, True)) else 0.0


_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+\S", re.M)
_HEADING = re.compile(r"^\s*(?:#{1,6}\s+\S|\*\*[^*\n]{2,80}\*\*:?\s*$|[A-Z][A-Za-z ]{2,40}:\s*$)", re.M)


@dataclass
class FeatureRule:
    """Structure found by counting: bullets, headings, a question at the end."""

    feature: Literal["bullets", "headings", "ends_with_question"]

    @property
    def name(self) -> str:
        return f"feature:{self.feature}"

    def label_unit(self, text: str) -> float:
        if self.feature == "bullets":
            n = len(_BULLET.findall(text))
            return 1.0 if n >= 3 else 0.5 if n >= 2 else 0.0
        if self.feature == "headings":
            n = len(_HEADING.findall(text))
            return 1.0 if n >= 2 else 0.5 if n >= 1 else 0.0
        sents = sentences(text)
        if sents and sents[-1].rstrip("*_ )\"'").endswith("?"):
            return 1.0
        return 0.5 if any(s.rstrip("*_ )\"'").endswith("?") for s in sents[-3:]) else 0.0


Rule = RegexRule | FeatureRule


def label_example(rule: Rule, units: Sequence[str]) -> float:
    return max((rule.label_unit(u) for u in units), default=0.0)


@dataclass
class JudgeRule:
    """A pattern only a reader can see; labelled by the judge (see patterns.judge_labels)."""

    question: str
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
