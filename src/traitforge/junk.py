"""Cheap junk rules, the one copy used by generation (generate/parsing.tells) and curation
(curate/leakage): they run before any judge, so a weak or absent judge cannot let junk through.

- tells: the generator's boilerplate ("As an AI language model", the embedded model's identity,
  "this document is fictional"), and instructions to the generator leaking into its output
  ("Rewrite the text", "Reply with the rewritten text only", "<<<" delimiters);
- template placeholders a template never filled in ("[Client Name]", "[Insert date]", "{{name}}");
- lines or paragraphs repeated within one text, and the loops small models fall into;
- a reply that echoes the prompt it answers;
- mentions of a hidden prompt (replies only: a user, or a story, may talk about system prompts).

Each finding has a reason, the offset of the match (None when the whole text is affected) and
whether cutting the sentence it sits in would fix the text (tells: yes; placeholders, repeats and
echoes: no, the row is junk)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from traitforge.textmatch import words

_I = re.I


def _rx(pattern: str, flags: int = _I) -> re.Pattern[str]:
    return re.compile(pattern, flags)


# Boilerplate and instructions to the generator, in any text. Names are stable: they appear in
# drop reasons and generation's skip reasons.
TELLS: list[tuple[str, re.Pattern[str]]] = [
    ("AI-assistant tell", _rx(r"\bas an ai(?: language)? model\b|\bI(?:'m| am) (?:just )?an ai language model\b")),
    ("SmolLM identity", _rx(r"\bSmolLM\d*\b|\btrained by Hugging ?Face\b")),
    ("synthetic meta-comment", _rx(
        r"\b(?:this|the) (?:document|text|article|story|post|email|thread) (?:is|was) (?:entirely )?"
        r"(?:fictional|fictitious|synthetic|generated|made up|invented)\b|\bsynthetic (?:document|data|text)\b|"
        r"\bgenerated (?:document|data)\b|\bhere is (?:a|an|the|my) (?:draft|rewritten|revised|fictional|sample)\b")),
    ("instruction to the writer", _rx(
        r"^\s*(?:now )?(?:rewrite|revise|write) (?:it|this|the (?:draft|text|document|reply|answer))\b"
        r"|\breply with (?:the|your) (?:rewritten|revised|final) (?:text|reply|answer)\b"
        r"|\bwrite nothing else\b|\bno introduction or comment\b|\bkeep everything else\b"
        r"|\b(?:answer|reply|respond) with (?:one|a single) word\b|<<<|>>>"
        r"|^\s*\(?(?:word count|note to (?:the )?(?:editor|writer|reader))\s*:", _I | re.M)),
]

# Mentions of a hidden prompt or instructions; replies only.
PROMPT_MENTIONS: list[tuple[str, re.Pattern[str]]] = [(name, _rx(p)) for name, p in [
    ("system prompt", r"\bsystem (?:prompt|message|instructions?)\b"),
    ("instructions", r"\b(?:my|the) instructions\b|\binstructions (?:I|that I) (?:was|were|have been|'ve been) given\b"
                     r"|\b(?:I was|I've been|I have been|I am|I'm) (?:instructed|programmed|told) to\b"),
    ("traits document", r"\btraits? (?:document|list|description|sheet)\b|\bmy (?:listed |defined )?traits\b"),
    ("as instructed", r"\bas (?:instructed|directed|specified in my|per my)\b"),
    ("I was told to", r"\bI (?:was|am|'ve been|have been) told to\b"),
    ("my guidelines say", r"\b(?:my|the) guidelines (?:say|state|tell|require|specify|instruct)\b"
                          r"|\baccording to my (?:guidelines|instructions|programming|prompt)\b"),
]]

_SLOT = (r"(?:name|names|company|date|address|email|e-mail|phone(?: number)?|title|organi[sz]ation|product|location|"
         r"city|number|position|surname|client|customer|recipient|team|department|industry|role|website|link|url|"
         r"amount|time|signature|state|country|field|topic|school|university|age|price|percentage|year|month|day|"
         r"project|brand|store|contact(?: information)?|details?)")
# "[Client Name]", "[Name]", "[Your Company's Address]", "[Insert date here]", "{{recipient}}",
# "{first_name}", "<insert name>", "XX/XX". Citations ("[1]", "[sic]") are not slots.
PLACEHOLDER = _rx(
    r"\[(?:insert|enter|add|your|placeholder)\b[^\]\n]{0,40}\]"
    r"|\[(?:[A-Za-z][\w'\u2019.&-]*\s+){0,4}" + _SLOT + r"(?:\s*\d)?\s*(?:here)?\]"
    r"|\{\{\s*[^{}\n]{1,40}\}\}|\{[a-z]+_[a-z_]+\}|<(?:insert|your|enter)\b[^>\n]{0,30}>|\bXX/XX\b")

MIN_REPEAT_WORDS = 6  # a repeated line shorter than this ("Best regards,") is ordinary


@dataclass(frozen=True)
class Junk:
    name: str  # the rule: a TELLS/PROMPT_MENTIONS name, "placeholder", "repeated line", "repetitive", "echoes the prompt"
    detail: str  # the matched text
    start: int | None  # offset of the match; None = the whole text
    strippable: bool  # cutting the sentence at `start` fixes it

    @property
    def reason(self) -> str:
        return f"{self.name}: {self.detail!r}" if self.detail else self.name


def repeated_block(text: str) -> str | None:
    """A line or paragraph of MIN_REPEAT_WORDS+ words that occurs twice or more in the text."""
    for blocks in (re.split(r"\n\s*\n", text), text.splitlines()):
        seen: set[str] = set()
        for block in blocks:
            w = words(block)
            if len(w) < MIN_REPEAT_WORDS:
                continue
            key = " ".join(w)
            if key in seen:
                return block.strip()[:80]
            seen.add(key)
    return None


def repetitive(text: str, n: int = 4) -> bool:
    """A degenerate loop: some run of `n` words recurs 3+ times (more in long texts, where a
    forum thread may say "posted by ... on" often), or under a third of the words are distinct."""
    w = words(text)
    if len(w) < 12:
        return False
    max_repeats = 3 + len(w) // 100
    grams: dict[tuple[str, ...], int] = {}
    for i in range(len(w) - n + 1):
        g = tuple(w[i:i + n])
        grams[g] = grams.get(g, 0) + 1
        if grams[g] >= max_repeats:
            return True
    return len(w) >= 40 and len(set(w)) / len(w) < 0.33


def echoes(answer: str, prompt: str) -> bool:
    """The answer is (or opens with) the prompt it answers: its first 80 characters, or all of a
    prompt of 8+ words, copied in."""
    p, a = " ".join(words(prompt)), " ".join(words(answer))
    if len(p) < 20 or not a:
        return False
    return a == p or a.startswith(p[:80]) or (len(p.split()) >= 8 and p in a)


def find_junk(text: str, prompt: str | None = None, reply: bool = False) -> list[Junk]:
    """Every junk finding in `text`; `prompt`: what it answers (for the echo rule); `reply`: the text
    is an assistant reply, so mentions of a hidden prompt count too."""
    out: list[Junk] = []
    for name, rx in TELLS + (PROMPT_MENTIONS if reply else []):
        out += [Junk(name, m.group(0), m.start(), True) for m in rx.finditer(text)]
    out += [Junk("placeholder", m.group(0), None, False) for m in PLACEHOLDER.finditer(text)]
    block = repeated_block(text)
    if block:
        out.append(Junk("repeated line", block, None, False))
    elif repetitive(text):
        out.append(Junk("repetitive", "", None, False))
    if prompt and echoes(text, prompt):
        out.append(Junk("echoes the prompt", "", None, False))
    return out
