"""Pass 4: pattern collapse, as the method's write-up describes it, per dataset:
  rules    - the cheap first pass: statistics (shared openers/closers, n-grams, structure) and the
             known offenders, exact regex/feature classifiers counted over every row;
  scan     - the judge names recurring patterns in random batches;
  cluster  - scan findings that say the same thing are merged (sentence embeddings, else word
             overlap); a quoted phrase that is a rule's phrase confirms that rule; a cluster named
             by more than one scan becomes a judge pattern (never a keyword-made regex);
  autorate - each judge pattern is rated YES/PARTLY/NO by the judge over a seeded sample of rows
             (pattern_sample); part of the sample is rated twice (self-agreement), which gives
             the judge's implied accuracy and a share corrected for its noise, with a 95% interval
             (curate/pattern_share.py); rule patterns are also rated by the judge on that part
             (agreement of the rule and the autorater);
  mitigate - patterns whose estimated share > pattern_max_share are downsampled, rewritten, or
             regenerated with the pattern named as something to avoid (shared/avoid.py), to the
             target share, then re-measured (share_after, a strict share like share_strict).
Rows of templated control traits (curation.template_traits) are set aside: never measured, dropped
or rewritten. The classifiers are written out so evaluation measures the same patterns in each
checkpoint's replies (evaluate/patterns.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

from traitforge.curate.settings import CurationSpec
from traitforge.shared.embed import Embedder
from traitforge import junk
from traitforge.curate.pattern_mitigate import choose, clean_rewrite, n_to_remove, rewrite_unit
from traitforge.shared.pattern_rules import KNOWN, Candidate, JudgeRule
from traitforge.curate.pattern_share import Share, accuracy_from_agreement, agreement, estimate_share, is_flagged
from traitforge.curate.pattern_scan import SCAN_CHARS, SCAN_MAX_TOKENS, Scan, merge, run_scans, transcript
from traitforge.curate.pattern_stats import min_share, stats_candidates
from traitforge.curate.records import Dataset, Edit
from traitforge.shared.text import units
from traitforge.shared.avoid import avoid_list
from traitforge.llm.client import LLM
from traitforge.llm.errors import BackendError
from traitforge.progress import gather_progress
from traitforge.types import ChatMessage, Document, Drop, PatternFinding, TraitSet, stable_hash
from traitforge.shared.pattern_rater import (JUDGE_CHARS, JUDGE_MAX_TOKENS, Rater, candidate_from_spec,  # noqa: F401
                                            classifier_spec, parse_yes_no)

if TYPE_CHECKING:
    from traitforge.prefetch import Prefetch

REGENERATE_MAX_TOKENS = 900
MAX_RULE_CHECKS = 5  # rule patterns also rated by the judge on the check sample


@dataclass
class DatasetPatterns:
    rows: list[Any]
    findings: list[PatternFinding] = field(default_factory=list)
    drops: list[Drop] = field(default_factory=list)
    edits: list[Edit] = field(default_factory=list)
    scans: list[Scan] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    classifiers: list[dict[str, Any]] = field(default_factory=list)
    labels: dict[str, dict[str, float | None]] = field(default_factory=dict)  # pattern -> row id -> label (rows rated)
    broad: dict[str, Share] = field(default_factory=dict)  # pattern -> its broad share (STRICT or BROAD)


def shares(labels: dict[str, float | None]) -> tuple[float, float, int]:
    """(broad share, strict share, examples rated); unrated (unparseable) examples are left out."""
    rated = [v for v in labels.values() if v is not None]
    if not rated:
        return 0.0, 0.0, 0
    return sum(v >= 0.5 for v in rated) / len(rated), sum(v == 1.0 for v in rated) / len(rated), len(rated)


def known_candidates(dataset: Dataset) -> list[Candidate]:
    return [Candidate(f"known:{k.id}", k.description, "known", k.rule) for k in KNOWN if k.dataset == dataset]


def judge_twin(c: Candidate) -> Candidate:
    """The judge's version of a rule candidate, to check the rule and the autorater against each other."""
    return Candidate(f"check:{c.id}", c.description, c.source,
                     JudgeRule(f"Does the text show this pattern: {c.description}?"))


def template_row(row: Any, template_traits: Sequence[str]) -> bool:
    """Rows of a templated control trait (curation.template_traits, e.g. the canary) are alike on
    purpose: they are never measured for patterns, nor dropped or rewritten for them."""
    return bool(set(row.trait_ids) & set(template_traits))


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


async def _regenerate(row: Any, cand: Candidate, judge: LLM, rater: Rater) -> tuple[Any | None, str]:
    """A single-turn chat answered afresh by the teacher (its recorded system prompt) with the pattern
    named as something to avoid (shared/avoid.py, the list generation's top-up rounds use); the
    new reply must pass the junk rules and not show the pattern. Documents and multi-turn chats
    (whose later turns answer the old reply) are rewritten instead."""
    if isinstance(row, Document) or len(row.messages) != 2 or not row.system_prompt:
        return await _rewrite(row, cand, judge)
    user = row.messages[0]
    system = row.system_prompt + "\n\n" + avoid_list([cand.description])
    try:
        reply = await judge.generate_one([{"role": "system", "content": system}, user.model_dump()],
                                         max_tokens=REGENERATE_MAX_TOKENS)
    except BackendError as e:
        return None, f"regeneration failed: {e}"
    reply = clean_rewrite(reply)
    problems = [j.reason for j in junk.find_junk(reply, prompt=user.content, reply=True)]
    if len(reply) < 20 or problems:
        return None, f"regenerated reply unusable: {'; '.join(problems) or 'too short'}"[:300]
    new = row.model_copy(update={"messages": [user, ChatMessage(role="assistant", content=reply)]})
    if (await rater.labels(cand, [new], prefetch=False))[new.id] == 1.0:  # one live call per row
        return None, "regenerated reply still shows the pattern"
    return new, ""


def _sample(rows: Sequence[Any], k: int, seed: int, dataset: str) -> list[Any]:
    """A seeded sample of k rows (all when there are fewer), in a stable order."""
    return sorted(rows, key=lambda r: stable_hash([seed, dataset, "pattern-sample", r.id]))[:k]


async def run_dataset(dataset: Dataset, rows: list[Any], traits: TraitSet, judge: LLM, cfg: CurationSpec,
                      seed: int, embedder: Embedder | None, prefetch: Prefetch | None = None,
                      scan_chars: int = SCAN_CHARS, scan_max_tokens: int = SCAN_MAX_TOKENS) -> DatasetPatterns:
    """Scan -> cluster -> autorate over a sample (share with CI, corrected for the judge's noise) ->
    mitigate, for one dataset. Exact rules (statistics, known offenders) are the cheap first pass
    and are counted over every row. prefetch: curation's (the quality step's), for the scans and
    the judge's labels: by provider batches first in batch mode, each step's estimate printed."""
    res = DatasetPatterns(rows=list(rows))
    templated = [r for r in rows if template_row(r, cfg.template_traits)]
    rows = [r for r in rows if not template_row(r, cfg.template_traits)]
    res.stats["template_rows_exempt"] = len(templated)
    if len(rows) < 2:
        return res
    examples = [(r.id, units(r)) for r in rows]
    kind = "document" if dataset == "documents" else "chat-assistant reply"
    stats, res.stats = stats_candidates(examples, traits, cfg.pattern_max_share)
    res.stats["template_rows_exempt"] = len(templated)
    res.scans = await run_scans(examples, kind, judge, cfg.pattern_scans, cfg.scan_batch, seed, prefetch,
                                texts={r.id: transcript(r) for r in rows}, chars=scan_chars,
                                max_tokens=scan_max_tokens)
    floor = min_share(len(examples), cfg.pattern_max_share)
    cands = merge(res.scans, stats, known_candidates(dataset), examples, floor, cfg.pattern_max_judged, embedder)

    rater = Rater(judge, cfg.pattern_judge_max_tokens, seed, prefetch)
    sample = _sample(rows, cfg.pattern_sample, seed, dataset)
    check = sample[:cfg.pattern_check_sample]
    # Every judge pattern's rating of the sample in one step, then the re-rating of the check part
    # in another (one provider batch each in batch mode); the loop below reads the memo.
    judged = [c for c in cands if isinstance(c.rule, JudgeRule)]
    await rater.label_all([(c, sample) for c in judged])
    await rater.label_all([(c, check) for c in judged], rep=1)
    before: dict[str, tuple[float, float, int]] = {}
    est: dict[str, Share] = {}
    checks: dict[str, dict[str, Any]] = {}
    for c in cands:
        if isinstance(c.rule, JudgeRule):
            first = await rater.labels(c, sample)
            agree, n_agree = agreement({r.id: first[r.id] for r in check}, await rater.labels(c, check, rep=1))
            acc = accuracy_from_agreement(agree)
            before[c.id] = shares(first)
            res.labels[c.id] = first
            checks[c.id] = {"self_agreement": None if agree is None else round(agree, 4), "self_agreement_n": n_agree}
        else:
            acc, n_agree = None, 0
            res.labels[c.id] = await rater.labels(c, rows)
            before[c.id] = shares(res.labels[c.id])
        broad, strict, n = before[c.id]
        est[c.id] = estimate_share(round(strict * n), n, acc, n_agree)
        res.broad[c.id] = estimate_share(round(broad * n), n, acc, n_agree)
    flagged = [c for c in cands if is_flagged(est[c.id], cfg.pattern_max_share)]
    flagged.sort(key=lambda c: -est[c.id].estimate)
    # The rules and the autorater against each other, where both apply: the flagged rule patterns
    # (and the known offenders) rated by the judge on the check sample.
    ruled_checks = [c for c in cands if not isinstance(c.rule, JudgeRule)
                    and (c in flagged or c.source == "known")][:MAX_RULE_CHECKS]
    await rater.label_all([(judge_twin(c), check) for c in ruled_checks])
    for c in ruled_checks:
        ruled = await rater.labels(c, check)
        judged = await rater.labels(judge_twin(c), check)
        agree, n_agree = agreement(ruled, judged)
        checks[c.id] = {"rule_agreement": None if agree is None else round(agree, 4), "rule_agreement_n": n_agree}

    unmitigated: dict[str, str] = {}
    if cfg.pattern_mitigation != "none":
        # Dropping rows loses data: at most pattern_max_drop of the dataset goes, and patterns that
        # need the fewest removals are handled first. The rest are reported, not half-fixed.
        budget = int(cfg.pattern_max_drop * len(rows))
        for c in sorted(flagged, key=lambda c: est[c.id].estimate):
            labels = await rater.labels(c, res.rows)  # re-measured: earlier mitigation may have fixed it
            rated = [r for r in res.rows if labels[r.id] is not None]
            matching = [r.id for r in rated if labels[r.id] == 1.0]
            k = n_to_remove(len(matching), len(rated), cfg.pattern_max_share)
            if k and est[c.id].accuracy is not None:
                k = max(k, noisy_removals(len(matching), len(rated), cfg.pattern_max_share, est[c.id].accuracy))
            if k == 0:
                continue
            if cfg.pattern_mitigation == "downsample" and k > budget:
                unmitigated[c.id] = f"needs {k} rows dropped, drop budget left {budget}"
                continue
            picked = set(choose(matching, k, int(stable_hash([seed, dataset, c.id]), 16)))
            reason = f"pattern {c.id} at {len(matching) / len(rated):.0%} > {cfg.pattern_max_share:.0%}: {c.description}"
            rewritten: dict[str, tuple[Any | None, str]] = {}
            if cfg.pattern_mitigation in ("rewrite", "regenerate"):
                by_id = {r.id: r for r in res.rows}
                order = sorted(picked)
                fix = (lambda r: _regenerate(r, c, judge, rater)) if cfg.pattern_mitigation == "regenerate" \
                    else (lambda r: _rewrite(r, c, judge))
                done = await gather_progress([fix(by_id[i]) for i in order],
                                             desc=f"curate: {cfg.pattern_mitigation} {c.id}"[:60])
                rewritten = dict(zip(order, done))
            new_rows = []
            for r in res.rows:
                if r.id not in picked:
                    new_rows.append(r)
                elif r.id in rewritten and rewritten[r.id][0] is not None:
                    new = rewritten[r.id][0]
                    new_rows.append(new)
                    res.edits.append(Edit(dataset=dataset, row_id=r.id, step="patterns",
                                          reason=f"{cfg.pattern_mitigation}: {reason}"[:400],
                                          before="\n\n".join(units(r)), after="\n\n".join(units(new))))
                elif budget > 0:
                    why = (f"{cfg.pattern_mitigation} failed ({rewritten[r.id][1]}), dropped: " if r.id in rewritten
                           else "downsampled: ")
                    res.drops.append(Drop(dataset=dataset, row_id=r.id, step="patterns", reason=why + reason))
                    budget -= 1
                else:
                    new_rows.append(r)  # rewrite failed and no drop budget left: kept as it was
                    unmitigated[c.id] = f"some {cfg.pattern_mitigation}s failed and the drop budget is spent"
            res.rows = new_rows

    flagged_ids = {c.id for c in flagged}
    changed = bool(res.drops or res.edits)
    sampled_left = {s.id for s in sample} & {r.id for r in res.rows}
    for c in cands:
        broad, strict, n = before[c.id]
        e = est[c.id]
        after_est = None
        if not changed:
            after = strict
            after_est = e.estimate
        else:
            # Exact rules: every row left. Judge patterns: every row for a flagged one (labelled
            # during mitigation), else the sample's rows left (their labels are memoised).
            left = res.rows if (not isinstance(c.rule, JudgeRule) or c.id in flagged_ids) else \
                [r for r in res.rows if r.id in sampled_left]
            _, after, n_after = shares(await rater.labels(c, left))
            after_est = estimate_share(round(after * n_after), n_after, e.accuracy).estimate
        res.findings.append(PatternFinding(
            dataset=dataset, pattern_id=c.id, description=c.description, source=c.source,
            classifier=c.classifier, share_broad=round(broad, 4), share_strict=round(strict, 4),
            share_after=round(after, 4), flagged=c.id in flagged_ids, n=n,
            share_estimate=round(e.estimate, 4), ci_low=round(e.ci_low, 4), ci_high=round(e.ci_high, 4),
            share_after_estimate=round(after_est, 4) if after_est is not None else None,
            judge_accuracy=None if e.accuracy is None else round(e.accuracy, 4),
            self_agreement=checks.get(c.id, {}).get("self_agreement"),
            rule_agreement=checks.get(c.id, {}).get("rule_agreement")))
        res.classifiers.append(classifier_spec(dataset, c, c.id in flagged_ids))
    res.rows = res.rows + templated
    res.stats["judge_unparsed"] = dict(rater.unparsed)
    res.stats["judge_errors"] = dict(rater.errors)
    res.stats["unmitigated"] = unmitigated
    res.stats["sample"] = {"rows": len(sample), "check_rows": len(check)}
    res.stats["checks"] = checks
    res.stats["candidates"] = {c.id: {"scans": sorted(c.scans), "stats_share": c.stats_share} for c in cands}
    return res


def noisy_removals(matching: int, total: int, target: float, accuracy: float) -> int:
    """Rows labelled YES to remove so that the expected TRUE share left is at most `target`, for a
    judge of this accuracy: a removed YES row has the pattern with probability precision =
    accuracy * true share / observed share, and the judge's misses stay behind, so removing just
    enough YES rows to bring the observed share to the target leaves the true share above it."""
    if total == 0 or matching == 0:
        return 0
    true = estimate_share(matching, total, accuracy).estimate
    precision = min(1.0, accuracy * true / (matching / total))
    if true <= target:
        return 0
    if precision <= target:
        return matching
    return min(matching, math.ceil((true - target) * total / (precision - target) - 1e-9))
