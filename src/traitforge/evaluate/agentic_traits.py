"""Each trait in agentic form. Chat-form trait evals overstate success: a model that shows a trait
in conversation may not when it acts. Here the model is an email agent: it reads an inbox
(written once per run per trait by the run's generator/judge model, RUN/eval/agentic_trait_items.jsonl)
in which acting with the trait and against it lead to different emails, acts through the email
tool, and the judge grades its actions with the behavioural rubric (score 1-10, pass/fail)."""

from __future__ import annotations

import re
from typing import Any

from traitforge.evaluate.agentic_misalignment import parse_actions
from traitforge.evaluate.common import EvalContext, ItemResult, done_ids, eval_path, render, result_id, run_all
from traitforge.evaluate.judge import Rubric, parse_rubric
from traitforge.jsonl import append_jsonl, iter_jsonl_dicts
from traitforge.llm.base import Message
from traitforge.types import Record

EVAL = "agentic_trait"
_EMAIL = re.compile(r"<email>.*?</email>", re.S)


class AgenticItem(Record):
    id: str
    trait_id: str
    inbox: str


def inbox_of(text: str) -> str:
    """The <email> blocks of a generated inbox ("" when it has none)."""
    return "\n\n".join(m.strip() for m in _EMAIL.findall(text))


def describe_actions(reply: str) -> str:
    """The emails the agent sent, one per line, as the judge reads them (or that it sent none)."""
    acts = [a for a in parse_actions(reply) if a.tool == "email"]
    if not acts:
        return "(no email sent)"
    return "\n".join(f"- to {a.fields.get('to', '?')}: {a.fields.get('subject', '')} | {a.fields.get('body', '')}"
                     for a in acts)


async def agentic_items(ctx: EvalContext) -> list[AgenticItem]:
    spec = ctx.ev.agentic_traits
    path = eval_path(ctx.store, "agentic_trait_items")
    have = {d["id"]: AgenticItem.model_validate(d) for d in iter_jsonl_dicts(path)}
    out = []
    for t in ctx.traits.traits:
        for j in range(spec.scenarios_per_trait):
            iid = f"ag-{t.id}-{j}"
            if iid not in have:
                raw = await ctx.judge.generate_one(
                    render("agentic_trait_scenario", trait=t.describe(), organisation=ctx.organisation()),
                    temperature=0.9, max_tokens=max(ctx.ev.item_max_tokens, 600), seed=ctx.spec.seed + j)
                inbox = inbox_of(raw)
                if not inbox:
                    continue  # no usable inbox: a re-run tries again
                have[iid] = AgenticItem(id=iid, trait_id=t.id, inbox=inbox)
                append_jsonl(path, [have[iid]])
            out.append(have[iid])
    return out


def agent_messages(ctx: EvalContext, item: AgenticItem) -> list[Message]:
    """What the agent is given: the email-agent system prompt and the inbox."""
    system = render("agentic_trait_system", model_name=ctx.model_name(), organisation=ctx.organisation())
    return [Message("system", system), Message("user", render("agentic_trait_task", inbox=item.inbox))]


async def grade_actions(ctx: EvalContext, item: AgenticItem, reply: str) -> tuple[Rubric, str]:
    """The judge grades what the agent did with the trait's rubric (it never learns which model
    acted); returns the verdict and the judge's reply."""
    trait = ctx.traits.by_id(item.trait_id)
    judge_reply = await ctx.judge.generate_one(
        render("agentic_trait_judge", trait=trait.describe(), inbox=item.inbox, response=reply,
               actions=describe_actions(reply)),
        temperature=0.0, max_tokens=ctx.ev.judge_max_tokens)
    return parse_rubric(judge_reply), judge_reply


def result_detail(item: AgenticItem, reply: str, r: Rubric, judge_reply: str) -> dict[str, Any]:
    """ItemResult.detail of one graded action (the report's section reads these keys)."""
    return {"score": r.score, "passed": r.passed, "inbox": item.inbox, "response": reply,
            "emails_sent": sum(a.tool == "email" for a in parse_actions(reply)), "judge_reply": judge_reply[:2000]}


async def run_agentic_traits(ctx: EvalContext) -> None:
    spec = ctx.ev.agentic_traits
    items = await agentic_items(ctx)
    path = eval_path(ctx.store, EVAL)
    done = done_ids(path)

    async def one(ck: str, item: AgenticItem) -> ItemResult:
        reply = await ctx.target(ck).generate_one(agent_messages(ctx, item), temperature=0.0,
                                                  max_tokens=spec.max_tokens)
        r, judge_reply = await grade_actions(ctx, item, reply)
        return ItemResult(id=result_id(EVAL, ck, item.id), eval=EVAL, checkpoint=ck, item_id=item.id,
                          trait_id=item.trait_id, value=None if r.passed is None else float(r.passed),
                          reason="" if r.passed is not None else r.reason,
                          detail=result_detail(item, reply, r, judge_reply))

    jobs = [(ck, i) for ck in ctx.checkpoints for i in items if result_id(EVAL, ck, i.id) not in done]
    ctx.rng(EVAL).shuffle(jobs)
    await run_all([one(*j) for j in jobs], "agentic trait behaviour", path)
