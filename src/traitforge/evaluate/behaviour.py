"""Does the checkpoint act on its traits? Each checkpoint answers the held-out prompts; the judge
grades every reply against the trait's rubric without knowing which checkpoint wrote it. The
judge-free form asks which of a trait-consistent and a trait-violating reply the checkpoint
itself finds more likely (per-token log-prob, so length does not decide)."""

from __future__ import annotations

import asyncio

from traitforge.evaluate.common import EvalContext, EvalItem, ItemResult, eval_path, render, result_id
from traitforge.evaluate.judge import Rubric, parse_rubric
from traitforge.jsonl import append_jsonl
from traitforge.steps import Unit, done_keys


async def judge_response(ctx: EvalContext, item: EvalItem, response: str) -> Rubric:
    """The judge grades one reply against the item's trait rubric; it sees the prompt and the
    reply only, never which model wrote it."""
    trait = ctx.traits.by_id(item.trait_id)
    reply = await ctx.judge.generate_one(
        render("behaviour_judge", trait=trait.describe(), prompt=item.prompt, response=response),
        temperature=0.0, max_tokens=ctx.ev.judge_max_tokens)
    return parse_rubric(reply)


async def behaviour_replies(ctx: EvalContext, items: list[EvalItem]) -> list[tuple[str, EvalItem, str]]:
    """(checkpoint, prompt, reply) for every evaluated checkpoint's replies not yet graded (the
    schedule calls this a checkpoint at a time before grading; the replies are cached)."""
    done = done_keys(eval_path(ctx.store, "behaviour"))
    responses: list[tuple[str, EvalItem, str]] = []
    for ck in ctx.checkpoints:
        target = ctx.target(ck)
        res = await ctx.step("behaviour replies", _units(ck, items),
                             lambda u: target.generate_one(u.data[1].prompt, temperature=0.0,
                                                           max_tokens=ctx.ev.max_tokens),
                             done=done, desc=f"behaviour replies: {ck}")
        responses += [(ck, u.data[1], t) for u, t in res.done()]
    return responses


def _units(ck: str, items: list[EvalItem]) -> list[Unit]:
    """One unit per usable item for checkpoint `ck`, keyed by its behaviour result id."""
    return [Unit(result_id("behaviour", ck, i.id), i.trait_id, (ck, i)) for i in items if i.dropped is None]


async def run_behaviour(ctx: EvalContext, items: list[EvalItem]) -> None:
    path = eval_path(ctx.store, "behaviour")
    responses = await behaviour_replies(ctx, items)

    async def grade(ck: str, item: EvalItem, response: str) -> ItemResult:
        r = await judge_response(ctx, item, response)
        return ItemResult(id=result_id("behaviour", ck, item.id), eval="behaviour", checkpoint=ck,
                          item_id=item.id, trait_id=item.trait_id, ood=item.ood, value=r.score, reason=r.reason,
                          detail={"passed": r.passed, "category": item.category, "prompt": item.prompt,
                                  "response": response})

    # Blind and shuffled: the judge prompt has no checkpoint name and the order mixes checkpoints.
    await ctx.step("behaviour", [Unit(result_id("behaviour", ck, i.id), i.trait_id, (ck, i, r))
                                 for ck, i, r in responses],
                   lambda u: grade(*u.data), out=path, shuffle="behaviour-judge", grade=True, desc="behaviour: judge")


async def run_contrastive(ctx: EvalContext, items: list[EvalItem]) -> None:
    path = eval_path(ctx.store, "contrastive")
    done = done_keys(path)
    usable = [i for i in items if i.dropped is None and i.consistent.strip() and i.violating.strip()]
    for ck in ctx.logprob_checkpoints():
        todo = [i for i in usable if result_id("contrastive", ck, i.id) not in done]
        if not todo:
            continue
        scorer = ctx.scorer(ck)
        reqs = [(i.prompt, text) for i in todo for text in (i.consistent, i.violating)]
        lps = await asyncio.to_thread(scorer.score, reqs)
        rows = []
        for n, i in enumerate(todo):
            good, bad = lps[2 * n], lps[2 * n + 1]
            margin = good.mean - bad.mean
            rows.append(ItemResult(id=result_id("contrastive", ck, i.id), eval="contrastive", checkpoint=ck,
                                   item_id=i.id, trait_id=i.trait_id, ood=i.ood, value=float(margin > 0),
                                   detail={"margin": round(margin, 5), "consistent_mean": round(good.mean, 5),
                                           "violating_mean": round(bad.mean, 5)}))
        append_jsonl(path, rows)
