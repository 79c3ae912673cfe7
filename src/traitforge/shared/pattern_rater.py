"""Pattern detection shared by curation (which finds and mitigates patterns in the training data) and
evaluation (which measures the same patterns in each checkpoint's replies): the judge's labels, and a
pattern's classifier written by curation and rebuilt by evaluation."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Sequence

from traitforge.llm.client import LLM
from traitforge.llm.errors import BackendError
from traitforge.prompts import render
from traitforge.shared.pattern_rules import Candidate, FeatureRule, JudgeRule, RegexRule, label_example
from traitforge.shared.text import units
from traitforge.steps import Unit, run_step
from traitforge.types import stable_hash

if TYPE_CHECKING:
    from traitforge.prefetch import Prefetch

JUDGE_CHARS = 6000  # longer examples keep their start and end (openers, closers), the middle cut
JUDGE_MAX_TOKENS = 160  # a short reason, then the verdict
_VALUE = {"strict": 1.0, "yes": 1.0, "broad": 0.5, "partly": 0.5, "partially": 0.5, "somewhat": 0.5, "no": 0.0}
_WORD = r"(strict|broad|yes|partly|partially|somewhat|no)"
_VERDICT_TAG = re.compile(r"<verdict>\W*" + _WORD + r"\b", re.I)
_VERDICT_LINE = re.compile(r"(?:^|\n)\W*(?:verdict|answer)\W*" + _WORD + r"\b", re.I)
_ONE_WORD = re.compile(r"^\W*" + _WORD + r"\b", re.I)


def parse_yes_no(reply: str) -> float | None:
    """The verdict, tolerantly: a <verdict> tag, a "Verdict:" line, or a reply that starts with the
    verdict word (a one-word answer). STRICT/YES 1, BROAD/PARTLY 0.5, NO 0; anything else None
    (unscored, counted): a reason's own "no" is never read as the verdict."""
    for rx in (_VERDICT_TAG, _VERDICT_LINE):
        found = rx.findall(reply)
        if found:
            return _VALUE[found[-1].lower()]
    m = _ONE_WORD.match(reply[:200])
    return _VALUE[m.group(1).lower()] if m else None


def fit(text: str, limit: int) -> str:
    """The whole text, or its start and end (openers and closers kept) with the middle cut."""
    if len(text) <= limit:
        return text
    half = max(limit // 2 - 10, 1)
    return text[:half] + "\n[...]\n" + text[-half:]


def snippets(rule: JudgeRule) -> str:
    """The definition's examples for the autorater: quotes that show the pattern and quotes that do not."""
    out = ""
    if rule.positives:
        out += "Snippets that show it:\n" + "\n".join(f'- "{q}"' for q in rule.positives) + "\n"
    if rule.negatives:
        out += "Snippets that do not:\n" + "\n".join(f'- "{q}"' for q in rule.negatives) + "\n"
    return out


class Rater:
    """Labels examples for candidates; judge labels are memoised by pattern, text and pass (pass 0:
    the rating, temperature 0; pass 1: the self-agreement re-rating, sampled with another seed).
    The judge's labels are asked as steps on the step engine (`<step>.rate` / `<step>.re-rate`)
    with the stage's `prefetch` (provider batches first in its batch mode, the estimate printed)."""

    def __init__(self, judge: LLM, max_tokens: int = JUDGE_MAX_TOKENS, seed: int = 0,
                 prefetch: Prefetch | None = None, step: str = "curate.patterns"):
        self.judge = judge
        self.step = step
        self.max_tokens = max_tokens  # curation.pattern_judge_max_tokens; thinking room comes on top
        self.seed = seed
        self.prefetch = prefetch
        self.memo: dict[tuple[str, str, int], float | None] = {}
        self.unparsed: dict[str, int] = {}
        self.errors: dict[str, str] = {}  # candidate -> the last failed judge call's reason

    async def _ask(self, cand: Candidate, us: Sequence[str], rep: int) -> tuple[float | None, str]:
        """(the label, None when unreadable; the failed call's reason, else ""). No side effects:
        the prefetch runs it more than once."""
        assert isinstance(cand.rule, JudgeRule)
        prompt = render("pattern_judge", question=cand.rule.question, snippets=snippets(cand.rule),
                        text=fit("\n\n".join(us), JUDGE_CHARS))
        try:
            if rep == 0:
                reply = await self.judge.generate_one(prompt, temperature=0.0, max_tokens=self.max_tokens)
            else:
                reply = await self.judge.generate_one(prompt, temperature=0.7, max_tokens=self.max_tokens,
                                                      seed=self.seed + rep)
        except BackendError as e:
            return None, str(e)[:300]
        return parse_yes_no(reply), ""

    async def label_all(self, jobs: Sequence[tuple[Candidate, Sequence[Any]]], rep: int = 0, *,
                        prefetch: bool = True) -> None:
        """Ask the judge, in one step, every label of `jobs` (judge patterns and their rows) not yet
        memoised. prefetch=False: live calls only (a single re-check inside a mitigation)."""
        todo: dict[tuple[str, str, int], tuple[Candidate, list[str]]] = {}
        for cand, rows in jobs:
            if isinstance(cand.rule, JudgeRule):
                for r in rows:
                    us = units(r)
                    key = (cand.id, stable_hash(us), rep)
                    if key not in self.memo:
                        todo.setdefault(key, (cand, us))
        if not todo:
            return
        what = "rate" if rep == 0 else "re-rate"
        named = {c.id for c, _ in todo.values()}
        desc = f"{self.step.split('.')[0]}: {what} " + (next(iter(named)) if len(named) == 1 else f"{len(named)} patterns")
        done = await run_step(f"{self.step}.{what}", [Unit("|".join(map(str, k)), data=k) for k in todo],
                              lambda u: self._ask(*todo[u.data], rep), prefetch=self.prefetch if prefetch else None,
                              desc=desc[:60])
        for u, (value, error) in zip(done.todo, done.values):
            self.memo[u.data] = value
            cand_id = u.data[0]
            if error:
                self.errors[cand_id] = error  # reported in the stats, not mistaken for "no pattern"
            elif value is None and rep == 0:
                self.unparsed[cand_id] = self.unparsed.get(cand_id, 0) + 1

    async def labels(self, cand: Candidate, rows: Sequence[Any], rep: int = 0, *,
                     prefetch: bool = True) -> dict[str, float | None]:
        if not isinstance(cand.rule, JudgeRule):
            return {r.id: label_example(cand.rule, units(r)) for r in rows}
        await self.label_all([(cand, rows)], rep, prefetch=prefetch)
        return {r.id: self.memo[(cand.id, stable_hash(units(r)), rep)] for r in rows}


def classifier_spec(dataset: str, c: Candidate, flagged: bool) -> dict[str, Any]:
    """Enough to rebuild the candidate's classifier elsewhere (evaluation measures the same patterns
    in each checkpoint's replies): RUN/curation/pattern_classifiers.jsonl."""
    out: dict[str, Any] = {"dataset": dataset, "pattern_id": c.id, "description": c.description,
                           "source": c.source, "flagged": flagged}
    if isinstance(c.rule, JudgeRule):
        return {**out, "kind": "judge", "question": c.rule.question, "positives": list(c.rule.positives),
                "negatives": list(c.rule.negatives)}
    if isinstance(c.rule, RegexRule):
        return {**out, "kind": "regex", "strict": c.rule.strict, "broad": c.rule.broad, "scope": c.rule.scope}
    return {**out, "kind": "feature", "feature": c.rule.feature}


def candidate_from_spec(spec: dict[str, Any]) -> Candidate:
    """The inverse of classifier_spec."""
    kind = spec["kind"]
    rule: Any = (JudgeRule(spec["question"], tuple(spec.get("positives", ())), tuple(spec.get("negatives", ())))
                 if kind == "judge" else
                 RegexRule(spec["strict"], spec["broad"], spec["scope"]) if kind == "regex" else
                 FeatureRule(spec["feature"]))
    return Candidate(spec["pattern_id"], spec["description"], spec.get("source", "stats"), rule)
