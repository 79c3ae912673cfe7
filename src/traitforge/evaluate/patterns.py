"""The pattern loop, closed: the patterns curation measured in the chat data (its classifiers,
RUN/curation/pattern_classifiers.jsonl) measured again in each checkpoint's own replies to the
behavioural eval prompts, with the same classifier (exact rule, or the judge's YES/PARTLY/NO),
so the report shows, per pattern, its share in the data before and after curation beside its
share in base and in each trained checkpoint (Wilson 95% intervals). Does a pattern in the data
show up in the model trained on it?

Rows: RUN/eval/patterns.jsonl (one per checkpoint, pattern and reply; value 1 = clearly shows it);
summary: results.json "model_patterns". Measured: the flagged chat patterns, then the known
offenders, at most MAX_PATTERNS (judge patterns cost one call per reply each)."""

from __future__ import annotations

from typing import Any

from traitforge.shared.pattern_rater import Rater, candidate_from_spec
from traitforge.evaluate.common import EvalContext, ItemResult, eval_path, load_results, result_id
from traitforge.shared.stats import wilson
from traitforge.jsonl import append_jsonl, iter_jsonl_dicts
from traitforge.runstore import RunStore
from traitforge.types import Chat, ChatMessage

MAX_PATTERNS = 8
CLASSIFIERS = ("curation", "pattern_classifiers.jsonl")


def chosen_classifiers(store: RunStore) -> list[dict[str, Any]]:
    """The chat patterns to measure in the checkpoints: flagged first (the data's problems), then
    the known offenders."""
    specs = [s for s in iter_jsonl_dicts(store.root.joinpath(*CLASSIFIERS)) if s.get("dataset") == "chats"]
    flagged = [s for s in specs if s.get("flagged")]
    known = [s for s in specs if not s.get("flagged") and s.get("source") == "known"]
    return (flagged + known)[:MAX_PATTERNS]


def _as_chat(r: ItemResult) -> Chat:
    return Chat(id=r.id, trait_ids=[r.trait_id] if r.trait_id else [], messages=[
        ChatMessage(role="user", content=str(r.detail.get("prompt", ""))),
        ChatMessage(role="assistant", content=str(r.detail.get("response", "")))])


async def run_patterns(ctx: EvalContext) -> None:
    """Label every checkpoint's behaviour replies for each chosen pattern (resumable by id)."""
    specs = chosen_classifiers(ctx.store)
    replies = [r for r in load_results(eval_path(ctx.store, "behaviour"))
               if r.checkpoint in ctx.checkpoints and r.detail.get("response")]
    if not specs or not replies:
        return
    path = eval_path(ctx.store, "patterns")
    done = {str(d.get("id")) for d in iter_jsonl_dicts(path)}
    # The judge's labels by provider batches first in batch mode (evaluation.batch), the estimate printed.
    rater = Rater(ctx.judge, seed=ctx.run.seed, prefetch=ctx.prefetch(), step="evaluate.patterns")
    cands = [candidate_from_spec(spec) for spec in specs]
    todo = {c.id: [r for r in replies if result_id(f"pattern:{c.id}", r.checkpoint, r.item_id) not in done]
            for c in cands}
    await rater.label_all([(c, [_as_chat(r) for r in todo[c.id]]) for c in cands])  # every pattern in one step
    for cand in cands:
        ev = f"pattern:{cand.id}"
        if not todo[cand.id]:
            continue
        labels = await rater.labels(cand, [_as_chat(r) for r in todo[cand.id]])  # from the memo
        append_jsonl(path, [ItemResult(id=result_id(ev, r.checkpoint, r.item_id), eval=ev, checkpoint=r.checkpoint,
                                       item_id=r.item_id, trait_id=r.trait_id, ood=r.ood,
                                       value=None if labels[r.id] is None else float(labels[r.id] == 1.0),
                                       reason="" if labels[r.id] is not None else "judge reply unparseable",
                                       detail={"pattern_id": cand.id, "label": labels[r.id]}) for r in todo[cand.id]])


def pattern_summary(store: RunStore, checkpoints: list[str]) -> list[dict[str, Any]]:
    """Per measured pattern: the data's share (estimate with CI before curation, strict share after)
    and each checkpoint's share of replies that clearly show it, with Wilson 95% intervals."""
    rows = load_results(eval_path(store, "patterns"))
    findings = {(f.get("dataset"), f.get("pattern_id")): f
                for f in iter_jsonl_dicts(store.root / "curation" / "patterns.jsonl")}
    out = []
    for spec in chosen_classifiers(store):
        ev = f"pattern:{spec['pattern_id']}"
        f = findings.get(("chats", spec["pattern_id"]), {})
        per_ck = {}
        for ck in checkpoints:
            vals = [r.value for r in rows if r.eval == ev and r.checkpoint == ck and r.value is not None]
            if vals:
                per_ck[ck] = wilson(sum(vals), len(vals)).to_dict()
        if not per_ck:
            continue
        out.append({"pattern_id": spec["pattern_id"], "description": spec["description"], "kind": spec["kind"],
                    "flagged": bool(spec.get("flagged")),
                    "data": {"before": f.get("share_estimate", f.get("share_strict")), "ci_low": f.get("ci_low"),
                             "ci_high": f.get("ci_high"), "after": f.get("share_after")},
                    "checkpoints": per_ck})
    return out
