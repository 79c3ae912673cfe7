"""Pattern discovery passes 1 and 2: the judge reads random batches of whole transcripts (every
turn of a chat, nothing cut but an example far over the batch's size, whose middle goes) and names
recurring patterns with verbatim quotes and a count (scan); then the findings are clustered
(near-synonyms merged by sentence-embedding cosine, else word overlap), folded into the rule
candidates they confirm, and only clusters named by more than one scan survive as judge patterns,
with the scans' quotes as the autorater's positive snippets (merge)."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

from traitforge.shared.embed import Embedder
from traitforge.shared.pattern_rules import (Candidate, JudgeRule, RegexRule, phrase_regex,
                                             same_phrase_pattern, strict_matches)
from traitforge.curate.pattern_stats import Example
from traitforge.shared.pattern_rater import fit
from traitforge.shared.text import STOPWORDS
from traitforge.textmatch import words
from traitforge.prompts import render
from traitforge.llm.client import LLM
from traitforge.llm.errors import BackendError
from traitforge.steps import Unit, run_step
from traitforge.types import Document, stable_hash

if TYPE_CHECKING:
    from traitforge.prefetch import Prefetch

SCAN_CHARS = 12000  # a batch's examples, together: as many whole transcripts as fit
SCAN_MAX_TOKENS = 700  # a few tagged blocks with quotes
MIN_COUNT = 2  # a pattern the scan itself says it saw once is not a pattern
MAX_QUOTES = 4
SYNONYM_JACCARD = 0.5
SYNONYM_COSINE = 0.8
_LINE = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)]|pattern\s*\d*:)\s*(.+?)\s*$", re.I)
_QUOTED = re.compile(r"[\"\u201c]([^\"\u201c\u201d]{3,80})[\"\u201d]")
_BLOCK = re.compile(r"<pattern>(.*?)(?:</pattern>|(?=<pattern>)|$)", re.S | re.I)


def _tag(block: str, name: str) -> list[str]:
    return [m.strip() for m in re.findall(rf"<{name}>(.*?)(?:</{name}>|(?=<)|$)", block, re.S | re.I) if m.strip()]


@dataclass
class Scan:
    index: int
    ids: list[str]
    reply: str
    patterns: list[str]
    quotes: dict[str, list[str]] = field(default_factory=dict)  # pattern -> verbatim quotes
    counts: dict[str, int] = field(default_factory=dict)  # pattern -> examples the scan says show it
    counters: dict[str, list[str]] = field(default_factory=dict)  # pattern -> quotes without it


def parse_scan_blocks(reply: str) -> tuple[list[str], dict[str, list[str]], dict[str, int], dict[str, list[str]]]:
    """Tagged <pattern> blocks (tolerant: missing closing tags, extra text); else the plain
    one-pattern-per-line form. A pattern whose own count is under MIN_COUNT is left out."""
    pats: list[str] = []
    quotes: dict[str, list[str]] = {}
    counts: dict[str, int] = {}
    counters: dict[str, list[str]] = {}
    for block in _BLOCK.findall(reply):
        name = next(iter(_tag(block, "name")), "")
        n = len(words(name))
        if not (3 <= n <= 40) or name.lower() in (p.lower() for p in pats):
            continue
        got = re.search(r"\d+", next(iter(_tag(block, "count")), ""))
        if got and int(got.group()) < MIN_COUNT:
            continue
        pats.append(name)
        quotes[name] = [q.strip('"\u201c\u201d ')[:200] for q in _tag(block, "quote")][:MAX_QUOTES]
        counters[name] = [q.strip('"\u201c\u201d ')[:200] for q in _tag(block, "counter")][:MAX_QUOTES]
        if got:
            counts[name] = int(got.group())
    if not pats:
        pats = parse_scan(reply)
    return pats[:15], quotes, counts, counters


def parse_scan(reply: str) -> list[str]:
    """Pattern lines from a scan reply; echoes of the examples and fragments are ignored."""
    out: list[str] = []
    for line in reply.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        text = m.group(1).strip().strip("*").strip()
        n = len(words(text))
        if 3 <= n <= 40 and "=====" not in text and text.lower() not in (o.lower() for o in out):
            out.append(text)
    return out[:15]


def transcript(row: Any) -> str:
    """What a scan reads of a row: a document's text; every turn of a chat, each with its role."""
    if isinstance(row, Document):
        return row.text
    return "\n\n".join(f"{m.role.upper()}: {m.content}" for m in row.messages)


def pick_batch(examples: Sequence[Example], texts: dict[str, str], rng: random.Random, batch: int,
               chars: int) -> list[tuple[str, str]]:
    """Random whole transcripts until the batch's size (chars) or count is reached; at least two."""
    order = rng.sample(range(len(examples)), min(len(examples), max(batch, 2)))
    out: list[tuple[str, str]] = []
    used = 0
    per = max(chars // 2, 400)  # one example may take at most half the batch
    for i in order:
        rid = examples[i][0]
        text = fit(texts.get(rid) or "\n\n".join(examples[i][1]), per)
        if len(out) >= 2 and used + len(text) > chars:
            break
        out.append((rid, text))
        used += len(text)
    return out


async def run_scans(examples: Sequence[Example], kind: str, judge: LLM, scans: int, batch: int,
                    seed: int, prefetch: Prefetch | None = None, texts: dict[str, str] | None = None,
                    chars: int = SCAN_CHARS, max_tokens: int = SCAN_MAX_TOKENS) -> list[Scan]:
    """The judge's scans, one step on the step engine (`curate.patterns.scan`) with curation's
    prefetch. texts: each row's whole transcript (every turn), by id; default its units."""
    async def one(i: int) -> Scan:
        rng = random.Random(int(stable_hash([seed, kind, "scan", i]), 16))
        chosen = pick_batch(examples, texts or {}, rng, batch, chars)
        body = "\n=====\n".join(t for _, t in chosen)
        prompt = render("pattern_scan", n=str(len(chosen)), kind=kind, examples=body)
        try:
            reply = await judge.generate_one(prompt, temperature=0.7, max_tokens=max_tokens, seed=seed + i)
        except BackendError as e:
            reply = f"(judge call failed: {e})"
        pats, quotes, counts, counters = parse_scan_blocks(reply)
        return Scan(i, [rid for rid, _ in chosen], reply, pats, quotes, counts, counters)

    done = await run_step("curate.patterns.scan", [Unit(str(i), data=i) for i in range(scans)],
                          lambda u: one(u.data), prefetch=prefetch, desc=f"curate: scan {kind}s"[:60])
    return done.values


def rule_for(description: str) -> tuple[RegexRule | None, tuple[str, ...]]:
    """The regex of a quoted phrase in the description, with its words, used only to recognise a
    scan finding that names a rule's phrase. No keyword heuristics: a description that merely
    mentions lists or questions is rated by the judge."""
    d = description.lower()
    for phrase in _QUOTED.findall(description):
        w = words(phrase)
        if len(w) >= 2:
            if re.search(r"\b(?:open|start|begin|first)", d):
                return RegexRule(r"^\W*" + phrase_regex(w), r"^\W*" + phrase_regex(w[:3])), tuple(w)
            if re.search(r"\b(?:end|close|closing|sign|final|last)", d):
                return RegexRule(phrase_regex(w) + r"\W*$", phrase_regex(w[-3:]) + r"\W*$"), tuple(w)
            return RegexRule(phrase_regex(w), phrase_regex(w[:3]) if len(w) > 3 else phrase_regex(w)), tuple(w)
    return None, ()


def _stem(w: str) -> str:
    for suf in ("ing", "ed", "es", "s", "ly"):
        if len(w) > len(suf) + 3 and w.endswith(suf):
            return w[: -len(suf)]
    return w


def _tokens(text: str) -> set[str]:
    return {_stem(w) for w in words(text) if w not in STOPWORDS}


class Similar:
    """Are two descriptions the same pattern? Embedding cosine when available, else token overlap."""

    def __init__(self, texts: Sequence[str], embedder: Embedder | None):
        self.texts = list(texts)
        self.vecs = embedder(self.texts) if embedder else None
        self.toks = [_tokens(t) for t in self.texts]

    def __call__(self, i: int, j: int) -> bool:
        if self.vecs is not None:
            cos = sum(a * b for a, b in zip(self.vecs[i], self.vecs[j]))
            if cos >= SYNONYM_COSINE:
                return True
        a, b = self.toks[i], self.toks[j]
        return bool(a and b) and len(a & b) / len(a | b) >= SYNONYM_JACCARD


def merge(scans: Sequence[Scan], stats: list[Candidate], known: list[Candidate], examples: Sequence[Example],
          floor: float, max_judged: int, embedder: Embedder | None = None) -> list[Candidate]:
    """Known + stats candidates, with scan findings folded in; new scan patterns that survive."""
    out = list(known) + [c for c in stats if c.classifier not in {k.classifier for k in known}]
    # Stats rediscovering a known rule (e.g. the closing question) confirm it rather than duplicate it.
    for c in stats:
        for k in known:
            if k.classifier == c.classifier:
                k.stats_share = c.stats_share
    by_rule = {c.classifier: c for c in out}
    lines = [(s.index, p) for s in scans for p in s.patterns]
    said = {(s.index, p): (s.quotes.get(p, []), s.counters.get(p, [])) for s in scans for p in s.patterns}
    match_memo: dict[str, frozenset[int]] = {}

    def matches(c: Candidate) -> frozenset[int]:
        if c.id not in match_memo:
            match_memo[c.id] = strict_matches(c.rule, examples)  # type: ignore[arg-type]
        return match_memo[c.id]

    n_initial = len(out)
    texts = [c.description for c in out] + [p for _, p in lines]
    sim = Similar(texts, embedder)
    judged: list[tuple[Candidate, int]] = []  # (new judge candidate, its index in texts)
    for li, (scan_i, desc) in enumerate(lines):
        t_index = n_initial + li
        rule, phrase = rule_for(desc)
        if rule is not None:
            # A quoted phrase that is a rule's own phrase (say, one word shorter than a statistics
            # opener) confirms that rule; otherwise the finding is a judge pattern like any other.
            c = by_rule.get(rule.name)
            if c is None:
                probe = Candidate(f"scan:{_slug(desc)}", desc, "scan", rule, phrase=phrase)
                m = strict_matches(rule, examples)
                c = next((o for o in out if o.phrase and same_phrase_pattern(o, probe, matches(o), m)), None)
                if c is not None:
                    by_rule[rule.name] = c
            if c is not None:
                c.scans.add(scan_i)
                continue
        # A judge-only pattern: fold into an existing candidate that says the same thing.
        match = next((c for ci, c in enumerate(out[:n_initial]) if sim(ci, t_index)), None)
        if match is None:
            match = next((c for c, ci in judged if sim(ci, t_index)), None)
        if match is None:
            match = Candidate(f"scan:{_slug(desc)}", desc, "scan", JudgeRule(desc))
            judged.append((match, t_index))
        match.scans.add(scan_i)
        if isinstance(match.rule, JudgeRule):  # the scans' quotes: the autorater's snippets
            pos, neg = said.get((scan_i, desc), ([], []))
            r = match.rule
            match.rule = JudgeRule(r.question, _more(r.positives, pos), _more(r.negatives, neg))
    survivors = [c for c in out if c.source != "scan" or len(c.scans) > 1 or c.stats_share is not None]
    # Judge patterns cost one call per example each: keep the most often named.
    new_judged = sorted((c for c, _ in judged if len(c.scans) > 1), key=lambda c: -len(c.scans))[:max_judged]
    return survivors + new_judged


def _more(have: tuple[str, ...], new: Sequence[str]) -> tuple[str, ...]:
    out = list(have)
    for q in new:
        if q and q.lower() not in (o.lower() for o in out) and len(out) < MAX_QUOTES:
            out.append(q)
    return tuple(out)


def _slug(text: str) -> str:
    return "-".join(words(text)[:8]) or stable_hash(text)
