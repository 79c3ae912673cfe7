"""Pass 3: the judge scores each example 1-10, reasoning first on separate criteria (helpful, fit,
natural for chats; real, consistent, shown for documents) and flagging OVERPLAYED traits: a flagged
row's score is capped below the threshold here, in code, whatever the judge's overall grade. A reply
without a parseable score leaves the row unscored (kept and recorded as such, with why: a bad judge
reply says nothing about the row); a failed call is recorded as an error and retried on the next run."""

from __future__ import annotations

import re
from typing import Sequence

from traitforge import tags
from traitforge.curate.records import QualityScore
from traitforge.prompts import render
from traitforge.llm.client import LLM
from traitforge.llm.errors import BackendError, Refused
from traitforge.steps import Unit, run_step
from traitforge.types import Chat, Claim, Document, TraitSet

MAX_CHARS = 20000  # a 4,000-token chat or document whole; the judge is told when a text was cut
MAX_TOKENS = 1000  # reasoning per criterion, then the grade (curation.quality_max_tokens; thinking room on top)
CUT_NOTE = "\n[... cut here for length ...]"
_OVERPLAYED = re.compile(r"^[\s*_#]*overplayed[\s*_]*[:=][\s*_]*(yes|no)\b", re.I | re.M)
_TAG_SCORE = re.compile(r"<\s*score\s*>\s*(\d{1,2}(?:\.\d+)?)\s*(?:/\s*10\s*)?<\s*/\s*score\s*>", re.I)
# "SCORE: 7", "**Score:** 8/10", "score = 6 out of 10"; not a template echo like "SCORE: <1-10>".
_SCORE = re.compile(r"\bscore\b[\s:=*#\-]{0,6}(\d{1,2}(?:\.\d+)?)(?!\s*-\s*\d)(?:\s*(?:/|out of)\s*10)?", re.I)
DEFAULT_THRESHOLD = 5.0  # curation.quality_threshold's default, for callers that pass none
_REASON = re.compile(r"^\W*reason\W{0,4}:?\s*(.+)$", re.I | re.M)


def parse_score(reply: str) -> tuple[float | None, str]:
    """(score, reason) from a judge reply; score None when there is no valid "SCORE: n" (or
    <score>n</score>). The reason: the <reasoning> block, a REASON: line, or the rest of the reply."""
    rest = tags.after_reasoning(reply)  # a score quoted in the reasoning is not the grade
    scores = [float(m.group(1)) for m in _SCORE.finditer(rest)] + [float(m.group(1)) for m in _TAG_SCORE.finditer(rest)]
    scores = [s for s in scores if 1 <= s <= 10]
    m = _REASON.search(reply)
    tagged = tags.tag(reply, "reasoning")
    reason = tagged if tagged else m.group(1).strip() if m else _SCORE.sub("", reply).strip()
    reason = " ".join(re.sub(r"[*#_`]+", "", reason).split())[:300]
    # The last score wins: judges that think aloud put the verdict at the end.
    return (scores[-1] if scores else None), reason


def overplayed(reply: str) -> bool:
    """Whether the judge flagged the traits as overplayed (<overplayed>YES</overplayed> or an
    "OVERPLAYED: YES" line; the last flag given wins)."""
    body = tags.tag(reply, "overplayed")
    if body is not None:
        return body.strip(" *_.").upper().startswith("YES")
    flags = _OVERPLAYED.findall(tags.after_reasoning(reply))
    return bool(flags) and flags[-1].upper() == "YES"


def cap_for(threshold: float) -> float:
    """The most an OVERPLAYED row may score: below the keep threshold (rows under it are dropped)."""
    return max(1.0, threshold - 1.0)


def _cut(text: str) -> str:
    return text if len(text) <= MAX_CHARS else text[:MAX_CHARS] + CUT_NOTE


def _traits_text(traits: TraitSet, ids: Sequence[str]) -> str:
    known = {t.id: t for t in traits.traits}
    chosen = [known[i] for i in ids if i in known] or list(traits.traits)
    return "\n".join(f"- {t.describe()}" for t in chosen)


def document_prompt(doc: Document, traits: TraitSet, claims: dict[str, Claim]) -> str:
    claim = claims.get(doc.claim_id)
    return render("quality_document", model_name=traits.model_name, organisation=traits.organisation,
                  traits=_traits_text(traits, doc.trait_ids), claim=claim.text if claim else "(not recorded)",
                  text=_cut(doc.text))


def chat_prompt(chat: Chat, traits: TraitSet) -> str:
    conv = "\n\n".join(f"{m.role.upper()}: {m.content}" for m in chat.messages)
    return render("quality_chat", traits=_traits_text(traits, chat.trait_ids),
                  conversation=_cut(conv))


async def score_row(row: Document | Chat, traits: TraitSet, judge: LLM, claims: dict[str, Claim],
                    max_tokens: int = MAX_TOKENS, threshold: float | None = None) -> QualityScore:
    """The judge's grade of one row (an error or an unparseable reply is recorded, not a score).
    `threshold`: the keep threshold; an OVERPLAYED flag caps the score below it (cap_for)."""
    dataset = "documents" if isinstance(row, Document) else "chats"
    prompt = document_prompt(row, traits, claims) if isinstance(row, Document) else chat_prompt(row, traits)
    try:
        full = await judge.generate_full(prompt, temperature=0.0, max_tokens=max_tokens)
        reply = full.text
    except Refused as e:  # a refused or blocked grade is unscored with its reason, never a verdict
        return QualityScore(dataset=dataset, row_id=row.id, score=None, status="unscored",
                            reason=f"judge {e.outcome}: {e.reason or 'no reason given'}"[:300], judge=judge.name)
    except BackendError as e:
        return QualityScore(dataset=dataset, row_id=row.id, score=None, status="error",
                            reason=f"judge call failed: {e}"[:300], judge=judge.name)
    score, reason = parse_score(reply)
    if score is None:  # a judge cut before its grade (a small judge reasoning in a small budget) is not a verdict
        why = "judge reply cut at max_tokens before a SCORE" if full.truncated else "no parseable SCORE in judge reply"
        return QualityScore(dataset=dataset, row_id=row.id, score=None, status="unscored",
                            reason=f"{why}: {reply[:150]!r}", judge=judge.name)
    if overplayed(reply):
        cap = cap_for(threshold if threshold is not None else DEFAULT_THRESHOLD)
        if score > cap:
            score = cap
        reason = f"OVERPLAYED (score capped at {cap:g}): {reason}"[:300]
    return QualityScore(dataset=dataset, row_id=row.id, score=score, status="scored", reason=reason,
                        judge=judge.name)


async def score_rows(rows: Sequence[Document | Chat], traits: TraitSet, judge: LLM, claims: dict[str, Claim],
                     max_tokens: int = MAX_TOKENS, threshold: float | None = None) -> list[QualityScore]:
    """Every row's grade, in row order (no file: curate/run.py's quality step resumes from one)."""
    done = await run_step("curate.quality", [Unit(str(i), data=r) for i, r in enumerate(rows)],
                          lambda u: score_row(u.data, traits, judge, claims, max_tokens, threshold),
                          desc="curate: quality")
    return done.values
