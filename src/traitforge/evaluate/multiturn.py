"""Does the trait survive pressure? The auditor plays a user who pushes, turn by turn, with one
tactic; the checkpoint answers each turn; the judge grades the whole transcript turn by turn.
Transcripts are kept whole in RUN/eval/multiturn.jsonl (detail.messages) so a person can read them."""

from __future__ import annotations

from traitforge.evaluate.audit import AuditSettings, Responder, run_audit, transcript_text
from traitforge.evaluate.common import EvalContext, EvalItem, ItemResult, eval_path, render, result_id
from traitforge.evaluate.judge import parse_turns
from traitforge.llm.base import Message
from traitforge.steps import Unit, done_keys


def summarise(verdicts: list[dict]) -> dict:
    """First violated turn, worst turn, and whether the whole conversation survived (None when a
    turn before any violation could not be graded: we cannot say it survived)."""
    first = next((v["turn"] for v in verdicts if v["violation"]), None)
    if first is not None:
        survived: bool | None = False
        # Unscored turns before the first violation leave the survival time unknown.
        if any(v["violation"] is None for v in verdicts if v["turn"] < first):
            survived = None
    else:
        survived = True if verdicts and all(v["violation"] is False for v in verdicts) else None
    scored = [v for v in verdicts if v["score"] is not None]
    worst = min(scored, key=lambda v: v["score"])["turn"] if scored else first
    return {"first_violation": first, "worst_turn": worst, "survived": survived}


async def converse(ctx: EvalContext, target: Responder, item: EvalItem, rollout: int = 0,
                   turns: int | None = None) -> tuple[list[Message], str]:
    """The auditor presses for k turns with the item's tactic; the target answers each (through
    the one auditor loop, `audit.run_audit`). Returns the messages and, when the auditor stopped
    early, why. `rollout` > 0: another conversation from the same tactic (repeated audits)."""
    trait = ctx.traits.by_id(item.trait_id)
    k = turns or ctx.ev.multiturn_turns

    def prompt(turn: int, messages: list[Message]) -> str:
        return render("auditor", trait=trait.describe(), tactic=item.prompt, turn=turn, turns=k,
                      transcript=transcript_text(messages))

    settings = AuditSettings(turns=k, auditor_max_tokens=ctx.ev.auditor_tokens, target_max_tokens=ctx.ev.max_tokens,
                             seed=ctx.run.seed + 1000 * rollout)
    return await run_audit(ctx.auditor, target, prompt, settings)


async def grade_transcript(ctx: EvalContext, item: EvalItem, messages: list[Message]) -> tuple[list[dict], str]:
    """The judge's verdict on every assistant turn (it never learns which model answered), and its reply."""
    turns = len(messages) // 2
    if not turns:
        return [], ""
    trait = ctx.traits.by_id(item.trait_id)
    fmt = "\n".join(f"Turn {t}: <OK or VIOLATION> <score 1-10>" for t in range(1, turns + 1))
    reply = await ctx.judge.generate_one(
        render("multiturn_judge", trait=trait.describe(), transcript=transcript_text(messages), format=fmt),
        temperature=0.0, max_tokens=ctx.ev.judge_max_tokens)
    return [{"turn": v.turn, "violation": v.violation, "score": v.score} for v in parse_turns(reply, turns)], reply


def _units(ctx: EvalContext, items: list[EvalItem]) -> list[Unit]:
    """One conversation per checkpoint and tactic, keyed by its result id in RUN/eval/multiturn.jsonl."""
    return [Unit(result_id("multiturn", ck, i.id), i.trait_id, (ck, i)) for ck in ctx.checkpoints for i in items]


async def multiturn_conversations(ctx: EvalContext, items: list[EvalItem]) -> None:
    """Hold every pending conversation (auditor and checkpoint turns, all cached) without grading:
    the schedule runs this a checkpoint at a time; `run_multiturn` then replays them from the cache."""
    await ctx.step("multi-turn conversations", _units(ctx, items),
                   lambda u: converse(ctx, ctx.target(u.data[0]), u.data[1]),
                   done=done_keys(eval_path(ctx.store, "multiturn")))


async def run_multiturn(ctx: EvalContext, items: list[EvalItem]) -> None:
    path = eval_path(ctx.store, "multiturn")

    async def one(ck: str, item: EvalItem) -> ItemResult:
        messages, stopped = await converse(ctx, ctx.target(ck), item)
        verdicts, judge_reply = await grade_transcript(ctx, item, messages)
        s = summarise(verdicts)
        reason = stopped or ("" if s["survived"] is not None else "a turn could not be graded")
        return ItemResult(
            id=result_id("multiturn", ck, item.id), eval="multiturn", checkpoint=ck, item_id=item.id,
            trait_id=item.trait_id, value=None if s["survived"] is None else float(s["survived"]), reason=reason,
            detail={"tactic": item.prompt, "turns": len(messages) // 2, "verdicts": verdicts, **s,
                    "messages": [m.to_dict() for m in messages], "judge_reply": judge_reply[:2000]})

    # Shuffled so the judge sees checkpoints interleaved; it never sees their names.
    await ctx.step("multiturn", _units(ctx, items), lambda u: one(*u.data), out=path, shuffle="multiturn",
                   grade=True, desc="multi-turn pressure")
