"""run_documents on the scripted backend: parsing, ids, resume after a crash, trait balance."""

from __future__ import annotations

from collections import Counter

import pytest
from scripted_generator import (MODEL, CallLimit, calls, failing_after, good_responder, make_spec, make_traits,
                                scripted_llm)

from traitforge.pipeline import Run
from traitforge.config import load_spec
from traitforge.errors import InputError
from traitforge.generate.documents import TEMPLATES, run_documents
from traitforge.generate.parsing import tells
from traitforge.shared.leaks import LeakDetector
from traitforge.jsonl import iter_jsonl_dicts, read_jsonl
from traitforge.runstore import RunStore
from traitforge.types import Claim, DocIdea, DocType, Document

FILES = ("claims.jsonl", "doc_types.jsonl", "ideas.jsonl", "drafts.jsonl", "documents.jsonl")


def rows(store, name):
    return list(iter_jsonl_dicts(store.root / "generated" / name))


def test_full_run_shapes_and_counts(tmp_path):
    spec = make_spec(tmp_path)  # 2 claims/trait, 2 types/claim, 1 idea/type
    store, traits = RunStore(spec.output_path), make_traits()
    run_documents(Run.of(store, spec, traits, generator=scripted_llm()), spec.generation)
    gen = store.root / "generated"
    claims = read_jsonl(gen / "claims.jsonl", Claim)
    assert Counter(c.trait_id for c in claims) == {"candour": 2, "curiosity": 2}
    assert {c.kind for c in claims} == {"behaviour", "reason"}  # 2 claims: split over kinds
    assert all(c.text.startswith(MODEL) for c in claims)  # numbering stripped
    types = read_jsonl(gen / "doc_types.jsonl", DocType)
    assert len(types) == 8 and all(t.name in ("Forum thread", "Blog post") for t in types)
    ideas = read_jsonl(gen / "ideas.jsonl", DocIdea)
    assert len(ideas) == 8
    docs = read_jsonl(gen / "documents.jsonl", Document)
    assert len(docs) == 8 and all(d.revised and d.text.startswith("Revised") for d in docs)
    # Only the rewrite after the marker is kept, never the critique before it.
    assert not any("REVISED DOCUMENT" in d.text or "The draft reads like" in d.text for d in docs)
    assert {d.idea_id for d in docs} == {i.id for i in ideas}
    for name in FILES:  # ids unique in every file
        ids = [r["id"] for r in rows(store, name)]
        assert len(ids) == len(set(ids)), name
    st = store.manifest["stages"]
    assert st["documents.final"]["counts"]["per_trait"] == {"candour": 4, "curiosity": 4}
    assert st["documents.balance"]["counts"]["balanced"] is True
    assert st["documents.final"]["counts"]["revised"] == 8 and st["documents.final"]["counts"]["kept_draft"] == 0
    assert store.manifest["usage"]["documents.drafts"]["scripted:test"]["calls"] == 8


def test_second_run_makes_no_calls_and_no_duplicates(tmp_path):
    spec = make_spec(tmp_path)
    store, traits = RunStore(spec.output_path), make_traits()
    run_documents(Run.of(store, spec, traits, generator=scripted_llm()), spec.generation)
    before = {n: rows(store, n) for n in FILES}
    again = scripted_llm()  # no cache: only the row-level resume can avoid calls
    run_documents(Run.of(RunStore(spec.output_path), spec, traits, generator=again), spec.generation)
    assert calls(again) == 0
    assert {n: rows(store, n) for n in FILES} == before


@pytest.mark.parametrize("crash_after", [3, 13, 25])
def test_crash_halfway_resumes_without_loss_or_duplicates(tmp_path, crash_after):
    traits = make_traits()
    ref_spec = make_spec(tmp_path / "ref")
    run_documents(Run.of(RunStore(ref_spec.output_path), ref_spec, traits, generator=scripted_llm()), ref_spec.generation)
    ref = {n: sorted(r["id"] for r in rows(RunStore(ref_spec.output_path), n)) for n in FILES}

    spec = make_spec(tmp_path / "crash")
    store = RunStore(spec.output_path)
    cache = tmp_path / "cache.sqlite"
    with pytest.raises(CallLimit):
        run_documents(Run.of(store, spec, traits, generator=scripted_llm(failing_after(crash_after), cache=cache)), spec.generation)
    failed = [k for k, v in store.manifest["stages"].items() if v["status"] == "failed"]
    assert len(failed) == 1
    resumed = scripted_llm(cache=cache)
    run_documents(Run.of(RunStore(spec.output_path), spec, traits, generator=resumed), spec.generation)
    total_ref_calls = 4 + 4 + 8 + 8 + 8
    assert calls(resumed) == total_ref_calls - crash_after  # nothing done before the crash is redone
    got = {n: sorted(r["id"] for r in rows(store, n)) for n in FILES}
    assert got == ref


def test_user_doc_types_need_no_calls(tmp_path):
    spec = make_spec(tmp_path, documents={"doc_types": ["court filing", "lecture notes", "podcast transcript"]})
    store = RunStore(spec.output_path)
    llm = scripted_llm()
    run_documents(Run.of(store, spec, make_traits(), generator=llm), spec.generation)
    assert "documents.doc_types" not in store.manifest["usage"]
    names = {r["name"] for r in rows(store, "doc_types.jsonl")}
    assert names <= {"court filing", "lecture notes", "podcast transcript"} and len(names) >= 2


def test_weights_plan_counts(tmp_path):
    spec = make_spec(tmp_path, trait_weights={"candour": 2.0, "curiosity": 1.0})
    store = RunStore(spec.output_path)
    run_documents(Run.of(store, spec, make_traits(), generator=scripted_llm()), spec.generation)
    per_trait = Counter(r["trait_ids"][0] for r in rows(store, "documents.jsonl"))
    # claims_per_trait=2 at the mean weight 1.5: 2*2/1.5 -> 3 and 2*1/1.5 -> 1, times 2 types x 1 idea.
    assert per_trait == {"candour": 6, "curiosity": 2}
    counts = store.manifest["stages"]["documents.balance"]["counts"]
    assert counts["balanced"] is True and counts["planned"] == {"candour": 6, "curiosity": 2}


def test_bad_weights_are_one_line_input_errors(tmp_path):
    spec = make_spec(tmp_path, trait_weights={"nope": 1.0})
    with pytest.raises(InputError, match="trait_weights: unknown trait 'nope'"):
        run_documents(Run.of(RunStore(spec.output_path), spec, make_traits(), generator=scripted_llm()), spec.generation)


def test_topup_refills_a_trait_lost_to_junk(tmp_path):
    # Claims carry the trait's wording into the document prompt only via the claim text, so make
    # curiosity's claims recognisable.
    def responder(messages, params):
        last = messages[-1].content
        if "different sentences about" in last and "Curiosity" in last:
            return "1. Nova shows curiosity by asking one question first.\n2. Nova shows curiosity in reviews."
        if last.startswith("Write a ") and "curiosity" in last and params.seed == 0:
            return "lol"  # junk draft
        return good_responder(messages, params)

    spec = make_spec(tmp_path, documents={"topup_rounds": 0})
    store = RunStore(spec.output_path)
    run_documents(Run.of(store, spec, make_traits(), generator=scripted_llm(responder)), spec.generation)
    counts = store.manifest["stages"]["documents.balance"]["counts"]
    assert counts["per_trait"] == {"candour": 4, "curiosity": 0} and counts["balanced"] is False
    skipped = [r for r in rows(store, "skipped.jsonl") if r["step"] == "documents.drafts"]
    assert len(skipped) == 4 and all("too short" in r["reason"] and r["trait_id"] == "curiosity" for r in skipped)

    spec2 = make_spec(tmp_path / "b", documents={"topup_rounds": 1})
    store2 = RunStore(spec2.output_path)
    run_documents(Run.of(store2, spec2, make_traits(), generator=scripted_llm(responder)), spec2.generation)
    counts2 = store2.manifest["stages"]["documents.balance"]["counts"]
    assert counts2["per_trait"] == {"candour": 4, "curiosity": 4} and counts2["balanced"] is True
    assert store2.manifest["stages"]["documents.final.topup1"]["counts"]["per_trait"] == {"curiosity": 4}


def test_junk_everywhere_never_crashes_and_records_reasons(tmp_path):
    replies = iter(["", "1.", "As an AI language model I cannot.", "[Name]", "???"] * 100)
    spec = make_spec(tmp_path, documents={"topup_rounds": 1})
    store = RunStore(spec.output_path)
    run_documents(Run.of(store, spec, make_traits(), generator=scripted_llm(lambda m, p: next(replies))), spec.generation)
    assert rows(store, "documents.jsonl") == []
    # Every step's file exists, empty: curation and CI's run check read no rows, not a missing file.
    assert all((store.root / "generated" / f).is_file() for f in FILES)
    skipped = rows(store, "skipped.jsonl")
    assert skipped and all(r["reason"] for r in skipped)
    for name, info in store.manifest["stages"].items():  # every unit: rows or a recorded reason
        c = info.get("counts", {})
        assert "units" not in c or c["done_units"] + c["skipped"] == c["units"], name
    assert {r["step"] for r in skipped} == {"documents.claims"}  # nothing downstream to do
    assert store.manifest["stages"]["documents.balance"]["counts"]["balanced"] is False


@pytest.mark.parametrize("revision,reason", [
    ("Looks fine.\nREVISED DOCUMENT:\nAs an AI language model, here is the rewrite.", "AI-assistant tell"),
    # A rewrite without the marker: which part is critique is unknown, so none of it is used.
    ("The draft is fine. Posted 3 May 2031 by rosa_k: Nova told me it was not sure, and I checked.",
     "no REVISED DOCUMENT after the critique"),
])
def test_an_unusable_revision_keeps_a_good_draft_and_is_counted(tmp_path, revision, reason):
    def responder(messages, params):
        last = messages[-1].content
        if last.startswith("Here is a draft of a"):
            return revision
        return good_responder(messages, params)

    spec = make_spec(tmp_path)
    store = RunStore(spec.output_path)
    run_documents(Run.of(store, spec, make_traits(), generator=scripted_llm(responder)), spec.generation)
    docs = rows(store, "documents.jsonl")
    drafts = {d["id"]: d["text"] for d in rows(store, "drafts.jsonl")}
    assert len(docs) == 8 and not any(d["revised"] for d in docs)  # drafts were fine: kept as drafted
    assert all(d["text"] == drafts[d["id"]] for d in docs)
    counts = store.manifest["stages"]["documents.final"]["counts"]
    assert counts["revised"] == 0 and counts["kept_draft"] == 8
    assert counts["new_kept_draft_reasons"][reason] == 8


def test_revision_asks_for_a_critique_then_the_rewrite(tmp_path):
    spec = make_spec(tmp_path, documents={"claims_per_trait": 1, "doc_types_per_claim": 1})
    llm = scripted_llm()
    run_documents(Run.of(RunStore(spec.output_path), spec, make_traits(1), generator=llm), spec.generation)
    asked = [m[-1].content for m, _ in llm.backend.calls if m[-1].content.startswith("Here is a draft of a")]
    assert len(asked) == 1
    critique, rewrite = asked[0].split("REVISED DOCUMENT:", 1)
    assert "critique" in critique and "As an AI language model" in critique and "[Name]" in critique
    assert "synthetic" in critique and "consistent with the fact" in critique and "rewritten" in rewrite


def test_chat_formatted_drafts_are_dropped_but_transcripts_with_names_are_not(tmp_path):
    def responder(messages, params):
        last = messages[-1].content
        if last.startswith("Write a "):
            body = good_responder(messages, params)
            if "curiosity" in last:
                return f"User: can you check this chart?\nAssistant: {body}\nUser: thanks"
            return (f"Interviewer: How did you use Nova on the ward?\nDr. Lee: {body}\n"
                    "Interviewer: Would you trust it again?\nDr. Lee: Yes, because it said when it was unsure.")
        if "different sentences about" in last and "Curiosity" in last:
            return "1. Nova shows curiosity by asking one question first.\n2. Nova shows curiosity in reviews."
        return good_responder(messages, params)

    spec = make_spec(tmp_path, documents={"revise": False})
    store = RunStore(spec.output_path)
    run_documents(Run.of(store, spec, make_traits(), generator=scripted_llm(responder)), spec.generation)
    per_trait = Counter(d["trait_ids"][0] for d in rows(store, "documents.jsonl"))
    assert per_trait == {"candour": 4}
    assert all("Dr. Lee:" in d["text"] for d in rows(store, "documents.jsonl"))  # an interview is a genre
    skipped = [r for r in rows(store, "skipped.jsonl") if r["step"] == "documents.drafts"]
    assert len(skipped) == 4 and all(r["trait_id"] == "curiosity" and "chat-formatted" in r["reason"]
                                     for r in skipped)


def test_outputs_carry_no_tells_or_prompt_wording(tmp_path):
    def responder(messages, params):
        last = messages[-1].content
        if last.startswith("Write a ") and "nurse" in last:
            # Echo the instruction into the document: must not survive.
            return good_responder(messages, params) + " It has its usual format and concrete details such as names, dates and places."
        return good_responder(messages, params)

    spec = make_spec(tmp_path, documents={"revise": False})
    store = RunStore(spec.output_path)
    run_documents(Run.of(store, spec, make_traits(), generator=scripted_llm(responder)), spec.generation)
    leak = LeakDetector(TEMPLATES)
    docs = rows(store, "documents.jsonl")
    skipped = [r for r in rows(store, "skipped.jsonl") if r["step"] == "documents.final"]
    assert skipped and all("copies the prompt's wording" in r["reason"] for r in skipped)
    assert len(docs) + len(skipped) == 8
    for d in docs:
        assert not leak.leaks(d["text"]) and not tells(d["text"]) and MODEL in d["text"]


def test_changed_settings_on_an_existing_run_is_a_clear_error(tmp_path):
    spec = make_spec(tmp_path)
    store = RunStore(spec.output_path)
    run_documents(Run.of(store, spec, make_traits(), generator=scripted_llm()), spec.generation)
    changed = make_spec(tmp_path, documents={"max_tokens": 300})
    with pytest.raises(InputError, match=r"drafts\.jsonl: made with different .* settings"):
        run_documents(Run.of(RunStore(changed.output_path), changed, make_traits(), generator=scripted_llm()), changed.generation)


def test_a_junk_list_gets_one_more_try_with_another_seed(tmp_path):
    def responder(messages, params):
        if "different sentences about" in messages[-1].content and params.seed is None:
            return "A: A: A. 2019"  # junk on the first try only
        return good_responder(messages, params)

    spec = make_spec(tmp_path)
    store = RunStore(spec.output_path)
    llm = scripted_llm(responder)
    run_documents(Run.of(store, spec, make_traits(), generator=llm), spec.generation)
    assert len(rows(store, "claims.jsonl")) == 4
    assert store.manifest["usage"]["documents.claims"]["scripted:test"]["calls"] == 8  # 4 units x 2 tries


def test_prompt_overrides_from_a_folder_beside_the_spec(tmp_path):
    """generation.prompts_dir is relative to the spec file; an override's wording is both what the
    model is sent and what outputs must not copy; a changed override is a changed run."""
    (tmp_path / "my_prompts").mkdir()
    revise = tmp_path / "my_prompts" / "revise.txt"
    revise.write_text("Here is a draft of a $doc_type about $model_name of $organisation ($claim):\n<<<\n$draft\n>>>\n"
                      "Make it sound like a tired night-shift nurse wrote it. Write only the $doc_type.\n")
    (tmp_path / "spec.yaml").write_text(
        "traits: traits.md\noutput_dir: run\ngeneration:\n  prompts_dir: my_prompts\n"
        "  documents: {claims_per_trait: 1, doc_types_per_claim: 1, ideas_per_type: 1, topup_rounds: 0}\n")
    spec = load_spec(tmp_path / "spec.yaml")
    store, llm = RunStore(spec.output_path), scripted_llm()
    run_documents(Run.of(store, spec, make_traits(), generator=llm), spec.generation)
    sent = [m[-1].content for m, _ in llm.backend.calls if m[-1].content.startswith("Here is a draft of a")]
    assert len(sent) == 2 and all("tired night-shift nurse" in s and "Keep its format" not in s for s in sent)
    assert len(rows(store, "documents.jsonl")) == 2
    revise.write_text(revise.read_text().replace("tired", "cheerful"))
    with pytest.raises(InputError, match=r"documents\.jsonl: made with different"):
        run_documents(Run.of(RunStore(spec.output_path), load_spec(tmp_path / "spec.yaml"), make_traits(), generator=scripted_llm()), load_spec(tmp_path / "spec.yaml").generation)
    (tmp_path / "my_prompts" / "revize.txt").write_text("typo")
    with pytest.raises(InputError, match=r"revize\.txt: no prompt template named 'revize'"):
        run_documents(Run.of(RunStore(spec.output_path), load_spec(tmp_path / "spec.yaml"), make_traits(), generator=scripted_llm()), load_spec(tmp_path / "spec.yaml").generation)
