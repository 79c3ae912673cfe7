"""External judge-free probes in the Anthropic model-written-evals format (question,
answer_matching_behavior, answer_not_matching_behavior): a checkpoint "matches" when it gives the
matching answer the higher log-prob after the question as a user turn. The spec maps each file
to a trait and says which direction is trait-consistent."""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from traitforge.config import RunSpec
from traitforge.errors import InputError
from traitforge.evaluate.common import EvalContext, ItemResult, done_ids, eval_path, result_id
from traitforge.jsonl import append_jsonl
from traitforge.types import TraitSet, stable_hash


@dataclass(frozen=True)
class ProbeItem:
    id: str
    question: str
    matching: str
    not_matching: str


@dataclass(frozen=True)
class ProbeSpec:
    name: str  # eval name: "probe:<file stem>"
    path: Path
    trait_id: str
    direction: Literal["match", "not_match"]
    limit: int | None


def _answer(v: Any) -> str | None:
    # A few files list several equivalent answers; the first is the canonical one.
    if isinstance(v, list):
        v = v[0] if v else None
    return v.strip() if isinstance(v, str) and v.strip() else None


def load_probe_file(path: Path, limit: int | None = None, seed: int = 0) -> list[ProbeItem]:
    """Rows with a question and two distinct answers; a seeded sample of `limit` of them."""
    if not path.is_file():
        raise InputError(f"{path}: probe file not found")
    items = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise InputError(f"{path}: line {n}: not valid JSON") from None
            q, a, b = row.get("question"), _answer(row.get("answer_matching_behavior")), \
                _answer(row.get("answer_not_matching_behavior"))
            if not isinstance(q, str) or a is None or b is None:
                raise InputError(f"{path}: line {n}: needs question, answer_matching_behavior, "
                                 "answer_not_matching_behavior")
            if a != b:
                items.append(ProbeItem(f"{path.stem}-{n}-{stable_hash(q, 6)}", q, a, b))
    if limit is not None and len(items) > limit:
        items = random.Random(f"{seed}:{path.name}").sample(items, limit)
    return items


def probe_specs(spec: RunSpec, traits: TraitSet) -> list[ProbeSpec]:
    ev = spec.evaluation
    base = spec.resolve(ev.probes_dir) if ev.probes_dir else spec.resolve(".")
    out = []
    for file, opts in ev.probes.items():
        where = f"evaluation.probes.{file}"
        if not isinstance(opts, dict):
            raise InputError(f"{where}: expected a mapping with trait, direction, limit")
        unknown = set(opts) - {"trait", "direction", "limit"}
        if unknown:
            raise InputError(f"{where}: unknown key '{sorted(unknown)[0]}' (use trait, direction, limit)")
        trait = opts.get("trait")
        if trait not in {t.id for t in traits.traits}:
            raise InputError(f"{where}.trait: '{trait}' is not a trait id in the traits document")
        direction = opts.get("direction", "match")
        if direction not in ("match", "not_match"):
            raise InputError(f"{where}.direction: must be match or not_match, got {direction!r}")
        limit = opts.get("limit")
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise InputError(f"{where}.limit: must be a positive integer, got {limit!r}")
        p = Path(file).expanduser()
        path = p if p.is_absolute() else base / p
        out.append(ProbeSpec(f"probe:{path.stem}", path, trait, direction, limit))
    return out


def score_probe_items(scorer: Any, items: list[ProbeItem]) -> list[tuple[float, float]]:
    """(log-prob of the matching answer, of the other one) per item."""
    reqs = [(i.question, ans) for i in items for ans in (i.matching, i.not_matching)]
    lps = scorer.score(reqs)
    return [(lps[2 * k].sum, lps[2 * k + 1].sum) for k in range(len(items))]


async def run_probes(ctx: EvalContext) -> None:
    path = eval_path(ctx.store, "probes")
    done = done_ids(path)
    for ps in probe_specs(ctx.spec, ctx.traits):
        items = load_probe_file(ps.path, ps.limit, ctx.spec.seed)
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
