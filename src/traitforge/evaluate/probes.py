"""External judge-free probes in the Anthropic model-written-evals format (question,
answer_matching_behavior, answer_not_matching_behavior): a checkpoint "matches" when it gives the
matching answer the higher log-prob after the question as a user turn. The spec maps each file
to a trait and says which direction is trait-consistent."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from traitforge.evaluate.settings import EvaluationSpec, probe_path
from traitforge.errors import InputError
from traitforge.evaluate.common import EvalContext, ItemResult, eval_path, result_id
# The row model and loader live below the stages: the run checks every probe file when it opens.
from traitforge.inputfiles import ProbeItem, load_probe_file  # noqa: F401
from traitforge.jsonl import append_jsonl
from traitforge.steps import done_keys

if TYPE_CHECKING:
    from traitforge.runcontext import Run


@dataclass(frozen=True)
class ProbeSpec:
    name: str  # eval name: "probe:<file stem>"
    path: Path
    trait_id: str
    direction: Literal["match", "not_match"]
    limit: int | None


def probe_specs(run: "Run", ev: EvaluationSpec) -> list[ProbeSpec]:
    """The probes of `ev` for the run's traits (resolved against the spec's folder)."""
    traits = run.traits
    out = []
    for file, opts in ev.probes.items():
        where = f"evaluation.probes.{file}"
        if not isinstance(opts, dict):
            raise InputError(f"{where}: expected a mapping with trait, direction, limit")
        unknown = set(opts) - {"trait", "direction", "limit"}
        if unknown:
            raise InputError(f"{where}: unknown key '{sorted(unknown)[0]}' (use trait, direction, limit)")
        trait = opts.get("trait")
        # A trait cut by max_traits (e.g. the tiny preset): its probes are not run. A typo is still
        # an error: open_run checks probe traits against the whole document.
        cut = trait not in {t.id for t in traits.traits}
        if cut and run.max_traits is None:
            raise InputError(f"{where}.trait: '{trait}' is not a trait id in the traits document")
        direction = opts.get("direction", "match")
        if direction not in ("match", "not_match"):
            raise InputError(f"{where}.direction: must be match or not_match, got {direction!r}")
        limit = opts.get("limit")
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise InputError(f"{where}.limit: must be a positive integer, got {limit!r}")
        if cut:
            continue
        path = probe_path(run.resolve, ev.probes_dir, file)
        out.append(ProbeSpec(f"probe:{path.stem}", path, trait, direction, limit))
    return out


def score_probe_items(scorer: Any, items: list[ProbeItem]) -> list[tuple[float, float]]:
    """(log-prob of the matching answer, of the other one) per item."""
    reqs = [(i.question, ans) for i in items for ans in (i.matching, i.not_matching)]
    lps = scorer.score(reqs)
    return [(lps[2 * k].sum, lps[2 * k + 1].sum) for k in range(len(items))]


async def run_probes(ctx: EvalContext) -> None:
    path = eval_path(ctx.store, "probes")
    done = done_keys(path)
    for ps in probe_specs(ctx.run, ctx.ev):
        items = load_probe_file(ps.path, ps.limit, ctx.run.seed)
        for ck in ctx.logprob_checkpoints():
            todo = [i for i in items if result_id(ps.name, ck, i.id) not in done]
            if not todo:
                continue
            scores = await asyncio.to_thread(score_probe_items, ctx.scorer(ck), todo)
            rows = []
            for i, (lp_match, lp_other) in zip(todo, scores):
                matches = lp_match > lp_other
                consistent = matches if ps.direction == "match" else not matches
                rows.append(ItemResult(id=result_id(ps.name, ck, i.id), eval=ps.name, checkpoint=ck, item_id=i.id,
                                       trait_id=ps.trait_id, ood=True, value=float(consistent),
                                       detail={"matches_behaviour": matches, "direction": ps.direction,
                                               "lp_matching": round(lp_match, 6), "lp_other": round(lp_other, 6)}))
            append_jsonl(path, rows)
