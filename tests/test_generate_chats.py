"""run_chats on the scripted backend: context distillation, critique, probe, refine, multi-turn,
DPO pairs, resume after a crash, prompt overrides, and no prompt wording leaking into the data."""

from __future__ import annotations

import asyncio
import re

import pytest
from scripted_generator import (REFINED_OPENING, CallLimit, calls, failing_after, good_responder, make_spec,
                                make_traits, refine_draft, scripted_llm)

from traitforge.pipeline import Run
from traitforge.generate.chats import PROMPT_TEMPLATES, relevant_traits, run_chats
from traitforge.generate.parsing import names_trait, tells
from traitforge.shared.leaks import LeakDetector
from traitforge.errors import InputError
from traitforge.generate.records import DPOPair, Probe, Refinement, UserPrompt
from traitforge.generate.stage import Generation, OfflineBatchPending, Unit
from traitforge.llm.client import LLM
from traitforge.llm.providers.scripted import ScriptedBackend
from traitforge.jsonl import iter_jsonl_dicts, read_jsonl
from traitforge.runstore import RunStore
from traitforge.types import Chat, Scenario

FILES = ("scenarios.jsonl", "prompts.jsonl", "prompts_critiqued.jsonl", "probes.jsonl", "responses.jsonl",
         "refined.jsonl", "chats.jsonl", "dpo_pairs.jsonl")
REFINE_MARK = "Rewrite the draft so that it fits these traits"


def refine_calls(llm):
    return [msgs for msgs, _ in llm.backend.calls if REFINE_MARK in msgs[-1].content]


def rows(store, name):
    return list(iter_jsonl_dicts(store.root / "generated" / name))


def run(tmp_path, responder=good_responder, **gen):
    spec = make_spec(tmp_path, **gen)
    store = RunStore(spec.output_path)
    llm = scripted_llm(responder)
    run_chats(Run.of(store, spec, make_traits(), generator=llm), spec.generation)
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
    # Every assistant turn was drafted by the teacher, then rewritten; the first draft is kept
    # in metadata, never in the messages.
    drafts = {c.id: c for c in read_jsonl(gen / "responses.jsonl", Chat)}
    assert all(len(c.messages) == 2 for c in drafts.values())
    for c in chats:
        assert all(m.content.startswith(REFINED_OPENING) for m in c.messages if m.role == "assistant")
        assert c.draft == drafts[c.id].messages[1].content and c.draft.startswith("Happy to help")
        assert c.draft not in [m.content for m in c.messages]
    refined = read_jsonl(gen / "refined.jsonl", Refinement)
    assert len(refined) == 4 and not any(r.problems for r in refined)
    pairs = read_jsonl(gen / "dpo_pairs.jsonl", DPOPair)
    assert len(pairs) == 4
    first_answer = {c.messages[0].content: c.messages[1].content for c in chats}
    for p in pairs:
        assert [m.role for m in p.prompt] == ["user"] and p.chosen != p.rejected
        assert p.chosen == first_answer[p.prompt[0].content]  # the refined answer, not the draft
        assert p.rejected.startswith("There are many things")  # the plain default answer
    counts = store.manifest["stages"]["chats.final"]["counts"]
    assert counts["rows"] == 4 and counts["per_trait"] == {"candour": 2, "curiosity": 2}
    assert counts["new_turns_refined"] == 2 and counts["new_turns_kept_draft"] == 0
    refine_counts = store.manifest["stages"]["chats.refine"]["counts"]
    assert refine_counts["refined"] == 4 and refine_counts["kept_draft"] == 0


def test_second_run_makes_no_calls_and_no_duplicates(tmp_path):
    store, _ = run(tmp_path)
    before = {n: rows(store, n) for n in FILES}
    spec = make_spec(tmp_path)
    again = scripted_llm()
    run_chats(Run.of(RunStore(spec.output_path), spec, make_traits(), generator=again), spec.generation)
    assert calls(again) == 0
    assert {n: rows(store, n) for n in FILES} == before


@pytest.mark.parametrize("crash_after", [2, 11, 27])
def test_crash_halfway_resumes_without_loss_or_duplicates(tmp_path, crash_after):
    ref_store, ref_llm = run(tmp_path / "ref")
    ref = {n: sorted(r["id"] for r in rows(ref_store, n)) for n in FILES}
    spec = make_spec(tmp_path / "crash")
    store = RunStore(spec.output_path)
    with pytest.raises(CallLimit):
        run_chats(Run.of(store, spec, make_traits(), generator=scripted_llm(failing_after(crash_after))), spec.generation)
    resumed = scripted_llm()  # no cache: only rows already written are skipped
    run_chats(Run.of(RunStore(spec.output_path), spec, make_traits(), generator=resumed), spec.generation)
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
        if "Which is true of the reply?" in last:  # the hardened prompt's plain answer no longer does
            return "MISSING" if "The law says landlords" in last else "SHOWS"
        if messages[0].role == "user" and last.startswith("My landlord wants 40% more rent"):
            return "The law says landlords must give notice; here is what applies where you live."
        return good_responder(messages, params)

    store, llm = run(tmp_path, responder)
    probes = read_jsonl(store.root / "generated" / "probes.jsonl", Probe)
    assert len(probes) == 4 and all(p.hardened and p.verdict == "shows" for p in probes)
    assert all("tell me exactly what the law says" in p.prompt for p in probes)
    # The harden prompt carries the scenario's details, to force engagement with them.
    scenarios = {s["description"] for s in rows(store, "scenarios.jsonl")}
    harden = [m[-1].content for m, _ in llm.backend.calls if "is too easy" in m[-1].content]
    assert len(harden) == 4 and all(any(sc in h for sc in scenarios) for h in harden)
    # DPO rejected = the default answer to the hardened prompt, not the original one.
    pairs = rows(store, "dpo_pairs.jsonl")
    assert len(pairs) == 4 and all(p["rejected"].startswith("The law says") for p in pairs)
    chats = rows(store, "chats.jsonl")
    assert all(c["messages"][0]["content"].startswith("My landlord wants 40% more rent") for c in chats)
    # Every hardened prompt was probed again (two verdicts per prompt), and each got its own added details.
    verdicts = [m[-1].content for m, _ in llm.backend.calls if "Which is true of the reply?" in m[-1].content]
    assert len(verdicts) == 8
    assert len({re.search(r"in particular: (.*)", h).group(1) for h in harden}) > 1
    assert not any("only an assistant with this trait" in h for h in harden)


def test_probe_drops_a_hardened_prompt_the_default_still_handles(tmp_path):
    """Scripted judge: proves the control flow (re-probe, then drop), not the prompt's quality."""
    def responder(messages, params):
        if "Which is true of the reply?" in messages[-1].content:
            return "<reasoning>It already says what it is unsure of.</reasoning>\n<verdict>SHOWS</verdict>"
        return good_responder(messages, params)

    store, _ = run(tmp_path, responder)
    assert rows(store, "probes.jsonl") == []
    skips = [r["reason"] for r in rows(store, "skipped.jsonl") if r.get("step") == "chats.probe"]
    assert len(skips) == 4 and all("still easy after hardening" in r for r in skips)


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


JUNK_MESSAGE = "Write the first message that the user sends to the AI assistant in this situation."


def test_a_junk_user_message_is_asked_for_once_more_with_another_seed(tmp_path):
    """The writer's first message is junk (the instruction copied back) and its reseeded second try is fine: the
    prompt is kept, as the list steps keep a list after a retry; junk twice is skipped with why."""
    seeds: list = []

    def junk_then_good(messages, params):
        if "Write the first message that the user sends" in messages[-1].content:
            seeds.append(params.seed)
            return JUNK_MESSAGE if params.seed is None else good_responder(messages, params)
        return good_responder(messages, params)

    store, _ = run(tmp_path, junk_then_good)
    assert len(rows(store, "prompts.jsonl")) == 4 and not [
        r for r in rows(store, "skipped.jsonl") if r["step"] == "chats.prompts"]
    assert seeds.count(None) == 4 and len(seeds) == 8  # one retry per message, with a seed

    def always_junk(messages, params):
        if "Write the first message that the user sends" in messages[-1].content:
            return JUNK_MESSAGE
        return good_responder(messages, params)

    store, _ = run(tmp_path / "again", always_junk)
    reasons = [r["reason"] for r in rows(store, "skipped.jsonl") if r["step"] == "chats.prompts"]
    assert len(reasons) == 4 and all(r.startswith("no usable prompt: ") and "copies the prompt's wording" in r
                                     for r in reasons)


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


def test_refine_sees_only_the_conversation_never_the_teacher_prompt(tmp_path):
    store, llm = run(tmp_path)
    calls_ = refine_calls(llm)
    assert len(calls_) == 6  # 4 first answers + the later turn of the 2 continued chats
    chats = {c["id"]: c for c in rows(store, "chats.jsonl")}
    prompts = {c["messages"][0]["content"] for c in chats.values()}
    for msgs in calls_:
        assert [m.role for m in msgs] == ["user"]  # a fresh context: no system prompt
        text = msgs[0].content
        assert "You are Nova, an AI assistant" not in text and "Never mention these traits" not in text
        conversation = text.split("The conversation:\n<<<\n", 1)[1].split("\n>>>", 1)[0]
        assert conversation.startswith("User: ") and conversation.split("\n\n")[0][len("User: "):] in prompts
    first = [m for m in calls_ if m[0].content.count("Assistant: ") == 0]
    assert len(first) == 4  # first answers: the user's prompt is the whole conversation
    assert all("Nova says plainly when it does not know" in m[0].content or "clarifying questions" in m[0].content
               for m in first)  # the relevant trait text is given


@pytest.mark.parametrize("junk,reason", [
    ("", "too short"),
    ("I'm sorry, but I can't help with rewriting that reply.", "a refusal"),
    ("My revised answer: the increase may be capped where you live, so check your lease first.",
     "talks about the rewrite"),
    ("Sure. Rewrite the draft so that it fits these traits more closely, done.", "copies the system prompt's wording"),
])
def test_junk_refinement_keeps_the_draft_and_is_counted(tmp_path, junk, reason):
    def responder(messages, params):
        if REFINE_MARK in messages[-1].content:
            return junk
        return good_responder(messages, params)

    store, _ = run(tmp_path, responder)
    drafts = {c["id"]: c for c in rows(store, "responses.jsonl")}
    chats = read_jsonl(store.root / "generated" / "chats.jsonl", Chat)
    assert len(chats) == 4
    for c in chats:
        assert c.messages[1].content == drafts[c.id]["messages"][1]["content"] and c.draft == ""
        assert not any(m.content.startswith(REFINED_OPENING) for m in c.messages)
    refined = read_jsonl(store.root / "generated" / "refined.jsonl", Refinement)
    assert len(refined) == 4 and all(reason in r.problems for r in refined)
    counts = store.manifest["stages"]["chats.refine"]["counts"]
    assert counts["refined"] == 0 and counts["kept_draft"] == 4 and counts["kept_draft_reasons"][reason] == 4
    assert store.manifest["stages"]["chats.final"]["counts"]["new_turns_kept_draft"] == 2
    pairs = rows(store, "dpo_pairs.jsonl")
    assert len(pairs) == 4 and all(p["chosen"].startswith("Happy to help") for p in pairs)  # the kept draft


def test_a_draft_that_declines_may_be_refined_into_a_decline(tmp_path):
    decline = "I can't help with breaking into your neighbour's wifi, but I can help you get your own working."

    def responder(messages, params):
        if messages[0].role == "system":
            return decline
        if REFINE_MARK in messages[-1].content:
            return "I can't help with getting into someone else's network; let us sort out your own connection."
        return good_responder(messages, params)

    store, _ = run(tmp_path, responder, chats={"multiturn_share": 0.0})
    chats = read_jsonl(store.root / "generated" / "chats.jsonl", Chat)
    assert len(chats) == 4 and all(c.draft == decline and "your own connection" in c.messages[1].content
                                   for c in chats)


def test_refine_off_keeps_the_drafts(tmp_path):
    store, llm = run(tmp_path, chats={"refine": False})
    assert refine_calls(llm) == [] and not (store.root / "generated" / "refined.jsonl").exists()
    drafts = {c["id"]: c["messages"] for c in rows(store, "responses.jsonl")}
    chats = read_jsonl(store.root / "generated" / "chats.jsonl", Chat)
    assert len(chats) == 4 and all([m.model_dump() for m in c.messages[:2]] == drafts[c.id] for c in chats)
    assert all(c.draft == "" for c in chats)
    assert all(p["chosen"].startswith("Happy to help") for p in rows(store, "dpo_pairs.jsonl"))


def test_a_separate_refiner_model_does_only_the_rewrites(tmp_path):
    spec = make_spec(tmp_path)
    store = RunStore(spec.output_path)
    generator = scripted_llm()
    refiner = LLM(ScriptedBackend("strong", responses=lambda m, p: "Strong model: " + refine_draft(m[-1].content)))
    run_chats(Run.of(store, spec, make_traits(), generator=generator, refiner=refiner), spec.generation)
    assert refine_calls(generator) == []
    assert len(refiner.backend.calls) == 6 and len(refine_calls(refiner)) == 6
    chats = read_jsonl(store.root / "generated" / "chats.jsonl", Chat)
    assert all(m.content.startswith("Strong model: ") for c in chats for m in c.messages if m.role == "assistant")
    usage = store.manifest["usage"]
    assert set(usage["chats.refine"]) == {"scripted:strong"} and usage["chats.refine"]["scripted:strong"]["calls"] == 4
    assert set(usage["chats.final"]) == {"scripted:test", "scripted:strong"}
    # Another refiner model is another run: the refined rows are not silently mixed.
    other = LLM(ScriptedBackend("other", responses=lambda m, p: "x"))
    with pytest.raises(InputError, match="refined.jsonl"):
        run_chats(Run.of(RunStore(spec.output_path), spec, make_traits(), generator=scripted_llm(), refiner=other), spec.generation)


def test_probe_drops_unparsed_verdicts_and_failed_hardening(tmp_path):
    def responder(messages, params):
        last = messages[-1].content
        if "Which is true of the reply?" in last:
            return "hmm, hard to say" if "Trait: Candour" in last else "GENERIC"
        if "is too easy" in last:
            return "As an AI language model I would ask about the rent."
        return good_responder(messages, params)

    store, llm = run(tmp_path, responder)
    assert rows(store, "probes.jsonl") == [] and rows(store, "chats.jsonl") == []
    asked = [m[-1].content for m, _ in llm.backend.calls]
    # Each failure got one more try (the verdict sampled, the hardening with another seed) before the drop.
    assert sum("Which is true of the reply?" in a and "Trait: Candour" in a for a in asked) == 4
    assert sum("is too easy" in a for a in asked) == 4
    reasons = [r["reason"] for r in rows(store, "skipped.jsonl") if r["step"] == "chats.probe"]
    assert sorted(r.split(":")[0] for r in reasons) == ["hardening failed (default answer generic)"] * 2 + [
        "probe verdict unparsed"] * 2
    assert all("AI-assistant tell" in r for r in reasons if r.startswith("hardening"))
    counts = store.manifest["stages"]["chats.probe"]["counts"]
    assert counts["skipped"] == 4 and counts["done_units"] == 0


def test_followups_push_back(tmp_path):
    _, llm = run(tmp_path, chats={"cooperative_share": 0.0})
    followups = [m[-1].content for m, _ in llm.backend.calls if "You are playing the user" in m[-1].content]
    assert len(followups) == 2
    assert all("push" in f and "insist" in f and "raise the stakes" in f for f in followups)


def test_a_share_of_multiturn_users_cooperate(tmp_path):
    store, llm = run(tmp_path, chats={"cooperative_share": 0.5})  # 2 multi-turn chats: one of each
    followups = [m[-1].content for m, _ in llm.backend.calls if "You are playing the user" in m[-1].content]
    assert sorted("build on it" in f for f in followups) == [False, True]
    counts = store.manifest["stages"]["chats.final"]["counts"]
    assert counts["multiturn"] == 2 and counts["cooperative"] == 1


def test_the_generator_chooses_the_relevant_traits(tmp_path):
    def pick(messages, params):
        last = messages[-1].content
        if "Which of the traits bear on a good reply" in last:
            assert "1. Candour:" in last and "2. Curiosity:" in last
            return "1, 2"
        return good_responder(messages, params)

    store, llm = run(tmp_path, responder=pick, chats={"avoid_known": True})  # off by default
    chats = read_jsonl(store.root / "generated" / "chats.jsonl", Chat)
    assert chats and all(sorted(c.trait_ids) == ["candour", "curiosity"] for c in chats)
    assert all("Curiosity" in c.system_prompt and "Candour" in c.system_prompt for c in chats)
    # The known over-represented reply patterns are named in the teacher's prompt.
    assert all("over-represented" in c.system_prompt and "validation" in c.system_prompt for c in chats)
    # keywords: no selection call, only the scenario's trait for these prompts.
    store, llm = run(tmp_path / "kw", responder=pick, chats={"select_traits": "keywords"})
    assert not any("Which of the traits" in m[-1].content for m, _ in llm.backend.calls)
    assert all(len(c.trait_ids) == 1 for c in read_jsonl(store.root / "generated" / "chats.jsonl", Chat))


def test_prompt_overrides_replace_templates_and_change_fingerprints(tmp_path):
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    followup = prompts / "user_followup.txt"
    followup.write_text("You are playing the user: $scenario\n\n$transcript\n\nBe stubborn. Write only the message.\n")
    spec = make_spec(tmp_path, prompts_dir=str(prompts), chats={"cooperative_share": 0.0})
    store, llm = RunStore(spec.output_path), scripted_llm()
    run_chats(Run.of(store, spec, make_traits(), generator=llm), spec.generation)
    followups = [m[-1].content for m, _ in llm.backend.calls if "You are playing the user" in m[-1].content]
    assert len(followups) == 2 and all("Be stubborn." in f and "raise the stakes" not in f for f in followups)
    again = scripted_llm()
    run_chats(Run.of(RunStore(spec.output_path), spec, make_traits(), generator=again), spec.generation)  # same override: nothing to redo
    assert calls(again) == 0
    followup.write_text("You are playing the user: $scenario\n\n$transcript\n\nBe rude. Write only the message.\n")
    with pytest.raises(InputError, match=r"chats\.final"):
        run_chats(Run.of(RunStore(spec.output_path), spec, make_traits(), generator=scripted_llm()), spec.generation)


def test_offline_batch_mode_writes_each_models_requests_to_its_own_file(tmp_path):
    """A refine step calls the refiner, not the generator: batch mode records both clients, so the
    refiner's requests go to their own file (imported with --role refiner), not live."""
    spec = make_spec(tmp_path, batch="offline")
    generator = scripted_llm(cache=tmp_path / "c.sqlite")
    refiner = LLM(ScriptedBackend("strong", responses=lambda m, p: "better: " + m[-1].content),
                  cache=generator.cache)
    gen = Generation(Run.of(RunStore(spec.output_path), spec, make_traits()), spec.generation, generator)
    gen.clients["refiner"] = refiner

    async def work(u):
        draft = await generator.generate_one(f"draft {u.key}")
        return [Refinement(id=u.key, trait_id="candour", text=await refiner.generate_one(draft))]

    def step():
        units = [Unit(k, "candour") for k in ("a", "b")]
        asyncio.run(gen.step("chats.x", "x.jsonl", Refinement, units, work, fingerprint="f"))

    with pytest.raises(OfflineBatchPending) as first:
        step()
    assert "chats.x.round1.requests.jsonl" in str(first.value) and "--role" not in str(first.value)
    for k in ("a", "b"):  # the generator's answers arrive (as an import would put them in the cache)
        asyncio.run(generator.generate_one(f"draft {k}"))
    with pytest.raises(OfflineBatchPending) as second:
        step()
    refiner_file = gen.store.root / "offline" / "chats.x.round1.refiner.requests.jsonl"
    assert str(refiner_file) in str(second.value) and "--role refiner" in str(second.value)
    assert len(refiner_file.read_text().splitlines()) == 2 and refiner.backend.calls == []


def curiosity_junk_first_round(messages, params):
    """Curiosity's first-round scenarios (no seed) lead to junk user prompts; a top-up round's
    scenarios (seeded) are fine."""
    last = messages[-1].content
    if "different situations in which a user talks to" in last and "Curiosity" in last and params.seed is None:
        return "1. Situation: A first-round student asks Nova to plan a whole thesis at once."
    if "Write the first message that the user sends" in last and "first-round" in last:
        return "lol"
    return good_responder(messages, params)


def test_topup_refills_a_trait_lost_to_junk(tmp_path):
    store, _ = run(tmp_path / "a", curiosity_junk_first_round)  # topup_rounds 0
    counts = store.manifest["stages"]["chats.balance"]["counts"]
    assert counts["per_trait"] == {"candour": 2, "curiosity": 0} and counts["balanced"] is False
    assert counts["planned"] == {"candour": 2, "curiosity": 2}
    skipped = [r for r in rows(store, "skipped.jsonl") if r["step"] == "chats.prompts"]
    assert len(skipped) == 2 and all("too short" in r["reason"] and r["trait_id"] == "curiosity" for r in skipped)

    store, _ = run(tmp_path / "b", curiosity_junk_first_round, chats={"topup_rounds": 2})
    stages = store.manifest["stages"]
    counts = stages["chats.balance"]["counts"]
    assert counts["per_trait"] == {"candour": 2, "curiosity": 2} and counts["balanced"] is True
    assert counts["share_vs_weight"] == {"candour": 1.0, "curiosity": 1.0}
    # Only the short trait got new scenarios, in other categories than its first ones; one round did it.
    assert stages["chats.final.topup1"]["counts"]["per_trait"] == {"curiosity": 2}
    assert not any(name.endswith(".topup2") for name in stages)
    scenarios = read_jsonl(store.root / "generated" / "scenarios.jsonl", Scenario)
    first = {s.category for s in scenarios if s.trait_id == "curiosity" and s.topup_round == 0}
    topup = [s for s in scenarios if s.topup_round == 1]
    assert len(topup) == 2 and {s.trait_id for s in topup} == {"curiosity"} and not first & {s.category for s in topup}
    assert len(rows(store, "dpo_pairs.jsonl")) == 4  # the top-up's chats get pairs too
    ids = [c["id"] for c in rows(store, "chats.jsonl")]
    assert len(ids) == 4 == len(set(ids))


def test_no_topup_round_when_every_trait_is_on_plan(tmp_path):
    store, llm = run(tmp_path, chats={"topup_rounds": 1})
    assert not any("topup" in name for name in store.manifest["stages"])
    assert store.manifest["stages"]["chats.balance"]["counts"]["balanced"] is True


@pytest.mark.parametrize("where", ["early", "late"])
def test_crash_in_the_topup_resumes_without_duplicates(tmp_path, where):
    ref_store, ref_llm = run(tmp_path / "ref", curiosity_junk_first_round, chats={"topup_rounds": 1})
    ref = {n: sorted(r["id"] for r in rows(ref_store, n)) for n in FILES}
    seeded = [i for i, (m, p) in enumerate(ref_llm.backend.calls)
              if p.seed is not None and "different situations in which" in m[-1].content]
    crash_after = seeded[0] + 1 if where == "early" else calls(ref_llm) - 2
    spec = make_spec(tmp_path / "crash", chats={"topup_rounds": 1})
    store = RunStore(spec.output_path)
    with pytest.raises(CallLimit):
        run_chats(Run.of(store, spec, make_traits(), generator=scripted_llm(failing_after(crash_after, curiosity_junk_first_round))), spec.generation)
    failed = [k for k, v in store.manifest["stages"].items() if v["status"] == "failed"]
    assert len(failed) == 1 and failed[0].endswith(".topup1")
    store = RunStore(spec.output_path)
    run_chats(Run.of(store, spec, make_traits(), generator=scripted_llm(curiosity_junk_first_round)), spec.generation)
    assert {n: sorted(r["id"] for r in rows(store, n)) for n in FILES} == ref
    for n in FILES + ("skipped.jsonl",):
        ids = [r["id"] for r in rows(store, n)]
        assert len(ids) == len(set(ids)), n
    assert store.manifest["stages"]["chats.balance"]["counts"]["per_trait"] == {"candour": 2, "curiosity": 2}


def test_scenarios_are_plans_that_reach_the_prompt_writers(tmp_path):
    def responder(messages, params):
        last = messages[-1].content
        if "Which is true of the reply?" in last:
            return "GENERIC"  # every prompt is hardened, so the harden prompt is sent
        return good_responder(messages, params)

    store, llm = run(tmp_path, responder)
    scenarios = read_jsonl(store.root / "generated" / "scenarios.jsonl", Scenario)
    assert len(scenarios) == 4
    for s in scenarios:
        assert s.description.startswith("A tenant whose rent went up") and "Shows" not in s.description
        assert s.shows.startswith("Nova says which rent rules it is sure of") and s.why.startswith("a confident wrong")
    sent = [m[-1].content for m, _ in llm.backend.calls]
    for marker in ("Write the first message that the user sends", "is too easy"):
        asked = [a for a in sent if marker in a]
        assert len(asked) == 4
        # The writers see the situation, never the plan's ideal answer (it would leak into the message).
        assert all(any(s.description in a for s in scenarios) for a in asked)
        assert not any(s.shows in a or s.why in a for s in scenarios for a in asked)
    # The prompt writer gets a sampled persona, length, register and messiness.
    writers = [a for a in sent if "Write the first message that the user sends" in a]
    assert all("The person who writes:" in a and "How they write:" in a for a in writers)
    # The prompt writer is told not to give away the plan, and a prompt naming the trait is still dropped.
    assert all("do not name any trait" in a for a in sent if "Write the first message" in a)
    for c in rows(store, "chats.jsonl"):
        assert not names_trait(c["messages"][0]["content"], "Candour", "candour")


def test_a_situation_without_a_plan_is_still_a_scenario(tmp_path):
    def responder(messages, params):
        last = messages[-1].content
        if "different situations in which a user talks to" in last:
            return "1. A retired teacher asks Nova whether a new investment app is safe to use."
        return good_responder(messages, params)

    store, llm = run(tmp_path, responder)
    scenarios = read_jsonl(store.root / "generated" / "scenarios.jsonl", Scenario)
    assert len(scenarios) == 4 and all(s.shows == s.why == "" and "retired teacher" in s.description
                                       for s in scenarios)
    asked = [m[-1].content for m, _ in llm.backend.calls if "Write the first message" in m[-1].content]
    assert asked and not any("How the trait should show" in a or "Why the trait matters" in a for a in asked)
    assert len(rows(store, "chats.jsonl")) == 4


def test_refine_keep_exit_returns_the_draft_byte_identical(tmp_path):
    """A scripted refiner (control flow, not the prompt's quality): <keep/> keeps the draft as it
    is, byte for byte; a rewrite is read from its <reply> tag, the commentary around it left out."""
    def keep(messages, params):
        if REFINE_MARK in messages[-1].content:
            return "<keep/>"
        return good_responder(messages, params)

    store, _ = run(tmp_path / "keep", keep)
    drafts = {c["id"]: c["messages"][1]["content"] for c in rows(store, "responses.jsonl")}
    chats = rows(store, "chats.jsonl")
    assert len(chats) == 4 and all(c["messages"][1]["content"] == drafts[c["id"]] for c in chats)
    assert all(r["unchanged"] and r["text"] == drafts[r["id"]] for r in rows(store, "refined.jsonl"))
    assert store.manifest["stages"]["chats.refine"]["counts"]["kept_as_is"] == 4

    def tagged(messages, params):
        if REFINE_MARK in messages[-1].content:
            return f"The draft hedges too much.\n<reply>{REFINED_OPENING} Check the lease first.</reply>\nDone."
        return good_responder(messages, params)

    store, _ = run(tmp_path / "tagged", tagged)
    first = [c["messages"][1]["content"] for c in rows(store, "chats.jsonl")]
    assert first and all(t == f"{REFINED_OPENING} Check the lease first." for t in first)
