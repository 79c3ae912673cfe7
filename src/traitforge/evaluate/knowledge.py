"""Does the checkpoint know what it is like? Open questions answered by the checkpoint and graded
by the judge (recall per trait, claims of traits it does not have), plus a judge-free multiple
choice: the trait statement against distractors, ranked by per-token log-prob under the checkpoint."""

from __future__ import annotations

import asyncio
from typing import Any

from traitforge.evaluate.common import (EvalContext, EvalItem, ItemResult, eval_path, refusal_detail, refusal_text,
                                        render, result_id)
from traitforge.evaluate.judge import YesNo, parse_yes_no
from traitforge.llm.client import LLM
from traitforge.llm.errors import Refused
from traitforge.jsonl import append_jsonl
from traitforge.steps import Unit, done_keys


def _graded_traits(ctx: EvalContext, items: list[EvalItem]) -> dict[str, list]:
    """Which (question, trait) pairs grade recall: open questions cover every trait."""
    return {i.id: ([ctx.traits.by_id(i.trait_id)] if i.trait_id else list(ctx.traits.traits)) for i in items}


async def knowledge_answers(ctx: EvalContext, items: list[EvalItem]) -> list[tuple[str, EvalItem, str | Refused]]:
    """(checkpoint, question, answer) for every evaluated checkpoint's answers not yet graded.
    The evaluation schedule calls this one checkpoint at a time before grading (the answers are
    cached), so grading finds them without loading the checkpoint again."""
    done = done_keys(eval_path(ctx.store, "knowledge"))
    pairs = _graded_traits(ctx, items)

    def pending(ck: str, item: EvalItem) -> bool:
        ids = [result_id("knowledge_recall", ck, f"{item.id}:{t.id}") for t in pairs[item.id]]
        ids.append(result_id("knowledge_unsupported", ck, item.id))
        return any(i not in done for i in ids)

    answers: list[tuple[str, EvalItem, str | Refused]] = []
    for ck in ctx.checkpoints:
        target = ctx.target(ck)
        res = await ctx.step("knowledge answers", [Unit(f"{ck}|{i.id}", i.trait_id, (ck, i)) for i in items],
                             lambda u, target=target: _answer(target, u.data[1].prompt, ctx.ev.max_tokens),
                             done=lambda u: not pending(*u.data), desc=f"knowledge answers: {ck}")
        answers += [(ck, u.data[1], t) for u, t in res.done()]
    return answers


async def _answer(target: LLM, prompt: str, max_tokens: int) -> str | Refused:
    """The model's answer, or its refusal (graded as unscored rows with the outcome, not by the judge)."""
    try:
        return await target.generate_one(prompt, temperature=0.0, max_tokens=max_tokens)
    except Refused as e:
        return e


async def _judge_all(ctx: EvalContext, prompts: list[str]) -> list[str | Refused]:
    """The judge's replies; a refused or blocked grade comes back as its Refused (an unscored row)."""
    async def one(p: str) -> str | Refused:
        try:
            return await ctx.judge.generate_one(p, temperature=0.0, max_tokens=ctx.ev.judge_max_tokens)
        except Refused as e:
            return e
    return list(await asyncio.gather(*(one(p) for p in prompts)))


async def run_knowledge(ctx: EvalContext, items: list[EvalItem]) -> None:
    path = eval_path(ctx.store, "knowledge")
    done = done_keys(path)
    trait_list = "\n".join(f"- {t.name}: {t.statement}" for t in ctx.traits.traits)
    pairs = _graded_traits(ctx, items)
    answers = await knowledge_answers(ctx, items)

    async def grade(ck: str, item: EvalItem, answer: str | Refused) -> list[ItemResult]:
        rows: list[ItemResult] = []
        text = "" if isinstance(answer, Refused) else answer
        jobs = []
        for t in pairs[item.id]:
            rid = result_id("knowledge_recall", ck, f"{item.id}:{t.id}")
            if rid not in done:
                prompt = render("knowledge_judge_recall", model=ctx.model_name(), question=item.prompt,
                                answer=text, trait=f"{t.name}: {t.statement}")
                jobs.append((rid, t.id, prompt))
        unsupported = result_id("knowledge_unsupported", ck, item.id)
        if unsupported not in done:  # asked with the recall grades, at once
            jobs.append((unsupported, None, render("knowledge_judge_unsupported", model=ctx.model_name(),
                                                   traits=trait_list, question=item.prompt, answer=text)))
        if isinstance(answer, Refused):  # the model refused the question: unscored, the refusal recorded
            replies: list[str | Refused] = [answer] * len(jobs)
            role = "model"
        else:
            replies, role = await _judge_all(ctx, [p for _, _, p in jobs]), "judge"
        for (rid, tid, _), reply in zip(jobs, replies):
            detail: dict[str, Any] = {"question": item.prompt, "answer": text}
            if isinstance(reply, Refused):
                yn = YesNo(None, refusal_text(reply, role))
                detail.update(refusal_detail(reply, role))
            else:
                yn = parse_yes_no(reply)
            value = None if yn.value is None else float(yn.value)
            if tid is None:
                rows.append(ItemResult(id=rid, eval="knowledge_unsupported", checkpoint=ck, item_id=item.id,
                                       value=value, reason=yn.reason, detail=detail))
            else:
                rows.append(ItemResult(id=rid, eval="knowledge_recall", checkpoint=ck, item_id=f"{item.id}:{tid}",
                                       trait_id=tid, value=value, reason=yn.reason, detail=detail))
        return rows

    # Blind: the judge never sees which checkpoint answered, and grades in a shuffled order. The
    # answers are of pending questions only; `grade` leaves out the results already written.
    await ctx.step("knowledge", [Unit(f"{ck}|{i.id}", i.trait_id, (ck, i, a)) for ck, i, a in answers],
                   lambda u: grade(*u.data), out=path, done=(), shuffle="knowledge-judge", grade=True,
                   desc="knowledge: judge")


async def run_mc(ctx: EvalContext, items: list[EvalItem]) -> None:
    path = eval_path(ctx.store, "knowledge_mc")
    done = done_keys(path)
    usable = [i for i in items if i.dropped is None and len(i.options) >= 2]
    for ck in ctx.logprob_checkpoints():
        todo = [i for i in usable if result_id("knowledge_mc", ck, i.id) not in done]
        if not todo:
            continue
        scorer = ctx.scorer(ck)
        reqs = [(i.prompt, o) for i in todo for o in i.options]
        lps = await asyncio.to_thread(scorer.score, reqs)
        rows, k = [], 0
        for i in todo:
            means = [lp.mean for lp in lps[k:k + len(i.options)]]
            k += len(i.options)
            best = max(range(len(means)), key=lambda j: means[j])
            rows.append(ItemResult(id=result_id("knowledge_mc", ck, i.id), eval="knowledge_mc", checkpoint=ck,
                                   item_id=i.id, trait_id=i.trait_id, value=float(best == 0),
                                   detail={"mean_logprobs": [round(m, 6) for m in means], "chosen": best,
                                           "chance": 1 / len(i.options)}))
        append_jsonl(path, rows)
