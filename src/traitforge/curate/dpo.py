"""The last curation pass: DPO preference pairs, built from the curated chats only.

Generation records, per chat, a candidate pair (RUN/generated/dpo_pairs.jsonl; its rejected side is
the generator's plain answer without the traits). Here each candidate whose chat survived curation
becomes a pair whose prompt and chosen reply are the curated chat's (train.data.curated_dpo_pairs:
leakage cuts and pattern rewrites included), so DPO never trains on text curation removed.

The rejected side:
- "generator" (default): the generator's plain answer from the candidate;
- "student": on-policy, the base (student) model's own answer to the same prompt, as in open
  character-training work (the model learns away from what it actually says).
Either way it passes the same cheap checks as the chosen side (traitforge.junk: placeholders,
boilerplate, leaked instructions, repeats, an echoed prompt, hidden-prompt mentions; and near-verbatim
quotes of the traits' statements, details and examples). It is not judge-scored: it is meant to be
the worse answer. A pair whose rejected reply fails is dropped with its reason (never patched: a
cut rejected reply would teach the model to prefer the other side for the cut, not the trait)."""

from __future__ import annotations

from typing import Any, Sequence

from traitforge import junk
from traitforge.shared.trait_quotes import TraitQuotes
from traitforge.curate.records import PairDrop
from traitforge.shared.dpo_pairs import DPOPair
from traitforge.llm.client import LLM
from traitforge.llm.errors import BackendError
from traitforge.progress import gather_progress
from traitforge.shared.dpo_pairs import curated_dpo_pairs
from traitforge.types import Chat, ChatMessage, TraitSet

MIN_CHARS = 20


def rejected_problems(rejected: str, chosen: str, prompt: str, quotes: Sequence[TraitQuotes]) -> list[str]:
    """Why a rejected reply cannot be used (empty: it can)."""
    if len(rejected.strip()) < MIN_CHARS:
        return [f"rejected reply too short ({len(rejected.strip())} chars)"]
    if rejected.strip() == chosen.strip():
        return ["rejected reply is the same as the chosen one"]
    out = [j.reason for j in junk.find_junk(rejected, prompt=prompt, reply=True)]
    out += [reason for q in quotes for _, reason in q.check(rejected)]
    return list(dict.fromkeys(out))


async def student_replies(student: LLM, prompts: dict[str, list[dict[str, str]]], max_tokens: int,
                          seed: int) -> dict[str, str]:
    """pair id -> the student's own answer to the pair's prompt ("" when the call failed)."""
    ids = sorted(prompts)

    async def one(pid: str) -> str:
        try:
            return (await student.generate_one(prompts[pid], max_tokens=max_tokens, seed=seed)).strip()
        except BackendError:
            return ""

    return dict(zip(ids, await gather_progress([one(i) for i in ids], desc="curate: student replies")))


async def curate_pairs(candidates: Sequence[DPOPair], chats: Sequence[Chat], traits: TraitSet, n: int,
                       overlap: float, student: LLM | None = None, max_tokens: int = 600,
                       seed: int = 0) -> tuple[list[DPOPair], list[PairDrop], dict[str, Any]]:
    """(pairs to train on, pairs dropped with reasons, counts). `student`: on-policy rejected replies."""
    rows = [c.model_dump(mode="json") for c in candidates]
    matched = curated_dpo_pairs(rows, chats)
    kept_ids = {p["id"] for p in matched}
    drops = [PairDrop(pair_id=c.id, reason="its chat did not survive curation") for c in candidates
             if c.id not in kept_ids]
    if student is not None:
        rejected = await student_replies(student, {p["id"]: p["prompt"] for p in matched}, max_tokens, seed)
    else:
        rejected = {p["id"]: p["rejected"] for p in matched}
    quotes = [TraitQuotes(traits, n, overlap), TraitQuotes(traits, n, overlap, label="example")]
    by_id = {c.id: c for c in candidates}
    out: list[DPOPair] = []
    for p in matched:
        chosen = p["chosen"][0]["content"]
        rej = rejected[p["id"]]
        problems = rejected_problems(rej, chosen, p["prompt"][-1]["content"], quotes)
        if problems:
            drops.append(PairDrop(pair_id=p["id"], reason="; ".join(problems)[:400]))
            continue
        out.append(DPOPair(id=p["id"], trait_ids=by_id[p["id"]].trait_ids,
                           prompt=[ChatMessage(**m) for m in p["prompt"]], chosen=chosen, rejected=rej))
    changed = sum(o.chosen != by_id[o.id].chosen for o in out)
    return out, drops, {"candidates": len(candidates), "pairs": len(out), "dropped": len(drops),
                        "chosen_changed_by_curation": changed,
                        "rejected": "student" if student is not None else "generator"}
