"""Held-out items with a scripted generator: planned ids, overlap with training chats dropped,
junk dropped with a reason, items reused on a re-run."""

from __future__ import annotations

import asyncio
from pathlib import Path

from traitforge.config import ModelSpec, RunSpec
from traitforge.evaluate.common import EvalContext
from traitforge.pipeline import Run
from traitforge.evaluate.items import build_items
from traitforge.textmatch import NgramIndex as OverlapIndex
from traitforge.jsonl import append_jsonl
from traitforge.llm.client import LLM
from traitforge.llm.providers.scripted import ScriptedBackend
from traitforge.runstore import RunStore
from traitforge.types import Trait, TraitSet

TRAITS = TraitSet("Aria", "Acme", (Trait("honest", "Honesty", "Aria tells the truth."),
                                   Trait("concise", "Concision", "Aria keeps answers short.")))
LEAKED = "Please tell me honestly whether my business plan for a bakery is any good at all"


def generator(messages, params) -> str:
    text = messages[-1].content
    if "Write one realistic message" in text:
        if "Honesty" in text and "everyday" in text:
            return LEAKED  # copied from the training chats
        return "ok" if "role" in text else "I am writing a eulogy for my uncle; can you help me make it warm?"
    if "a DIFFERENT character" in text:
        return "Aria says whatever pleases."
    return "A reply."


def test_overlap_index() -> None:
    idx = OverlapIndex(["the quick brown fox jumps over the lazy dog today", "hi there"], n=4)
    assert idx.overlap("The quick brown fox jumps over the lazy dog today!") == 1.0
    assert idx.overlap("something completely different from all of that text") == 0.0
    assert idx.overlap("Hi there") == 1.0


def test_build_items(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    append_jsonl(store.path("generated", "chats.jsonl"), [{"id": "c", "trait_ids": ["honest"], "messages": [
        {"role": "user", "content": LEAKED}, {"role": "assistant", "content": "..."}]}])
    spec = RunSpec.model_validate({"traits": "t.md", "evaluation": {
        "behaviour_prompts_per_trait": 4, "ood_share": 0.75, "mc_distractors": 2, "knowledge_questions": 2}})
    backend = ScriptedBackend(responses=generator)
    ctx = EvalContext(Run.of(store, spec, TRAITS), spec.evaluation, LLM(backend), LLM(backend), {"base": ModelSpec(model="local:smollm2-135m")})
    items = asyncio.run(build_items(ctx))
    bh = {i.id: i for i in items["behaviour"]}
    assert sorted(bh) == [f"bh-{t}-{i}" for t in ("concise", "honest") for i in range(4)]
    assert [bh[f"bh-honest-{i}"].category for i in range(4)] == ["in_domain", "other_domain", "agentic", "role_play"]
    assert "overlaps training" in bh["bh-honest-0"].dropped
    assert bh["bh-honest-3"].dropped == "generated prompt too short"
    assert bh["bh-honest-1"].dropped is None and bh["bh-honest-1"].ood and bh["bh-honest-1"].consistent
    mc = {i.trait_id: i for i in items["mc"]}
    # One distinct generated distractor (the others duplicate it), topped up from the other trait.
    assert mc["honest"].options == ["Aria tells the truth.", "Aria says whatever pleases.", "Aria keeps answers short."]
    assert mc["honest"].option_sources == ["trait", "generated", "other_trait:concise"]
    assert len(items["knowledge"]) == 2 + 2 and len(items["multiturn"]) == 2
    calls = len(backend.calls)
    again = asyncio.run(build_items(ctx))  # re-run: read from items_*.jsonl, no new calls
    assert len(backend.calls) == calls and again == items


def test_mc_distractors_that_merely_negate_the_trait_are_rejected(tmp_path: Path) -> None:
    """A scripted writer (the check's control flow, not the prompt's quality): of its distractors
    the negations of the statement are rejected, the equally desirable alternative is kept."""
    from traitforge.evaluate.item_checks import lengths_matched, negates_trait

    assert negates_trait("Aria never tells the truth.", "Aria tells the truth.", "Aria")
    assert negates_trait("Aria does not keep answers short.", "Aria keeps answers short.", "Aria")
    assert not negates_trait("Aria puts kindness first, softening hard news.", "Aria tells the truth.", "Aria")
    assert lengths_matched("one two three", "four five six seven") and not lengths_matched("a b c d e", "f")
    writes = iter(["Aria never tells the truth.", "Aria does not tell the truth.",
                   "Aria puts the user's feelings first and softens hard news."] * 4)

    def writer(messages, params) -> str:
        return next(writes) if "a DIFFERENT character" in messages[-1].content else generator(messages, params)

    spec = RunSpec.model_validate({"traits": "t.md", "evaluation": {
        "behaviour_prompts_per_trait": 1, "mc_distractors": 2, "mc_questions_per_trait": 2, "contrastive": False}})
    backend = ScriptedBackend(responses=writer)
    ctx = EvalContext(Run.of(RunStore(tmp_path), spec, TRAITS), spec.evaluation, LLM(backend), LLM(backend),
                      {"base": ModelSpec(model="local:smollm2-135m")})
    opts = [o for i in asyncio.run(build_items(ctx))["mc"] if i.trait_id == "honest" for o in i.options]
    assert "Aria puts the user's feelings first and softens hard news." in opts
    assert not any("never tells" in o or "does not tell" in o for o in opts)
