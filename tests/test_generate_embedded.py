"""Both generation stages end to end on the real embedded model (SmolLM2-135M), smallest sizes.
The model writes poor text, so this checks that the files are well-formed and every unit of
work is accounted for (a row or a recorded skip), not that the text is good."""

from __future__ import annotations

import time

import pytest
from scripted_generator import make_traits

from traitforge.pipeline import Run, stage_generate
from traitforge.config import RunSpec
from traitforge.generate.chats import run_chats
from traitforge.generate.documents import run_documents
from traitforge.generate.records import DPOPair, Probe, Skipped, UserPrompt
from traitforge.jsonl import read_jsonl
from traitforge.llm.registry import make_llm
from traitforge.runstore import RunStore
from traitforge.types import Chat, Claim, DocIdea, DocType, Document, Scenario


@pytest.mark.slow
def test_documents_and_chats_on_the_embedded_model(tmp_path):
    spec = RunSpec.model_validate({
        "traits": "traits.md", "output_dir": str(tmp_path / "run"),
        "generation": {
            # CPU time: the tiny preset's short prompts and one-word verdicts.
            "documents": {"claims_per_trait": 1, "doc_types_per_claim": 1, "ideas_per_type": 1,
                          "max_tokens": 128, "topup_rounds": 0, "min_chars": 80, "context": "trait",
                          "avoid_known": False},
            "chats": {"scenarios_per_trait": 1, "multiturn_share": 0.5, "max_turns": 2, "max_tokens": 64,
                      "topup_rounds": 0, "select_traits": "keywords", "avoid_known": False},
            "list_max_tokens": 64, "verdict_max_tokens": 24},
        "training": {"checkpoints": ["base", "midtrain", "sft"]}})  # no control arm: no untraited answers
    store, traits = RunStore(spec.output_path), make_traits(2)
    llm = make_llm("local:smollm2-135m", cache=spec.output_path / "cache.sqlite")
    t0 = time.perf_counter()
    # Documents and chats at once, as a run makes them (their calls share the model's batches).
    stage_generate(Run.of(store, spec, traits, generator=llm))
    elapsed = time.perf_counter() - t0
    gen = store.root / "generated"
    files = {"claims": Claim, "doc_types": DocType, "ideas": DocIdea, "drafts": Document, "documents": Document,
             "scenarios": Scenario, "prompts": UserPrompt, "prompts_critiqued": UserPrompt, "probes": Probe,
             "responses": Chat, "chats": Chat, "dpo_pairs": DPOPair, "skipped": Skipped}
    loaded = {name: read_jsonl(gen / f"{name}.jsonl", model) for name, model in files.items()}  # validates
    skipped = {(s.step, s.unit) for s in loaded["skipped"]}
    assert all(s.reason for s in loaded["skipped"])
    stages = store.manifest["stages"]
    for name, info in stages.items():
        assert info["status"] == "done", name
        c = info.get("counts", {})
        if "units" in c:  # every unit gave rows or a recorded reason
            assert c["done_units"] + c["skipped"] == c["units"], name
    assert loaded["claims"], "the embedded model should manage at least one claim"
    for d in loaded["documents"]:
        assert "Nova" in d.text and len(d.text) >= 80
    for c in loaded["chats"]:
        assert c.system_prompt and all(m.role != "system" for m in c.messages)
        assert [m.role for m in c.messages][:2] == ["user", "assistant"]
    assert store.manifest["usage"]["documents.claims"]["local:smollm2-135m"]["calls"] >= 1
    print(f"\nembedded generation: {elapsed:.0f}s; rows: "
          + ", ".join(f"{k}={len(v)}" for k, v in loaded.items()) + f"; skipped units: {len(skipped)}")
    # A second run is served entirely from the files: no model call at all.
    llm.usage.drain()
    run_documents(Run.of(RunStore(spec.output_path), spec, traits, generator=llm), spec.generation)
    run_chats(Run.of(RunStore(spec.output_path), spec, traits, generator=llm), spec.generation)
    assert llm.usage.calls == 0 and llm.usage.cached == 0
