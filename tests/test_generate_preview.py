"""`traitforge generate docs|chats TARGET --limit N`: the real pipeline at preview sizes, in RUN/preview/."""

from __future__ import annotations

import subprocess
import sys

from scripted_generator import calls, make_spec, make_traits, scripted_llm

from traitforge.pipeline import Run
from traitforge.generate.preview import format_items, preview_spec, run_preview
from traitforge.runstore import RunStore
from traitforge.types import Chat, Document


def test_document_preview_makes_n_items_over_the_first_traits_and_leaves_the_run_alone(tmp_path):
    spec = make_spec(tmp_path)
    store, traits = RunStore(spec.output_path), make_traits(3)
    llm = scripted_llm(cache=tmp_path / "cache.sqlite")
    docs = run_preview(Run.of(store, spec, traits, generator=llm), spec.generation, "documents", 2)
    assert len(docs) == 2 and all(isinstance(d, Document) and d.text for d in docs)
    assert {d.trait_ids[0] for d in docs} == {"candour", "curiosity"}  # first N traits, one each
    assert not (store.root / "generated").exists()  # the run's own files are untouched
    assert (store.root / "preview" / "documents" / "generated" / "documents.jsonl").is_file()
    # The same preview again is served from the cache: reading it twice costs nothing.
    before = calls(llm)
    again = run_preview(Run.of(store, spec, traits, generator=llm), spec.generation, "documents", 2)
    assert calls(llm) == before and [d.text for d in again] == [d.text for d in docs]
    text = format_items(docs)
    assert text.count("=== ") == 2 and docs[0].text.strip() in text


def test_chat_preview_has_no_system_prompt_and_spreads_over_traits(tmp_path):
    spec = make_spec(tmp_path, chats={"multiturn_share": 0.0})
    store, traits = RunStore(spec.output_path), make_traits(2)
    chats = run_preview(Run.of(store, spec, traits, generator=scripted_llm()), spec.generation, "chats", 3)
    assert len(chats) == 3 and all(isinstance(c, Chat) for c in chats)
    assert all(m.role != "system" for c in chats for m in c.messages)
    assert "user:" in format_items(chats) and "assistant:" in format_items(chats)


def test_preview_sizes_are_the_smallest_that_give_n():
    spec = make_spec(__import__("pathlib").Path("/tmp"), batch=True)
    pspec, subset = preview_spec(spec.generation, make_traits(3), "documents", 5)
    d = pspec.documents
    assert len(subset.traits) == 3 and (d.claims_per_trait, d.doc_types_per_claim, d.ideas_per_type) == (1, 1, 2)
    assert pspec.batch is False
    pspec, subset = preview_spec(spec.generation, make_traits(3), "chats", 1)
    assert len(subset.traits) == 1 and pspec.chats.scenarios_per_trait == 1


def test_generate_command_rejects_a_bad_target_form():
    r = subprocess.run([sys.executable, "-m", "traitforge.cli", "generate", "poems", "a", "b"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "[docs|chats|all] TARGET" in r.stderr
