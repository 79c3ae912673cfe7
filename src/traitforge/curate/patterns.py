"""Step 4: pattern collapse. The published three-pass recipe (scan, merge, autorate) plus
mitigation, per dataset:
  scan     - the judge names recurring patterns in random batches; statistics run alongside;
  merge    - candidates de-duplicated; kept if named by >1 scan or confirmed by statistics;
  autorate - each pattern becomes a classifier (regex/feature rule or judge YES/PARTLY/NO) and is
             counted over the whole dataset, broad (PARTLY or better) and strict (YES);
  mitigate - patterns whose strict share > pattern_max_share are downsampled or rewritten to the
             target share, then re-measured (share_after, a strict share like share_strict; equal to
             it when no row changed).
Known offenders (validation buffering, yes/no openers, closing questions, conversion arcs,
ungrounded praise) are always rated."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Sequence

from traitforge.config import CurationSpec
from traitforge.curate.embed import Embedder
from traitforge.curate.pattern_mitigate import choose, n_to_remove, rewrite_unit
from traitforge.curate.pattern_rules import KNOWN, Candidate, JudgeRule, label_example
from traitforge.curate.pattern_scan import Scan, merge, run_scans
from traitforge.curate.pattern_stats import min_share, stats_candidates
from traitforge.curate.records import Dataset, Edit
from traitforge.curate.text import load_prompt, render, units
from traitforge.llm.client import LLM
from traitforge.llm.errors import BackendError
from traitforge.progress import gather_progress
from traitforge.types import ChatMessage, Document, Drop, PatternFinding, TraitSet, stable_hash

JUDGE_CHARS = 4000
_ANSWER = re.compile(r"\b(yes|partly|partially|somewhat|no)\b", re.I)
_VALUE = {"yes": 1.0, "partly": 0.5, "partially": 0.5, "somewhat": 0.5, "no": 0.0}


def parse_yes_no(reply: str) -> float | None:
    m = _ANSWER.search(reply[:200])
    return _VALUE[m.group(1).lower()] if m else None


@dataclass
class DatasetPatterns:
    rows: list[Any]
    findings: list[PatternFinding] = field(default_factory=list)
    drops: list[Drop] = field(default_factory=list)
    edits: list[Edit] = field(default_factory=list)
    scans: list[Scan] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)


class Rater:
    """Labels examples for candidates; judge labels are memoised by pattern and text."""

    def __init__(self, judge: LLM, max_tokens: int = 32):
        self.judge = judge
        self.max_tokens = max_tokens  # curation.pattern_judge_max_tokens; thinking room comes on top
        self.memo: dict[tuple[str, str], float | None] = {}
        self.unparsed: dict[str, int] = {}
        self.errors: dict[str, str] = {}  # candidate -> the last failed judge call's reason

    async def _ask(self, cand: Candidate, us: Sequence[str]) -> float | None:
        assert isinstance(cand.rule, JudgeRule)
        prompt = render(load_prompt("pattern_judge"), question=cand.rule.question,
                        text="\n\n".join(us)[:JUDGE_CHARS])
        try:
            reply = await self.judge.generate_one(prompt, temperature=0.0, max_tokens=self.max_tokens)
        except BackendError as e:
            self.errors[cand.id] = str(e)[:300]  # reported in the stats, not mistaken for "no pattern"
            return None
        value = parse_yes_no(reply)
        if value is None:
            self.unparsed[cand.id] = self.unparsed.get(cand.id, 0) + 1
        return value

    async def labels(self, cand: Candidate, rows: Sequence[Any]) -> dict[str, float | None]:
        if not isinstance(cand.rule, JudgeRule):
            return {r.id: label_example(cand.rule, units(r)) for r in rows}
        keys = {r.id: (cand.id, stable_hash(units(r))) for r in rows}
        todo = [r for r in rows if keys[r.id] not in self.memo]
        if todo:
            vals = await gather_progress([self._ask(cand, units(r)) for r in todo], desc=f"curate: rate {cand.id}"[:60])
            for r, v in zip(todo, vals):
                self.memo[keys[r.id]] = v
        return {r.id: self.memo[keys[r.id]] for r in rows}


def shares(labels: dict[str, float | None]) -> tuple[float, float, int]:
    """(broad share, strict share, examples rated); unrated (unparseable) examples are left out."""
    rated = [v for v in labels.values() if v is not None]
    if not rated:
        return 0.0, 0.0, 0
    return sum(v >= 0.5 for v in rated) / len(rated), sum(v == 1.0 for v in rated) / len(rated), len(rated)


def known_candidates(dataset: Dataset) -> list[Candidate]:
    return [Candidate(f"known:{k.id}", k.description, "known", k.rule) for k in KNOWN if k.dataset == dataset]


async def _rewrite(row: Any, cand: Candidate, judge: LLM) -> tuple[Any | None, str]:
    if isinstance(row, Document):
        new, why = await rewrite_unit(row.text, cand, judge)
        return (row.model_copy(update={"text": new, "revised": True}), "") if new else (None, why)
    msgs = list(row.messages)
    changed = False
    for i, m in enumerate(msgs):
        if m.role != "assistant":
            continue
        if not isinstance(cand.rule, JudgeRule) and cand.rule.label_unit(m.content) == 0.0:
            continue  # this reply does not show the pattern: leave it alone
        new, why = await rewrite_unit(m.content, cand, judge)
        if new is None:
            return None, why
        msgs[i] = ChatMessage(role="assistant", content=new)
        changed = True
    return (row.model_copy(update={"messages": msgs}), "") if changed else (None, "nothing to rewrite")


async def run_dataset(dataset: Dataset, rows: list[Any], traits: TraitSet, judge: LLM, cfg: CurationSpec,
                      seed: int, embedder: Embedder | None) -> DatasetPatterns:
    res = DatasetPatterns(rows=list(rows))
    if len(rows) < 2:
        return res
    examples = [(r.id, units(r)) for r in rows]
    kind = "document" if dataset == "documents" else "chat-assistant reply"
    stats, res.stats = stats_candidates(examples, traits, cfg.pattern_max_share)
    res.scans = await run_scans(examples, kind, judge, cfg.pattern_scans, cfg.scan_batch, seed)
    floor = min_share(len(examples), cfg.pattern_max_share)
    cands = merge(res.scans, stats, known_candidates(dataset), examples, floor, cfg.pattern_max_judged, embedder)

    rater = Rater(judge, cfg.pattern_judge_max_tokens)
    before: dict[str, tuple[float, float, int]] = {}
    for c in cands:
        before[c.id] = shares(await rater.labels(c, rows))
    flagged = [c for c in cands if before[c.id][1] > cfg.pattern_max_share]
    flagged.sort(key=lambda c: -before[c.id][1])

    unmitigated: dict[str, str] = {}
    if cfg.pattern_mitigation != "none":
        # Dropping rows loses data: at most pattern_max_drop of the dataset goes, and patterns that
        # need the fewest removals are handled first. The rest are reported, not half-fixed.
        budget = int(cfg.pattern_max_drop * len(rows))
        for c in sorted(flagged, key=lambda c: before[c.id][1]):
            labels = await rater.labels(c, res.rows)  # re-measured: earlier mitigation may have fixed it
            rated = [r for r in res.rows if labels[r.id] is not None]
            matching = [r.id for r in rated if labels[r.id] == 1.0]
            k = n_to_remove(len(matching), len(rated), cfg.pattern_max_share)
            if k == 0:
                continue
            if cfg.pattern_mitigation == "downsample" and k > budget:
                unmitigated[c.id] = f"needs {k} rows dropped, drop budget left {budget}"
                continue
            picked = set(choose(matching, k, int(stable_hash([seed, dataset, c.id]), 16)))
            reason = f"pattern {c.id} at {len(matching) / len(rated):.0%} > {cfg.pattern_max_share:.0%}: {c.description}"
            rewritten: dict[str, tuple[Any | None, str]] = {}
            if cfg.pattern_mitigation == "rewrite":
                by_id = {r.id: r for r in res.rows}
                order = sorted(picked)
                done = await gather_progress([_rewrite(by_id[i], c, judge) for i in order],
                                             desc=f"curate: rewrite {c.id}"[:60])
                rewritten = dict(zip(order, done))
            new_rows = []
            for r in res.rows:
                if r.id not in picked:
                    new_rows.append(r)
                elif r.id in rewritten and rewritten[r.id][0] is not None:
                    new = rewritten[r.id][0]
                    new_rows.append(new)
                    res.edits.append(Edit(dataset=dataset, row_id=r.id, step="patterns", reason=f"rewritten: {reason}",
                                          before="\n\n".join(units(r)), after="\n\n".join(units(new))))
                elif budget > 0:
                    why = f"rewrite failed ({rewritten[r.id][1]}), dropped: " if r.id in rewritten else "downsampled: "
                    res.drops.append(Drop(dataset=dataset, row_id=r.id, step="patterns", reason=why + reason))
                    budget -= 1
                else:
                    new_rows.append(r)  # rewrite failed and no drop budget left: kept as it was
                    unmitigated[c.id] = "some rewrites failed and the drop budget is spent"
            res.rows = new_rows

    flagged_ids = {c.id for c in flagged}
    changed = bool(res.drops or res.edits)
    for c in cands:
        broad, strict, n = before[c.id]
        # The strict share again, over the rows mitigation left; no row changed: the same as before.
        after = round(shares(await rater.labels(c, res.rows))[1] if changed else strict, 4)
        res.findings.append(PatternFinding(
            dataset=dataset, pattern_id=c.id, description=c.description, source=c.source,
            classifier=c.classifier, share_broad=round(broad, 4), share_strict=round(strict, 4),
            share_after=after, flagged=c.id in flagged_ids, n=n))
    res.stats["judge_unparsed"] = dict(rater.unparsed)
    res.stats["judge_errors"] = dict(rater.errors)
    res.stats["unmitigated"] = unmitigated
    res.stats["candidates"] = {c.id: {"scans": sorted(c.scans), "stats_share": c.stats_share} for c in cands}
    return res
