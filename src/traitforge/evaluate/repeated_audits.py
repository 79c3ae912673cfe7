"""Repeated audits: the multi-turn auditor (the same loop and judge as the multi-turn pressure
eval) runs several rollouts of each seed scenario. Seeds are written per trait by the auditor
model once per run (RUN/eval/audit_seeds.jsonl) and read from the user's seed files. Reported:
violation rate and first-violation turn with intervals, and audit consistency (how often two
rollouts of one seed agree on whether the trait held)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import yaml

from traitforge.errors import InputError
from traitforge.evaluate.audit import Responder
from traitforge.evaluate.common import (EvalContext, EvalItem, ItemResult, JudgedEval, clean_generated, eval_path,
                                        render, result_id)
from traitforge.evaluate.multiturn import converse, grade_transcript, summarise
from traitforge.jsonl import append_jsonl, iter_jsonl_dicts
from traitforge.llm.base import Message
from traitforge.types import Record, stable_hash
from traitforge.steps import Unit

EVAL = "audit"


class AuditSeed(Record):
    id: str
    trait_id: str
    seed: str
    source: str = "generated"  # or the seed file's name


def read_seed_file(path: Path, trait_ids: list[str]) -> list[AuditSeed]:
    """A YAML list or JSONL of {trait: ID, seed: "scenario"} rows."""
    if not path.is_file():
        raise InputError(f"evaluation.audits.seed_files: {path} not found")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".jsonl":
            rows = [yaml.safe_load(ln) for ln in text.splitlines() if ln.strip()]
        else:
            rows = yaml.safe_load(text) or []
    except yaml.YAMLError as e:
        raise InputError(f"{path}: not YAML/JSONL: {str(e).splitlines()[0]}") from None
    if not isinstance(rows, list):
        raise InputError(f"{path}: expected a list of {{trait: ID, seed: TEXT}} rows")
    out = []
    for n, row in enumerate(rows, 1):
        if not isinstance(row, dict) or not isinstance(row.get("seed"), str) or not row["seed"].strip():
            raise InputError(f"{path}: row {n}: needs 'trait' and a non-empty 'seed'")
        if row.get("trait") not in trait_ids:
            raise InputError(f"{path}: row {n}: trait {row.get('trait')!r} is not one of {', '.join(trait_ids)}")
        seed = row["seed"].strip()
        out.append(AuditSeed(id=f"seed-{row['trait']}-{stable_hash(seed)[:8]}", trait_id=row["trait"], seed=seed,
                             source=path.name))
    return out


async def audit_seeds(ctx: EvalContext) -> list[AuditSeed]:
    """Generated seeds (kept in RUN/eval/audit_seeds.jsonl, written once) plus the seed files'."""
    spec = ctx.ev.audits
    path = eval_path(ctx.store, "audit_seeds")
    have = {d["id"]: AuditSeed.model_validate(d) for d in iter_jsonl_dicts(path)}
    out: list[AuditSeed] = []
    for t in ctx.traits.traits:
        earlier: list[str] = []
        for j in range(spec.seeds_per_trait):
            sid = f"seed-{t.id}-{j}"
            if sid not in have:
                text = clean_generated(await ctx.auditor.generate_one(
                    render("audit_seed", trait=t.describe(), earlier="\n".join(f"- {e}" for e in earlier) or "(none)"),
                    temperature=0.9, max_tokens=ctx.ev.item_max_tokens, seed=ctx.run.seed + j))
                if not text:
                    continue
                have[sid] = AuditSeed(id=sid, trait_id=t.id, seed=text)
                append_jsonl(path, [have[sid]])
            earlier.append(have[sid].seed)
            out.append(have[sid])
    for f in spec.seed_files:
        out += read_seed_file(ctx.run.resolve(f), [t.id for t in ctx.traits.traits])
    return out


def agreement(outcomes: list[float]) -> float | None:
    """Share of pairs of rollouts that agree (both held or both violated); None under two rollouts."""
    pairs = list(itertools.combinations(outcomes, 2))
    return sum(a == b for a, b in pairs) / len(pairs) if pairs else None


def seed_item(seed: AuditSeed) -> EvalItem:
    """The seed as a multi-turn item: the auditor presses with the seed scenario as its tactic."""
    return EvalItem(id=seed.id, kind="multiturn", trait_id=seed.trait_id, prompt=seed.seed)


async def audit_rollout(ctx: EvalContext, target: Responder, seed: AuditSeed, rollout: int
                        ) -> tuple[list[Message], str]:
    """One rollout of a seed through the one auditor loop; the messages and why it stopped early."""
    return await converse(ctx, target, seed_item(seed), rollout=rollout, turns=ctx.ev.audits.turns)


async def grade_rollout(ctx: EvalContext, seed: AuditSeed, rollout: int, messages: list[Message], stopped: str
                        ) -> tuple[float | None, str, dict[str, Any]]:
    """The judge's turn-by-turn verdicts on one rollout: (survived as 1/0, None if ungraded;
    why unscored; ItemResult.detail, which the report's audit section reads)."""
    verdicts, judge_reply = await grade_transcript(ctx, seed_item(seed), messages)
    s = summarise(verdicts)
    reason = stopped or ("" if s["survived"] is not None else "a turn could not be graded")
    detail = {"seed_id": seed.id, "seed": seed.seed, "source": seed.source, "rollout": rollout,
              "turns": len(messages) // 2, "verdicts": verdicts, **s,
              "messages": [m.to_dict() for m in messages], "judge_reply": judge_reply[:2000]}
    return (None if s["survived"] is None else float(s["survived"])), reason, detail


async def repeated_audits_eval(ctx: EvalContext) -> JudgedEval:
    """Each evaluated model is audited in every rollout of every seed; the judge grades each transcript."""
    spec = ctx.ev.audits
    seeds = await audit_seeds(ctx)

    async def respond(u: Unit) -> tuple[list[Message], str]:
        ck, seed, rollout = u.data
        return await audit_rollout(ctx, ctx.target(ck), seed, rollout)

    async def grade(u: Unit, transcript: tuple[list[Message], str]) -> ItemResult:
        ck, seed, rollout = u.data
        value, reason, detail = await grade_rollout(ctx, seed, rollout, *transcript)
        return ItemResult(id=result_id(EVAL, ck, f"{seed.id}#{rollout}"), eval=EVAL, checkpoint=ck,
                          item_id=f"{seed.id}#{rollout}", trait_id=seed.trait_id, value=value, reason=reason,
                          detail=detail)

    units = [Unit(result_id(EVAL, ck, f"{s.id}#{r}"), s.trait_id, (ck, s, r))
             for ck in ctx.checkpoints for s in seeds for r in range(spec.rollouts)]
    return JudgedEval(ctx, EVAL, units, respond, grade, "repeated audits")


async def run_repeated_audits(ctx: EvalContext) -> None:
    await (await repeated_audits_eval(ctx)).run()
