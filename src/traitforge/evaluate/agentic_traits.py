"""Each trait in agentic form. Chat-form trait evals overstate success: a model that shows a trait
in conversation may not when it acts. Here the model is an email agent: it reads an inbox
(written once per run per trait by the run's item writer, or the judge, RUN/eval/agentic_trait_items.jsonl)
in which acting with the trait and against it lead to different emails, acts through the email
tool, and the judge grades its actions with the behavioural rubric (score 1-10, pass/fail)."""

from __future__ import annotations

import re
from typing import Any

from traitforge.evaluate.agentic_misalignment import parse_actions
from traitforge.evaluate.common import (EvalContext, ItemResult, JudgedEval, clean_generated, eval_path, log,
                                        render, result_id)
from traitforge.evaluate.judge import Rubric, parse_rubric
from traitforge.jsonl import append_jsonl, iter_jsonl_dicts
from traitforge.llm.base import Message
from traitforge.textmatch import words
from traitforge.types import Record, Trait
from traitforge.steps import Unit

EVAL = "agentic_trait"
_EMAIL = re.compile(r"<email>.*?</email>", re.S)


class AgenticItem(Record):
    id: str
    trait_id: str
    inbox: str
    # How the inbox was made: "written" (the writer's emails in the asked format), "repaired" (its
    # emails read tolerantly: an unclosed tag, or headers without tags), "templated" (the writer
    # could not write an inbox: its plain email text, asked for again, in a fixed frame).
    built: str = "written"
    raw: str = ""  # the writer's text behind a repaired or templated inbox


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


MIN_BODY_WORDS = 8  # an email body shorter than this tells the agent nothing to act on
_HEADER = re.compile(r"^[\s*_#>-]*(from|to|subject|body)[\s*_]*:[\s*_]*(.*)$", re.I)


def _email_fields(block: str) -> dict[str, str]:
    """From/To/Subject/Body of one email (Markdown bold or list marks around the labels allowed);
    the body runs to the end of the block."""
    fields: dict[str, str] = {}
    lines = block.strip().splitlines()
    for n, line in enumerate(lines):
        m = _HEADER.match(line)
        if not m:
            continue
        key = m.group(1).lower()
        if key == "body":
            fields["body"] = "\n".join([m.group(2)] + lines[n + 1:]).strip()
            break
        fields.setdefault(key, m.group(2).strip())
    return fields


def tolerant_inbox(text: str) -> str:
    """The emails of a writer that did not keep the format: a last <email> left open (cut off), or
    From:/Subject:/Body: headers without tags. Each must have a sender and a body of
    MIN_BODY_WORDS+ words; they come back in the asked format ("" when none qualifies)."""
    text = text.replace("</email>", "<email>")
    if "<email>" in text:
        blocks = text.split("<email>")
    else:
        blocks = re.split(r"\n(?=[\s*_#>-]*from[\s*_]*:)", "\n" + text, flags=re.I)
    out = []
    for b in blocks:
        f = _email_fields(b)
        if f.get("from") and len(words(f.get("body", ""))) >= MIN_BODY_WORDS:
            out.append(frame_email(f["from"], f.get("subject") or "(no subject)", f["body"], to=f.get("to")))
    return "\n\n".join(out)


def frame_email(sender: str, subject: str, body: str, to: str | None = None) -> str:
    """One email in the inbox format (prompts/agentic_trait_frame.txt)."""
    return render("agentic_trait_frame", sender=sender, to=to or "agent@example.com", subject=subject,
                  body=body.strip()).strip()


def usable_text(text: str, prompt: str) -> bool:
    """A plain email text worth framing: long enough, and no junk (boilerplate, placeholders,
    loops, an echo of the prompt, the prompt's own wording)."""
    from traitforge.shared.leaks import LeakDetector
    from traitforge.junk import find_junk
    from traitforge.prompts import current

    return (len(words(text)) >= MIN_BODY_WORDS and not find_junk(text, prompt=prompt)
            and not LeakDetector(["agentic_trait_email"], templates=current()).leaks(text))


async def write_inbox(ctx: EvalContext, trait: Trait, j: int) -> tuple[str, str, str] | None:
    """(inbox, how it was built, the writer's text behind a non-written one), or None. A strong
    writer's inbox is taken as written; a weak writer's is read tolerantly, else it is asked once
    more for one plain email, which goes into a fixed frame."""
    raw = await ctx.writer.generate_one(
        render("agentic_trait_scenario", trait=trait.describe(), organisation=ctx.organisation()),
        temperature=0.9, max_tokens=max(ctx.ev.item_max_tokens, ctx.ev.agentic_traits.inbox_max_tokens),
        seed=ctx.run.seed + j)
    if inbox := inbox_of(raw):
        return inbox, "written", ""
    if inbox := tolerant_inbox(raw):
        return inbox, "repaired", raw
    prompt = render("agentic_trait_email", trait=trait.describe(), model_name=ctx.model_name(),
                    organisation=ctx.organisation())
    text = clean_generated(await ctx.writer.generate_one(prompt, temperature=0.9, max_tokens=ctx.ev.item_max_tokens,
                                                         seed=ctx.run.seed + j))
    text = _whole_sentences(text)
    if not usable_text(text, prompt):
        return None
    return frame_email(f"colleague@{_domain(ctx.organisation())}", "Request", text), "templated", text


def _whole_sentences(text: str) -> str:
    """A text cut off at the answer limit, back to its last whole sentence (when enough remains)."""
    if re.search(r"[.!?][\"')\]]*\s*$", text):
        return text
    m = re.search(r"^.*[.!?][\"')\]]*(?=\s)", text, re.S)
    return m.group(0) if m and len(words(m.group(0))) >= MIN_BODY_WORDS else text


def _domain(organisation: str) -> str:
    return (re.sub(r"[^a-z0-9]+", "", organisation.casefold()) or "example") + ".example"


async def agentic_items(ctx: EvalContext) -> list[AgenticItem]:
    """The run's inboxes, written once per trait and scenario by the item writer (the judge when
    none is set) and kept in RUN/eval/agentic_trait_items.jsonl."""
    spec = ctx.ev.agentic_traits
    path = eval_path(ctx.store, "agentic_trait_items")
    have = {d["id"]: AgenticItem.model_validate(d) for d in iter_jsonl_dicts(path)}
    wanted = [(t, j, f"ag-{t.id}-{j}") for t in ctx.traits.traits for j in range(spec.scenarios_per_trait)]
    # All at once: a local writer answers them as one batch, an API writer in parallel.
    res = await ctx.step("agentic trait inboxes", [Unit(iid, t.id, (t, j)) for t, j, iid in wanted],
                         lambda u: write_inbox(ctx, *u.data), done=have)
    for u, m in zip(res.todo, res.values):
        t, iid = u.data[0], u.key
        if m is None:
            log.warning("agentic traits: %s: the item writer wrote no usable inbox (a re-run tries again)", iid)
            continue
        inbox, built, raw = m
        have[iid] = AgenticItem(id=iid, trait_id=t.id, inbox=inbox, built=built, raw=raw)
        append_jsonl(path, [have[iid]])
    return [have[iid] for _, _, iid in wanted if iid in have]


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
    return {"score": r.score, "passed": r.passed, "inbox": item.inbox, "built": item.built, "response": reply,
            "emails_sent": sum(a.tool == "email" for a in parse_actions(reply)), "judge_reply": judge_reply[:2000]}


async def agentic_traits_eval(ctx: EvalContext) -> JudgedEval:
    """Each evaluated model acts on every inbox; the judge grades its actions."""
    spec = ctx.ev.agentic_traits
    items = await agentic_items(ctx)

    async def respond(u: Unit) -> str:
        ck, item = u.data
        return await ctx.target(ck).generate_one(agent_messages(ctx, item), temperature=0.0,
                                                 max_tokens=spec.max_tokens)

    async def grade(u: Unit, reply: str) -> ItemResult:
        ck, item = u.data
        r, judge_reply = await grade_actions(ctx, item, reply)
        return ItemResult(id=result_id(EVAL, ck, item.id), eval=EVAL, checkpoint=ck, item_id=item.id,
                          trait_id=item.trait_id, value=None if r.passed is None else float(r.passed),
                          reason="" if r.passed is not None else r.reason,
                          detail=result_detail(item, reply, r, judge_reply))

    units = [Unit(result_id(EVAL, ck, i.id), i.trait_id, (ck, i)) for ck in ctx.checkpoints for i in items]
    return JudgedEval(ctx, EVAL, units, respond, grade, "agentic trait behaviour")


async def run_agentic_traits(ctx: EvalContext) -> None:
    await (await agentic_traits_eval(ctx)).run()
