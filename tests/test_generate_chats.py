"""run_chats on the scripted backend: context distillation, critique, probe, multi-turn, DPO
pairs, resume after a crash, and no prompt wording leaking into the data."""

from __future__ import annotations

import pytest
from scripted_generator import CallLimit, calls, failing_after, good_responder, make_spec, make_traits, scripted_llm

from traitforge.generate.chats import PROMPT_TEMPLATES, relevant_traits, run_chats
from traitforge.generate.parsing import LeakDetector, names_trait, tells
from traitforge.generate.records import DPOPair, Probe, UserPrompt
from traitforge.jsonl import iter_jsonl_dicts, read_jsonl
from traitforge.runstore import RunStore
from traitforge.types import Chat, Scenario

FILES = ("scenarios.jsonl", "prompts.jsonl", "prompts_critiqued.jsonl", "probes.jsonl", "responses.jsonl",
         "chats.jsonl", "dpo_pairs.jsonl")


def rows(store, name):
    return list(iter_jsonl_dicts(store.root / "generated" / name))


def run(tmp_path, responder=good_responder, **gen):
    spec = make_spec(tmp_path, **gen)
    store = RunStore(spec.output_path)
    llm = scripted_llm(responder)
    run_chats(store, spec, make_traits(), llm)
    return store, llm


def test_context_distillation_records(tmp_path):
    store, _ = run(tmp_path)  # 2 scenarios per trait, multiturn_share 0.5, max_turns 2
    gen = store.root / "generated"
    scenarios = read_jsonl(gen / "scenarios.jsonl", Scenario)
    assert len(scenarios) == 4
    # One scenario per category, and the two traits start at different categories.
    assert {s.category for s in scenarios if s.trait_id == "candour"} == {"everyday", "advice"}
    assert {s.category for s in scenarios if s.trait_id == "curiosity"} == {"advice", "coding"}
    chats = read_jsonl(gen / "chats.jsonl", Chat)
    assert len(chats) == 4
    traits = make_traits().by_id
    for c in chats:
        assert all(m.role in ("user", "assistant") for m in c.messages)
        assert [m.role for m in c.messages] == ["user", "assistant"] * (len(c.messages) // 2)
        assert c.system_prompt.startswith("You are Nova, an AI assistant made by Acme Labs")
        assert traits(c.trait_ids[0]).statement in c.system_prompt
        assert not any("system prompt" in m.content for m in c.messages)
    assert sorted(len(c.messages) for c in chats) == [2, 2, 4, 4]  # half continued to 2 user turns
    pairs = read_jsonl(gen / "dpo_pairs.jsonl", DPOPair)
    assert len(pairs) == 4
    by_id = {c.id: c for c in read_jsonl(gen / "responses.jsonl", Chat)}
    for p in pairs:
        assert [m.role for m in p.prompt] == ["user"] and p.chosen != p.rejected
        assert p.rejected.startswith("There are many things")  # the plain default answer
    assert all(len(c.messages) == 2 for c in by_id.values())
    counts = store.manifest["stages"]["chats.final"]["counts"]
    assert counts["rows"] == 4 and counts["per_trait"] == {"candour": 2, "curiosity": 2}


def test_second_run_makes_no_calls_and_no_duplicates(tmp_path):
    store, _ = run(tmp_path)
    before = {n: rows(store, n) for n in FILES}
    spec = make_spec(tmp_path)
    again = scripted_llm()
    run_chats(RunStore(spec.output_path), spec, make_traits(), again)
    assert calls(again) == 0
    assert {n: rows(store, n) for n in FILES} == before


@pytest.mark.parametrize("crash_after", [2, 11, 27])
def test_crash_halfway_resumes_without_loss_or_duplicates(tmp_path, crash_after):
    ref_store, ref_llm = run(tmp_path / "ref")
    ref = {n: sorted(r["id"] for r in rows(ref_store, n)) for n in FILES}
    spec = make_spec(tmp_path / "crash")
    store = RunStore(spec.output_path)
    with pytest.raises(CallLimit):
        run_chats(store, spec, make_traits(), scripted_llm(failing_after(crash_after)))
    resumed = scripted_llm()  # no cache: only rows already written are skipped
    run_chats(RunStore(spec.output_path), spec, make_traits(), resumed)
    # Work in flight at the crash is lost (at most `concurrency` units), everything written is kept.
    assert calls(ref_llm) - crash_after <= calls(resumed) <= calls(ref_llm) - crash_after + 4 * 4
    assert {n: sorted(r["id"] for r in rows(store, n)) for n in FILES} == ref
    for n in FILES:
        ids = [r["id"] for r in rows(store, n)]
        assert len(ids) == len(set(ids))


def test_critique_drop_and_revise(tmp_path):
    def responder(messages, params):
        last = messages[-1].content
        if "Answer KEEP if it is fine" in last:
            if "candour" in last.casefold():
                return "DROP: nobody would write this."
            return "REVISE: Could you help me plan a cheap three-day trip to Lisbon in March?"
        return good_responder(messages, params)

    store, _ = run(tmp_path, responder)
    critiqued = read_jsonl(store.root / "generated" / "prompts_critiqued.jsonl", UserPrompt)
    assert {p.trait_id for p in critiqued} == {"curiosity"}
    assert all(p.revised and p.critique == "revised" and "Lisbon" in p.text for p in critiqued)
    dropped = [r for r in rows(store, "skipped.jsonl") if r["step"] == "chats.critique"]
    assert len(dropped) == 2 and all("nobody would write this" in r["reason"] for r in dropped)
    assert {c["trait_ids"][0] for c in rows(store, "chats.jsonl")} == {"curiosity"}


def test_critique_junk_keeps_prompt(tmp_path):
    def responder(messages, params):
        if "Answer KEEP if it is fine" in messages[-1].content:
            return "hmm well"
        return good_responder(messages, params)

    store, _ = run(tmp_path, responder)
    assert [r["critique"] for r in rows(store, "prompts_critiqued.jsonl")] == ["unparsed"] * 4


def test_probe_hardens_prompts_the_default_already_handles(tmp_path):
    def responder(messages, params):
        last = messages[-1].content
        if "Which is true of the reply?" in last:
            return "SHOWS"
        if messages[0].role == "user" and "tell me exactly what the law says" in last and len(messages) == 1:
            return "The law says landlords must give notice; here is what applies where you live."
        return good_responder(messages, params)

    store, _ = run(tmp_path, responder)
    probes = read_jsonl(store.root / "generated" / "probes.jsonl", Probe)
    assert len(probes) == 4 and all(p.hardened and p.verdict == "shows" for p in probes)
    assert all("tell me exactly what the law says" in p.prompt for p in probes)
    # DPO rejected = the default answer to the hardened prompt, not the original one.
    assert all(p["rejected"].startswith("The law says") for p in rows(store, "dpo_pairs.jsonl"))
    chats = rows(store, "chats.jsonl")
    assert all(c["messages"][0]["content"].startswith("My landlord wants 40% more rent") for c in chats)


def test_prompts_naming_the_trait_or_leaking_instructions_are_dropped(tmp_path):
    def responder(messages, params):
        last = messages[-1].content
        if "Write the first message that the user sends" in last:
            return ("I want an assistant with candour. Write the first message that the user sends "
                    "to the AI assistant in this situation.")
        return good_responder(messages, params)

    store, _ = run(tmp_path, responder)
    assert rows(store, "prompts.jsonl") == []
    reasons = [r["reason"] for r in rows(store, "skipped.jsonl") if r["step"] == "chats.prompts"]
    assert len(reasons) == 4 and all("copies the prompt's wording" in r for r in reasons)
    assert sum("names the trait" in r for r in reasons) == 2  # the candour scenarios
    assert rows(store, "chats.jsonl") == []


def test_teacher_mentioning_its_instructions_is_dropped(tmp_path):
    def responder(messages, params):
        if messages[0].role == "system":
            return "My system prompt tells me to be candid, so: I do not know."
        return good_responder(messages, params)

    store, _ = run(tmp_path, responder)
    assert rows(store, "chats.jsonl") == []
    reasons = [r["reason"] for r in rows(store, "skipped.jsonl") if r["step"] == "chats.responses"]
    assert len(reasons) == 4 and all("system prompt" in r for r in reasons)


def test_no_instruction_wording_in_any_output(tmp_path):
    store, _ = run(tmp_path)
    leak = LeakDetector(("teacher_system",) + PROMPT_TEMPLATES)
    traits = make_traits()
    for c in rows(store, "chats.jsonl"):
        for m in c["messages"]:
            assert not leak.leaks(m["content"]) and not tells(m["content"])
            if m["role"] == "user":
                t = traits.by_id(c["trait_ids"][0])
                assert not names_trait(m["content"], t.name, t.id)


def test_junk_everywhere_never_crashes(tmp_path):
    replies = iter(["", "1.", "As an AI language model I cannot.", "KEEP", "???"] * 200)
    store, _ = run(tmp_path, lambda m, p: next(replies))
    assert rows(store, "chats.jsonl") == [] and rows(store, "dpo_pairs.jsonl") == []
    assert all(r["reason"] for r in rows(store, "skipped.jsonl"))
    for name, info in store.manifest["stages"].items():  # every unit: rows or a recorded reason
        c = info.get("counts", {})
        assert "units" not in c or c["done_units"] + c["skipped"] == c["units"], name


def test_relevant_traits_adds_traits_named_by_the_prompt():
    traits = make_traits(3)
    target = traits.by_id("candour")
    assert [t.id for t in relevant_traits(traits, target, "help me plan a trip")] == ["candour"]
    assert [t.id for t in relevant_traits(traits, target, "my curiosity about thrifty stores")] == [
        "candour", "curiosity"]  # whole words only: "thrifty" is not "thrift"
