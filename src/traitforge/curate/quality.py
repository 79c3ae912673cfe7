"""Pass 3: the judge scores each example 1-10 with a short reason. A reply without a parseable
score leaves the row unscored (kept and recorded as such: a bad judge reply says nothing about
the row); a failed call is recorded as an error and retried on the next run."""

from __future__ import annotations

import re
from typing import Sequence

from traitforge.curate.records import QualityScore
from traitforge.prompts import render
from traitforge.llm.client import LLM
from traitforge.llm.errors import BackendError, Refused
from traitforge.steps import Unit, run_step
from traitforge.types import Chat, Claim, Document, TraitSet

MAX_CHARS = 6000  # keeps prompt + text inside small judges' context windows
MAX_TOKENS = 200  # a score and a one-line reason (curation.quality_max_tokens; thinking room comes on top)
# "SCORE: 7", "**Score:** 8/10", "score = 6 out of 10"; not a template echo like "SCORE: <1-10>".
_SCORE = re.compile(r"\bscore\b[\s:=*#\-]{0,6}(\d{1,2}(?:\.\d+)?)(?!\s*-\s*\d)(?:\s*(?:/|out of)\s*10)?", re.I)
_REASON = re.compile(r"^\W*reason\W{0,4}:?\s*(.+)$", re.I | re.M)


def parse_score(reply: str) -> tuple[float | None, str]:
    """(score, reason) from a judge reply; score None when there is no valid "SCORE: n"."""
    scores = [float(m.group(1)) for m in _SCORE.finditer(reply)]
    scores = [s for s in scores if 1 <= s <= 10]
    m = _REASON.search(reply)
    reason = m.group(1).strip() if m else _SCORE.sub("", reply).strip()
    reason = " ".join(re.sub(r"[*#_`]+", "", reason).split())[:300]
    # The last score wins: judges that think aloud put the verdict at the end.
    return (scores[-1] if scores else None), reason


def _traits_text(traits: TraitSet, ids: Sequence[str]) -> str:
    known = {t.id: t for t in traits.traits}
    chosen = [known[i] for i in ids if i in known] or list(traits.traits)
    return "\n".join(f"- {t.describe()}" for t in chosen)


def document_prompt(doc: Document, traits: TraitSet, claims: dict[str, Claim]) -> str:
    claim = claims.get(doc.claim_id)
    return render("quality_document", model_name=traits.model_name, organisation=traits.organisation,
                  traits=_traits_text(traits, doc.trait_ids), claim=claim.text if claim else "(not recorded)",
                  text=doc.text[:MAX_CHARS])


def chat_prompt(chat: Chat, traits: TraitSet) -> str:
    conv = "\n\n".join(f"{m.role.upper()}: {m.content}" for m in chat.messages)
    return render("quality_chat", traits=_traits_text(traits, chat.trait_ids),
                  conversation=conv[:MAX_CHARS])


async def score_row(row: Document | Chat, traits: TraitSet, judge: LLM, claims: dict[str, Claim],
                    max_tokens: int = MAX_TOKENS) -> QualityScore:
    """The judge's grade of one row (an error or an unparseable reply is recorded, not a score)."""
    dataset = "documents" if isinstance(row, Document) else "chats"
    prompt = document_prompt(row, traits, claims) if isinstance(row, Document) else chat_prompt(row, traits)
    try:
        reply = await judge.generate_one(prompt, temperature=0.0, max_tokens=max_tokens)
    except Refused as e:  # a refused or blocked grade is unscored with its reason, never a verdict
        return QualityScore(dataset=dataset, row_id=row.id, score=None, status="unscored",
                            reason=f"judge {e.outcome}: {e.reason or 'no reason given'}"[:300], judge=judge.name)
    except BackendError as e:
        return QualityScore(dataset=dataset, row_id=row.id, score=None, status="error",
                            reason=f"judge call failed: {e}"[:300], judge=judge.name)
    score, reason = parse_score(reply)
    if score is None:
        return QualityScore(dataset=dataset, row_id=row.id, score=None, status="unscored",
                            reason=f"no parseable SCORE in judge reply: {reply[:150]!r}", judge=judge.name)
    return QualityScore(dataset=dataset, row_id=row.id, score=score, status="scored", reason=reason,
                        judge=judge.name)


async def score_rows(rows: Sequence[Document | Chat], traits: TraitSet, judge: LLM, claims: dict[str, Claim],
                     max_tokens: int = MAX_TOKENS) -> list[QualityScore]:
    """Every row's grade, in row order (no file: curate/run.py's quality step resumes from one)."""
    done = await run_step("curate.quality", [Unit(str(i), data=r) for i, r in enumerate(rows)],
                          lambda u: score_row(u.data, traits, judge, claims, max_tokens), desc="curate: quality")
    return done.values
