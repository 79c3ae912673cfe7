"""The generic mix: everyday prompts written by the generator, answered without the trait system
prompt (the untraited-answers step), mixed into SFT with training.sft.mix_file: generic."""

from __future__ import annotations

import re

from scripted_generator import make_spec, make_traits, scripted_llm

from traitforge.pipeline import Run
from traitforge.config import RunSpec
from traitforge.generate.generic import run_generic
from traitforge.jsonl import read_jsonl
from traitforge.runstore import RunStore
from traitforge.train import data
from traitforge.types import Chat


def responder(messages, params):
    last = messages[-1].content
    m = re.search(r"Write (\d+) different messages .* about (.+?)\. Vary", last)
    if m:
        return "\n".join(f"{i}. Could you help me with {m.group(2)}, case {i}? I am in Lima." for i in
                         range(1, int(m.group(1)) + 1))
    assert messages[0].role != "system"  # answered without the traits
    return f"Sure. Here is a plain, practical answer to: {last[:60]}"


def test_generic_prompts_are_answered_without_the_traits_and_mixed_into_sft(tmp_path):
    prompts_dir = tmp_path / "prompts"
    prompts_dir.mkdir()
    (prompts_dir / "generic_topics.txt").write_text("cooking\ntax forms\n")
    spec = make_spec(tmp_path, generic_prompts=6, prompts_dir=str(prompts_dir))
    store = RunStore(spec.output_path)
    llm = scripted_llm(responder)
    run_generic(Run.of(store, spec, make_traits(), generator=llm), spec.generation)
    chats = read_jsonl(store.root / "generated" / "generic.jsonl", Chat)
    assert len(chats) == 6 and all(c.trait_ids == [] and not c.system_prompt for c in chats)
    assert {("cooking" in c.messages[0].content) for c in chats} == {True, False}  # both topics
    assert not any(m.role == "system" for msgs, _ in llm.backend.calls for m in msgs)
    # A second run makes no calls.
    again = scripted_llm(responder)
    run_generic(Run.of(RunStore(spec.output_path), spec, make_traits(), generator=again), spec.generation)
    assert again.backend.calls == []

    # SFT: mix_file "generic" is this run's generic chats.
    data_ = spec.model_dump(mode="json")
    data_["training"]["sft"].update(mix_file="generic", mix_ratio=0.5)
    spec2 = RunSpec.model_validate(data_)
    spec2._base_dir = spec._base_dir
    path = spec2.mix_path(spec2.training.sft)
    assert path == spec.output_path / "generated" / "generic.jsonl"
    mix = data.read_mix_chats(path)
    trait_chats = [[{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]
                   for i in range(6)]
    convs, n_mixed = data.chat_conversations(trait_chats, mix, 0.5, 0)
    assert n_mixed == 6 and len(convs) == 12
