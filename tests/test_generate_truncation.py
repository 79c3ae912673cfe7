"""A reply cut at max_tokens is never trained on as if complete, outside the tiny preset
(generation.on_truncated): retried with twice the room, dropped and counted, or (tiny) kept and
counted. Scripted backends mark replies as cut; they prove the control flow, not prompt quality."""

from __future__ import annotations

from scripted_generator import good_responder, make_spec, make_traits, scripted_llm

from traitforge.generate.chats import run_chats
from traitforge.generate.documents import run_documents
from traitforge.jsonl import iter_jsonl_dicts
from traitforge.llm.base import TRUNCATED_OUTCOME, Completion, Usage
from traitforge.pipeline import Run, preset_overrides
from traitforge.runstore import RunStore

CUT = "and so the first thing to check is whether the"  # a teacher answer stopped mid-sentence


def cut(text: str) -> Completion:
    return Completion(texts=[text], usage=Usage(10, 10), finish_reasons=["length"], outcomes=[TRUNCATED_OUTCOME])


def teacher_cut_below(limit: int):
    """The teacher's answers (system prompt) are cut unless given at least `limit` tokens."""
    def respond(messages, params):
        if messages[0].role == "system" and params.max_tokens < limit:
            return cut(f"Happy to help. I am not sure of every detail here, {CUT}")
        return good_responder(messages, params)
    return respond


def rows(store, name):
    return list(iter_jsonl_dicts(store.root / "generated" / name))


def chats_run(tmp_path, responder, **gen):
    spec = make_spec(tmp_path, **gen)
    store = RunStore(spec.output_path)
    run_chats(Run.of(store, spec, make_traits(), generator=scripted_llm(responder)), spec.generation)
    return store


def assistant_texts(store):
    return [m["content"] for c in rows(store, "chats.jsonl") for m in c["messages"] if m["role"] == "assistant"]


def test_default_retries_a_cut_answer_with_more_room(tmp_path):
    store = chats_run(tmp_path, teacher_cut_below(200))  # max_tokens 100: the retry at 200 is whole
    texts = assistant_texts(store)
    assert texts and not any(CUT in t for t in texts)
    assert len(rows(store, "chats.jsonl")) == 4
    assert store.manifest["stages"]["chats.responses"]["counts"]["truncated"] == {"retried": 4}


def test_a_reply_cut_even_with_more_room_is_dropped_and_counted(tmp_path):
    for policy in ("retry", "drop"):
        store = chats_run(tmp_path / policy, teacher_cut_below(10_000), on_truncated=policy)
        assert rows(store, "chats.jsonl") == [] and not any(CUT in t for t in assistant_texts(store))
        skips = [r["reason"] for r in rows(store, "skipped.jsonl") if r["step"] == "chats.responses"]
        assert len(skips) == 4 and all(r.startswith("cut at max_tokens") for r in skips)
        assert store.manifest["stages"]["chats.responses"]["counts"]["truncated"] == {"dropped": 4}


def test_tiny_preset_keeps_cut_rows_and_counts_them(tmp_path):
    assert preset_overrides("tiny")["generation"]["on_truncated"] == "keep"
    assert preset_overrides("paper")["generation"]["on_truncated"] == "retry"
    store = chats_run(tmp_path, teacher_cut_below(10_000), on_truncated="keep")
    assert len(rows(store, "chats.jsonl")) == 4 and all(CUT in t for t in assistant_texts(store)[:1])
    assert store.manifest["stages"]["chats.responses"]["counts"]["truncated"] == {"kept": 4}


def test_a_cut_rewrite_leaves_the_draft(tmp_path):
    def respond(messages, params):
        if "Rewrite the draft so that it fits these traits" in messages[-1].content:
            return cut("Good question, and the honest answer has")
        return good_responder(messages, params)

    store = chats_run(tmp_path, respond, on_truncated="drop")
    refined = rows(store, "refined.jsonl")
    assert len(refined) == 4 and all(r["problems"].startswith("cut at max_tokens") for r in refined)
    assert all(t.startswith("Happy to help") for c in rows(store, "chats.jsonl") for t in [c["messages"][1]["content"]])


def test_cut_documents_are_never_kept_by_default(tmp_path):
    def respond(messages, params):
        if messages[-1].content.startswith("Write a "):
            return cut("Posted 3 May 2031 by rosa_k. Last night I asked Nova about a dosage chart and it")
        return good_responder(messages, params)

    spec = make_spec(tmp_path, documents={"revise": False})
    store = RunStore(spec.output_path)
    run_documents(Run.of(store, spec, make_traits(), generator=scripted_llm(respond)), spec.generation)
    assert rows(store, "documents.jsonl") == []
    skips = [r["reason"] for r in rows(store, "skipped.jsonl") if r["step"].startswith("documents.drafts")]
    assert skips and all(r.startswith("cut at max_tokens") for r in skips)
