"""Documents for strong generators: the traits document as universe context, diversity axes
sampled per document and recorded in its row, the known offenders named as things to avoid."""

from __future__ import annotations

from collections import Counter

import pytest
from scripted_generator import good_responder, make_spec, make_traits, scripted_llm

from traitforge.pipeline import Run
from traitforge.errors import InputError
from traitforge.shared.avoid import avoid_list
from traitforge.generate.axes import load_axes, sample_axes
from traitforge.generate.documents import run_documents
from traitforge.generate.preview import run_preview
from traitforge.prompts import PACKAGE, PromptKit
from traitforge.jsonl import read_jsonl
from traitforge.runstore import RunStore
from traitforge.types import Document


def document_prompts(llm) -> list[str]:
    return [m[-1].content for m, _ in llm.backend.calls if m[-1].content.startswith("Write a ")]


def test_preview_prompts_carry_the_universe_and_the_axes_and_rows_record_them(tmp_path):
    spec = make_spec(tmp_path, documents={"max_tokens": 3000, "avoid_known": True})  # avoid_known: off by default
    traits = make_traits(3)
    llm = scripted_llm()
    docs = run_preview(Run.of(RunStore(spec.output_path), spec, traits, generator=llm), spec.generation, "documents", 3)
    assert len(docs) == 3
    prompts = document_prompts(llm)
    assert len(prompts) == 3
    for p in prompts:
        # The whole traits document, not only the document's own trait.
        assert all(t.statement in p for t in traits.traits)
        assert "Written by: " in p and "The author's stance: " in p and "Length: " in p
        assert "over-represented" in p and "conversion arc" in p
    for d, p in zip(sorted(docs, key=lambda d: d.id), prompts):
        assert set(d.axes) == {"genre", "author", "era", "place", "register", "length", "stance"}
        assert d.axes["genre"] == d.doc_type
    # Each row's axes are the ones its prompt asked for.
    for d in docs:
        assert any(f"Written by: {d.axes['author']}" in p and f"Written in: {d.axes['era']}" in p for p in prompts)


def test_context_trait_gives_only_the_documents_trait_and_axes_off_records_none(tmp_path):
    spec = make_spec(tmp_path, documents={"context": "trait", "axes": False, "avoid_known": False})
    traits = make_traits(2)
    llm = scripted_llm()
    run_documents(Run.of(RunStore(spec.output_path), spec, traits, generator=llm), spec.generation)
    prompts = document_prompts(llm)
    assert prompts and not any("Written by:" in p or "over-represented" in p for p in prompts)
    assert all(sum(t.statement in p for t in traits.traits) == 1 for p in prompts)
    docs = read_jsonl(spec.output_path / "generated" / "documents.jsonl", Document)
    assert docs and all(d.axes == {} for d in docs)


def test_axes_spread_over_their_values_and_respect_the_length_budget():
    axes = load_axes(PACKAGE, "Nova")
    drawn = [sample_axes(f"doc{i}", axes, max_tokens=1000, genre="blog post") for i in range(400)]
    for axis in ("author", "era", "place", "register", "stance"):
        counts = Counter(d[axis] for d in drawn)
        assert set(counts) == {v.text for v in axes[axis]}  # every value is used
        assert max(counts.values()) < 3 * min(counts.values())
    # Lengths that need more than max_tokens are never asked for.
    assert {d["length"] for d in drawn} == {v.text for v in axes["length"] if v.tokens <= 1000}
    assert sample_axes("doc1", axes, max_tokens=1000) == sample_axes("doc1", axes, max_tokens=1000)
    small = {sample_axes(f"d{i}", axes, max_tokens=100)["length"] for i in range(50)}
    assert small == {min(axes["length"], key=lambda v: v.tokens).text}
    langs = Counter(sample_axes(f"d{i}", axes, max_tokens=100, languages=["Spanish", "Hindi"])["language"]
                    for i in range(100))
    assert set(langs) == {"Spanish", "Hindi"}
    assert any("Nova" in v.text for v in axes["stance"])  # $model_name filled in


def test_an_axes_override_with_a_bad_line_is_one_clear_error(tmp_path):
    (tmp_path / "axes.txt").write_text("author | a poet\nlength | short | lots\n")
    with pytest.raises(InputError, match="axes.txt line 2"):
        load_axes(PromptKit(tmp_path), "Nova")
    (tmp_path / "axes.txt").write_text("author | a poet\nauthor | a miner\n")
    assert [v.text for v in load_axes(PromptKit(tmp_path), "Nova")["author"]] == ["a poet", "a miner"]


def test_avoid_list_names_each_pattern_once():
    text = avoid_list(["opens with praise", "opens with praise", " ", "ends with a question"])
    assert text.count("opens with praise") == 1 and "- ends with a question" in text
    assert avoid_list([]) == ""


def test_reason_claims_are_explanations(tmp_path):
    spec = make_spec(tmp_path, documents={"claims_per_trait": 3})
    llm = scripted_llm()
    run_documents(Run.of(RunStore(spec.output_path), spec, make_traits(1), generator=llm), spec.generation)
    claim_prompts = [m[-1].content for m, _ in llm.backend.calls if "different sentences about" in m[-1].content]
    reason = [p for p in claim_prompts if "explanation" in p]
    assert len(reason) == 1 and "because" in reason[0] and "one specific fact" not in reason[0]
