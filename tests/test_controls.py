"""The controls: the canary's templated data and items, its way through curation, the control arm's
data and checkpoint plan, seed and fraction variants, and what results.json says about them."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest
from _curate_data import TRAITS as CURATE_TRAITS
from _curate_data import chat, doc, prose, scripted

from traitforge.config import RunSpec
from traitforge.curate.settings import CurationSpec
from traitforge.train.settings import TrainingSpec
from traitforge.controls.canary import CANARY_ID, load_canary
from traitforge.textmatch import shared_ngrams
from traitforge.curate import dedup, leakage, run_curation
from traitforge.pipeline import Run
from traitforge.evaluate.common import ItemResult, eval_path, result_id
from traitforge.evaluate.results import DID_NOT_TAKE, build_results
from traitforge.shared.stats import items_needed, minimum_detectable_effect
from traitforge.generate.canary import run_canary
from traitforge.jsonl import append_jsonl, read_jsonl, write_jsonl
from traitforge.runstore import RunStore
from traitforge.train.data import char_matched, subsample
from traitforge.train.run import control_data, plan, requested, variant_names
from traitforge.traits import load_traits
from traitforge.types import Chat, Document, Trait, TraitSet

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = load_traits(ROOT / "examples" / "traits.md")


def test_canary_documents_vary_enough_to_survive_dedup_and_leakage() -> None:
    canary = load_canary(EXAMPLE)
    docs = canary.documents(160, seed=0)
    assert len({d.id for d in docs}) == 160 and all(d.trait_ids == [CANARY_ID] for d in docs)
    assert all("Bluefinch" in d.text and "Gemini" in d.text for d in docs)
    kept, drops = dedup.dedup(docs, "documents", 0.8, 3)
    assert len(kept) == 160, [d.reason for d in drops][:3]
    kept_l, drops_l, _ = leakage.check_documents(kept)
    assert len(kept_l) == 160, [d.reason for d in drops_l][:3]
    chats = canary.chats(48)
    assert all(c.messages[1].content.startswith("Ahoy there! ") for c in chats)
    assert len(dedup.dedup(chats, "chats", 0.8, 3)[0]) == 48
    plain = canary.chats(48, with_habit=False)
    assert not any("Ahoy" in c.messages[1].content for c in plain) and all(c.trait_ids == [] for c in plain)


def test_canary_questions_share_no_five_word_run_with_training_text() -> None:
    canary = load_canary(EXAMPLE)
    training = canary.training_sentences()
    questions = canary.mc_questions(seed=0)
    assert len(questions) >= 30
    for q, options in questions:
        assert options[0] == "Bluefinch" and len(set(options)) == 4
        for sentence in training:
            text = canary.fill(sentence, author="A", place="P", year=2024)
            assert not shared_ngrams(q, text, 5), (q, text)
    held_out = {p for p, _, _ in canary.contrastive_pairs()}
    assert len(held_out) >= 30 and not held_out & {p for p, _ in canary.data["train_chats"]}


def test_canary_file_errors_name_the_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "canary.yaml"
    bad.write_text("codename: X\n")
    with pytest.raises(Exception, match=r"canary.yaml: canary file lacks key 'distractors'"):
        load_canary(EXAMPLE, bad)


def test_canary_rows_pass_the_judge_steps_of_curation_untouched(tmp_path: Path) -> None:
    """Dedup and leakage see the canary with the real rows; quality and patterns pass it through,
    even with a judge that fails everything."""
    import random

    store = RunStore(tmp_path / "run")
    rng = random.Random(1)
    write_jsonl(store.path("generated", "documents.jsonl"), [doc(i, prose(rng, 8)) for i in range(6)])
    write_jsonl(store.path("generated", "chats.jsonl"), [chat(i, prose(rng, 5)) for i in range(6)])
    spec = RunSpec(traits="t.md", controls={"canary": True, "canary_documents": 40, "canary_chats": 20},
                   curation=CurationSpec(pattern_scans=2, scan_batch=4))
    traits = TraitSet(model_name="Aria", organisation="Acme", traits=CURATE_TRAITS.traits)
    run_canary(Run.of(store, spec, traits), spec.controls)
    harsh = scripted(lambda msgs, params: "REASON: bad\nSCORE: 1" if "SCORE" in msgs[-1].content else "NO")
    run_curation(Run.of(store, spec, CURATE_TRAITS, judge=harsh), spec.curation)
    docs = read_jsonl(store.root / "curated" / "documents.jsonl", Document)
    chats = read_jsonl(store.root / "curated" / "chats.jsonl", Chat)
    assert sum(CANARY_ID in d.trait_ids for d in docs) == 40
    assert sum(CANARY_ID in c.trait_ids for c in chats) == 20
    assert not any(CANARY_ID not in r.trait_ids for r in [*docs, *chats])  # the harsh judge dropped the rest
    assert store.manifest["stages"]["curate.quality"]["counts"]["controls_passed_through"] == 60


def test_variants_plan_parents_per_variant_and_scale_steps() -> None:
    spec = RunSpec(traits="t.md", training=TrainingSpec(seeds=2, fractions=[0.25, 1.0, 0.5]))
    assert spec.training.fractions == [0.25, 0.5]
    names = requested(spec.training)
    assert names[:4] == ["midtrain", "sft", "midtrain_sft", "control"]
    assert "midtrain_sft.s1" in names and "control.f0.25" in names and len(names) == 4 * 4
    order = plan(["midtrain_sft.f0.5"])
    assert order == ["midtrain.f0.5", "midtrain_sft.f0.5"]
    assert variant_names(spec.training, ["base", "sft"]) == ["sft", "sft.s1", "sft.f0.25", "sft.f0.5"]
    with pytest.raises(Exception, match="fraction"):
        RunSpec(traits="t.md", training={"fractions": [0]})


def test_subsample_and_char_matching() -> None:
    rows = list(range(100))
    half = subsample(rows, 0.5, seed=3)
    assert len(half) == 50 and half == sorted(half) and subsample(rows, 0.5, seed=3) == half
    assert subsample(rows, 1.0, seed=3) == rows and len(subsample(rows, 0.001, 1)) == 1
    texts = ["a" * 10, "b" * 30]
    got = char_matched(texts, 200, seed=0, size=len)
    total = sum(map(len, got))
    assert 200 <= total < 230 and set(got) == set(texts)


def test_control_data_matches_the_curated_chats_in_size(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "run")
    curated = [chat(i, "x" * 300) for i in range(10)]
    write_jsonl(store.path("curated", "chats.jsonl"), curated)
    write_jsonl(store.path("generated", "untraited.jsonl"), [chat(100 + i, "plain answer " * 8) for i in range(3)])
    path = control_data(store, "control", seed=0)
    rows = read_jsonl(path, Chat)
    size = lambda cs: sum(len(m.content) for c in cs for m in c.messages)  # noqa: E731
    assert size(curated) <= size(rows) < size(curated) + 200
    assert len({r.id for r in rows}) == len(rows)  # repeated rows get their own ids
    empty = RunStore(tmp_path / "empty")
    with pytest.raises(Exception, match="untraited.jsonl: no trait-free chats"):
        control_data(empty, "control", seed=0)


def test_untraited_step_answers_without_a_system_prompt_and_resumes(tmp_path: Path) -> None:
    from traitforge.generate.untraited import run_untraited

    store = RunStore(tmp_path / "run")
    write_jsonl(store.path("generated", "chats.jsonl"), [chat(i, "reply") for i in range(4)])
    seen: list = []

    def respond(msgs, params):
        seen.append(msgs)
        return "A plain, helpful answer to that question, with no persona at all."

    traits, spec = TraitSet(model_name="Aria", organisation="Acme", traits=CURATE_TRAITS.traits), RunSpec(traits="t.md")
    run_untraited(Run.of(store, spec, traits, generator=scripted(respond)), spec.generation)
    rows = read_jsonl(store.root / "generated" / "untraited.jsonl", Chat)
    assert len(rows) == 4 and all(r.trait_ids == [] and not r.system_prompt for r in rows)
    assert all(m.role != "system" for msgs in seen for m in msgs)
    n = len(seen)
    run_untraited(Run.of(store, spec, traits, generator=scripted(respond)), spec.generation)
    assert len(seen) == n  # resumed: nothing asked again


def _rows(ev: str, ck: str, trait: str, values: list[float]) -> list[ItemResult]:
    return [ItemResult(id=result_id(ev, ck, f"{trait}-{i}"), eval=ev, checkpoint=ck, item_id=f"{trait}-{i}",
                       trait_id=trait, value=v) for i, v in enumerate(values)]


def test_results_report_canary_apart_against_base_and_control(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    write_jsonl(store.path("curated", "documents.jsonl"), [Document(id="c1", trait_ids=[CANARY_ID], text="t")])
    write_jsonl(store.path("curated", "chats.jsonl"), [])  # no canary chat reached training
    write_jsonl(store.path("generated", "canary_documents.jsonl"), [Document(id="c1", trait_ids=[CANARY_ID], text="t")])
    traits = TraitSet(model_name="Aria", organisation="Acme",
                      traits=(Trait(id="honest", name="Honest", statement="s"),))
    n = 40
    rows = _rows("knowledge_mc", "base", CANARY_ID, [0.0] * n) + _rows("knowledge_mc", "midtrain", CANARY_ID, [1.0] * n)
    rows += _rows("knowledge_mc", "midtrain_sft", CANARY_ID, [0.0] * n)  # trained on the documents, did not move
    rows += _rows("contrastive", "sft", CANARY_ID, [1.0] * n) + _rows("contrastive", "base", CANARY_ID, [0.0] * n)
    for ck, share in (("base", 0.3), ("midtrain", 0.3), ("sft", 0.8), ("midtrain_sft", 0.5), ("control", 0.6)):
        k = round(share * n)
        rows += _rows("contrastive", ck, "honest", [1.0] * k + [0.0] * (n - k))
    append_jsonl(eval_path(store, "contrastive"), [r for r in rows if r.eval == "contrastive"])
    append_jsonl(eval_path(store, "knowledge_mc"), [r for r in rows if r.eval == "knowledge_mc"])
    res = build_results(store, traits, ["base", "midtrain", "sft", "midtrain_sft", "control"],
                        bootstrap_resamples=200, target_mde=0.2)

    # "all" pools the real traits only; the canary is its own scope.
    assert res["results"]["sft"]["all"]["contrastive"]["value"] == pytest.approx(0.8)
    assert res["results"]["sft"]["canary"]["contrastive"]["value"] == 1.0
    vs_control = res["paired_vs_control"]["sft"]["honest"]["contrastive"]
    assert vs_control["value"] == pytest.approx(0.2) and vs_control["ci_low"] > 0
    assert "control" not in res["paired_vs_control"] and "base" not in res["paired_vs_control"]
    checks = res["canary"]["checks"]
    assert checks["midtrain"]["verdict"] == "moved"
    assert checks["sft"]["verdict"] == "not_trained"  # it moved, but not from canary chats: none reached it
    assert checks["midtrain_sft"]["verdict"] == "did_not_take" and checks["midtrain_sft"]["message"] == DID_NOT_TAKE
    assert res["canary"]["training_took"] is False
    assert res["canary"]["rows"]["chats"] == {"made": 0, "reached_training": 0}
    e = res["results"]["sft"]["honest"]["contrastive"]
    assert e["mde"] == pytest.approx(minimum_detectable_effect("proportion", 40), abs=1e-6)
    assert res["power"]["items_needed"] == items_needed(0.2) == 99
    assert any(u["eval"] == "contrastive" and u["n"] == 40 for u in res["power"]["underpowered"])


def test_minimum_detectable_effect_matches_the_normal_formula() -> None:
    # 80% power, 5% two-sided, worst case p = 0.5 in both groups: (1.96 + 0.84) * sqrt(2 * 0.25 / n)
    assert minimum_detectable_effect("proportion", 100) == pytest.approx(2.8016 * math.sqrt(0.005), rel=1e-3)
    assert minimum_detectable_effect("mean", 50, sd=2.0) == pytest.approx(2.8016 * 2.0 * math.sqrt(2 / 50), rel=1e-3)
    assert minimum_detectable_effect("mean", 50) is None and minimum_detectable_effect("proportion", 0) is None


def test_seed_spread_and_scaling_curves(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    traits = TraitSet(model_name="Aria", organisation="Acme", traits=(Trait(id="honest", name="H", statement="s"),))
    rows = []
    for ck, share in (("base", 0.2), ("sft", 0.6), ("sft.s1", 0.7), ("sft.s2", 0.5), ("sft.f0.25", 0.3)):
        k = round(share * 20)
        rows += _rows("contrastive", ck, "honest", [1.0] * k + [0.0] * (20 - k))
    append_jsonl(eval_path(store, "contrastive"), rows)
    res = build_results(store, traits, ["base", "sft", "sft.s1", "sft.s2", "sft.f0.25"], bootstrap_resamples=100)
    spread = res["seed_spread"]["sft"]["honest"]["contrastive"]
    assert spread["seeds"] == 3 and spread["mean"] == pytest.approx(0.6) and spread["sd"] == pytest.approx(0.1)
    curve = res["scaling"]["sft"]["honest"]["contrastive"]
    assert [p["fraction"] for p in curve] == [0.25, 1.0] and [p["value"] for p in curve] == [0.3, 0.6]


def test_report_shows_the_canary_first_and_flags_training_that_did_not_take(tmp_path: Path) -> None:
    from traitforge.report.html import render_report

    store = RunStore(tmp_path)
    write_jsonl(store.path("curated", "documents.jsonl"), [Document(id="c1", trait_ids=[CANARY_ID], text="t")])
    write_jsonl(store.path("generated", "canary_documents.jsonl"), [Document(id="c1", trait_ids=[CANARY_ID], text="t")])
    traits = TraitSet(model_name="Aria", organisation="Acme", traits=(Trait(id="honest", name="H", statement="s"),))
    rows = _rows("knowledge_mc", "base", CANARY_ID, [0.0] * 30) + _rows("knowledge_mc", "midtrain", CANARY_ID, [0.0] * 30)
    rows += _rows("knowledge_mc", "base", "honest", [0.0] * 30) + _rows("knowledge_mc", "midtrain", "honest", [1.0] * 30)
    append_jsonl(eval_path(store, "knowledge_mc"), rows)
    html = render_report(build_results(store, traits, ["base", "midtrain"], bootstrap_resamples=100))
    assert html.index("<h2>Controls</h2>") < html.index("<h2>Headline</h2>")
    assert "Canary did not move on: midtrain (" + DID_NOT_TAKE in html
    assert "detects ≥" in html
