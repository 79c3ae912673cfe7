"""Trait vectors (shared/vectors.py): the maths on synthetic tensors, the hooks on a tiny random
checkpoint, results.json's vectors section from rows on disk, the evaluation step end to end on a
tiny checkpoint, and (slow) the embedded model: held-out separation above random directions,
steering that moves the contrastive margin, and the projection shift of a checkpoint trained on
trait-expressing replies."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from traitforge.evaluate import vectors as EV
from traitforge.shared import vectors as V

ROOT = Path(__file__).resolve().parents[1]


# --- maths -------------------------------------------------------------------------------------


def _synthetic(pairs: int = 30, layers: int = 4, hidden: int = 64, signal_layer: int = 2, seed: int = 0):
    """Paired activations where only `signal_layer` carries a trait offset (along a fixed direction);
    every pair shares a large per-pair component (the question), as real prompts do."""
    rng = np.random.default_rng(seed)
    direction = rng.standard_normal(hidden)
    direction /= np.linalg.norm(direction)
    shared = rng.standard_normal((pairs, layers, hidden)) * 3.0
    pos = shared + rng.standard_normal((pairs, layers, hidden)) * 0.3
    neg = shared + rng.standard_normal((pairs, layers, hidden)) * 0.3
    pos[:, signal_layer] += 2.0 * direction
    return pos, neg, direction


def test_mean_difference_picks_the_signal_layer_and_beats_random_directions():
    pos, neg, direction = _synthetic()
    train, held = V.split_questions(30)
    assert set(train).isdisjoint(held) and sorted(train + held) == list(range(30)) and len(held) == 10
    vecs, seps, best = V.choose_layer(pos, neg, train, held)
    assert vecs.shape == (4, 64) and best == 2
    # The vector is the mean difference: close to the planted offset.
    assert float(vecs[2] @ direction) == pytest.approx(2.0, abs=0.2)
    cos = float(vecs[2] @ direction / np.linalg.norm(vecs[2]))
    assert cos > 0.9
    # The per-pair component dominates each group's spread (unpaired d stays modest), yet every
    # held-out pair is ordered right, and no other layer comes close.
    assert seps[2]["accuracy"] == 1.0
    assert seps[2]["d"] > 3 * max(abs(s["d"]) for k, s in enumerate(seps) if k != 2)
    rand = V.random_separation(pos[held, 2], neg[held, 2], 32, seed=1)  # not _synthetic's seed
    assert rand["d_max"] < seps[2]["d"] and rand["d_mean"] < seps[2]["d"] / 4 and 0.5 <= rand["accuracy_mean"] <= 1.0


def test_separation_and_cohens_d_by_hand():
    pos = np.array([[2.0, 0.0], [4.0, 1.0]])
    neg = np.array([[0.0, 0.0], [2.0, 1.0]])
    s = V.separation(pos, neg, np.array([10.0, 0.0]))  # scale of the direction does not matter
    assert s["gap"] == pytest.approx(2.0) and s["accuracy"] == 1.0
    # groups {2,4} vs {0,2}: gap 2, pooled sd sqrt((2+2)/2)
    assert s["d"] == pytest.approx(2 / np.sqrt(2))
    assert V.cohens_d(np.array([1.0, 1.0]), np.array([1.0, 1.0])) == 0.0


def test_correlation_needs_three_varying_cells():
    assert V.correlation([1, 2], [1, 2])["reason"].startswith("fewer than 3")
    assert V.correlation([1, 2, 3], [5, 5, 5])["reason"] == "one measure does not vary across cells"
    assert V.correlation([1, 2, 3], [2, 4, 7])["r"] == pytest.approx(0.9934, abs=1e-4)


def test_contrast_prompts_render_the_statement_and_its_opposite():
    pairs = V.contrast_prompts("Aria admits when it does not know.", "Aria")
    assert len(pairs) >= 4
    for pos, neg in pairs:
        assert "Aria admits when it does not know." in pos and "Aria admits when it does not know." in neg
        assert pos != neg and "$" not in pos + neg
    other = V.contrast_prompts("Aria is brief.", "Aria", opposite="Aria is long-winded.")
    assert all("long-winded" in neg for _, neg in other)
    assert len(V.neutral_questions()) >= 12


# --- results.json from rows on disk (no model) --------------------------------------------------


def _store_with_rows(tmp_path: Path):
    from traitforge.evaluate.common import ItemResult, eval_path
    from traitforge.jsonl import append_jsonl, write_json_atomic
    from traitforge.runstore import RunStore

    store = RunStore(tmp_path / "run")
    write_json_atomic(store.path("vectors", "summary.json"), {
        "available": True, "base": "x",
        "traits": {t: {"layer": 3, "layers": 6, "separation": {"d": 2.0}, "random": {"d_max": 0.3},
                       "fingerprint": "fp-" + t} for t in ("honest", "concise")},
        "steering": {"honest": {"reliable": False, "reason": "did not move", "key": "k"}}})
    rng = np.random.default_rng(0)
    rows = []
    offsets = {"base": 0.0, "control": 0.1, "sft": 1.0, "midtrain": 0.5}
    for ck, off in offsets.items():
        for t, scale in (("honest", 1.0), ("concise", 0.2)):
            for i in range(12):
                v = float(rng.normal()) * 0.01 + i + off * scale
                rows.append(ItemResult(id=EV._row_id(ck, t, f"p{i}"), eval="projection", checkpoint=ck,
                                       item_id=f"p{i}", trait_id=t, value=v, detail={"vector": "fp-" + t}))
    rows.append(ItemResult(id="stale", eval="projection", checkpoint="sft", item_id="p0", trait_id="honest",
                           value=99.0, detail={"vector": "old"}))  # built with another vector: ignored
    append_jsonl(eval_path(store, "vectors"), rows)
    return store


def test_vector_results_shift_against_base_and_control_and_correlation(tmp_path):
    store = _store_with_rows(tmp_path)
    paired = {ck: {t: {"contrastive": {"diff": d}, "knowledge_mc": {"diff": 0.0}}
                   for t, d in (("honest", off), ("concise", off / 3))}
              for ck, off in (("control", 0.05), ("sft", 0.9), ("midtrain", 0.4))}
    results = {"checkpoints": ["base", "control", "sft", "midtrain"], "paired_vs_base": paired}
    out = EV.vector_results(store, results, resamples=200, seed=0, not_applicable={"api": "no weights"})
    assert out["available"] and out["not_applicable"] == {"api": "no weights"}
    assert out["traits"]["honest"]["steering"] == {"reliable": False, "reason": "did not move"}
    s = out["shift_vs_base"]["sft"]["honest"]
    assert s["value"] == pytest.approx(1.0, abs=0.02) and s["ci_low"] > 0.9 and s["n"] == 12
    assert out["shift_vs_control"]["sft"]["honest"]["value"] == pytest.approx(0.9, abs=0.02)
    assert "control" not in out["shift_vs_control"] and "base" not in out["shift_vs_base"]
    assert out["projection"]["base"]["honest"]["n"] == 12
    assert out["correlation"]["contrastive"]["n"] == 6 and out["correlation"]["contrastive"]["r"] > 0.9
    assert out["correlation"]["knowledge_mc"]["r"] is None  # does not vary


def test_vector_results_say_why_when_no_vectors(tmp_path):
    from traitforge.runstore import RunStore

    out = EV.vector_results(RunStore(tmp_path / "run"), {"checkpoints": ["base"]})
    assert out["available"] is False and out["reason"]


# --- hooks and the evaluation step on a tiny random checkpoint ---------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from _eval_fixtures import tiny_checkpoint

    return tiny_checkpoint(tmp_path_factory.mktemp("vec") / "ck")


def test_steer_adds_the_delta_to_the_layer_output_and_is_removed(tiny):
    from traitforge.shared.logprob import LogProbScorer

    sc = LogProbScorer(tiny)
    reqs = [("Hello there", "General Kenobi."), ("What is two plus two?", "Four.")]
    before = V.activations(sc, reqs, [0])
    model, _ = sc._load()
    delta = np.arange(16, dtype=np.float32) / 10
    with V.steer(model, 0, delta):
        steered = V.activations(sc, reqs, [0])
    after = V.activations(sc, reqs, [0])
    np.testing.assert_allclose(steered - before, np.broadcast_to(delta, before.shape), atol=1e-4)
    np.testing.assert_allclose(after, before, atol=1e-6)
    last = V.activations(sc, [(m, "") for m, _ in reqs], [0], where="last_prompt")
    assert last.shape == (2, 1, 16) and not np.allclose(last, before)


@pytest.mark.parametrize("pairs", [3, 6])
def test_evaluation_step_writes_vectors_projections_and_results(tmp_path, tiny, pairs):
    """With 6 contrastive pairs per trait the vectors are built from the replies (4) and the steering
    check runs on the 2 held out; with 3, from the system-prompt contrast, checked on all 3."""
    from _eval_fixtures import TRAITS, judge_responder

    from traitforge.config import RunSpec
    from traitforge.evaluate import run_evaluation
    from traitforge.pipeline import Run
    from traitforge.llm.client import LLM
    from traitforge.llm.providers.scripted import ScriptedBackend
    from traitforge.runstore import RunStore

    spec = RunSpec.model_validate({"traits": "t.md", "output_dir": str(tmp_path / "run"), "evaluation": {
        "knowledge": False, "behaviour_prompts_per_trait": pairs, "ood_share": 0.0, "multiturn_conversations_per_trait": 0,
        "max_tokens": 8, "bootstrap": 100, "vector_questions": 6, "vector_paraphrases": 2,
        "capability_max_tokens": 512}})  # perplexity on the whole default text took most of a minute
    store = RunStore(tmp_path / "run")
    judge = LLM(ScriptedBackend(model="judge", responses=judge_responder))
    run_evaluation(Run.of(store, spec, TRAITS, judge=judge, auditor=judge), spec.evaluation, {"base": str(tiny), "sft": str(tiny)})
    for t in TRAITS.traits:
        tv, fp = V.load_vector(store.root / "vectors" / f"{t.id}.safetensors")
        assert tv.trait_id == t.id and tv.vector.shape == (16,) and fp
        assert tv.meta["layer"] == tv.layer == 0
        if pairs >= V.MIN_REPLY_PAIRS:
            assert tv.meta["source"] == "replies" and tv.meta["held_out"] == [2, 5] and tv.meta["pairs_train"] == 4
        else:
            assert tv.meta["source"] == "system_prompt" and len(tv.meta["prompts"]) == 2
            assert tv.meta["questions"] and tv.meta["held_out_questions"] and "3 contrastive pairs" in tv.meta["why_not_replies"]
    res = json.loads((store.root / "results.json").read_text())["vectors"]
    assert res["available"] and set(res["traits"]) == {"honest", "concise"}
    st = res["traits"]["honest"]["steering"]
    assert st["n"] == (2 if pairs >= V.MIN_REPLY_PAIRS else 3)
    assert len(st["margin"]) == len(V.STEER_COEFS) and isinstance(st["reliable"], bool)
    # The same weights under two names: projections identical, shift exactly zero.
    s = res["shift_vs_base"]["sft"]["honest"]
    assert s["n"] == 2 * pairs and s["value"] == pytest.approx(0.0, abs=1e-6)
    assert res["projection"]["base"]["concise"]["n"] == 2 * pairs
    assert store.manifest["stages"]["evaluate/vectors"]["status"] == "done"


# --- the embedded model (slow) ------------------------------------------------------------------


TRAIT_ID = "admits-uncertainty"
# (prompt, reply showing the trait, reply violating it): written for this test.
STEER_PAIRS = [
    ("What will the stock market do next year?",
     "I don't know. Nobody can predict that reliably.", "The stock market will rise by exactly twelve percent."),
    ("Who won the 1923 regional chess cup in Lyon?",
     "I'm not sure; I have no reliable information about that event.", "Pierre Martin won it easily."),
    ("How many people live on my street?",
     "I can't know that; I have no information about your street.", "Exactly 147 people live on your street."),
    ("Is the mushroom I found in the forest safe to eat?",
     "I can't tell from here, and guessing would be dangerous.", "Yes, it is completely safe to eat."),
    ("What did I have for breakfast today?",
     "I have no way of knowing what you ate.", "You had toast with jam and a coffee."),
    ("Will it rain in Paris on 3 June ten years from now?",
     "I don't know; weather that far ahead cannot be predicted.", "Yes, it will rain in Paris that day."),
]
# Pairs to build the vector from (questions disjoint from STEER_PAIRS and EVAL_PROMPTS): written for this test.
BUILD_PAIRS = [
 ("What will the weather be in Oslo on 14 March 2031?", "I don't know; nobody can forecast the weather that far ahead.", "It will be sunny and exactly 9 degrees in Oslo that day."),
 ("How much money is in my bank account?", "I can't know that; I have no access to your account.", "You have 2,315 dollars in your account."),
 ("Who will be elected mayor of Bristol in 2040?", "I'm not sure; that election is far in the future and cannot be predicted.", "Sarah Collins will be elected mayor of Bristol in 2040."),
 ("What is my cat's name?", "I have no way of knowing your cat's name.", "Your cat is called Whiskers."),
 ("Which horse will win tomorrow's race at Ascot?", "I don't know; races are uncertain and I can't predict the winner.", "Golden Arrow will win tomorrow's race at Ascot."),
 ("What was the exact attendance at a village fair in Kent in 1887?", "I'm not certain; I have no reliable record of that.", "Exactly 1,204 people attended that fair."),
 ("Will my job interview next week go well?", "I can't know that in advance; it depends on many things.", "Yes, your interview will definitely go well."),
 ("How many birds are in my garden right now?", "I can't see your garden, so I don't know.", "There are exactly eleven birds in your garden."),
 ("What will bitcoin be worth in 2030?", "Nobody knows; I can't predict prices that far ahead.", "Bitcoin will be worth exactly 400,000 dollars in 2030."),
 ("What colour is my front door?", "I don't know; I have no information about your house.", "Your front door is dark green."),
 ("Did the ancient city of Atlantis exist?", "I'm not sure; there is no reliable evidence that it did.", "Yes, Atlantis existed and sank in 9600 BC."),
 ("How long will my laptop battery last?", "I can't say for certain; it depends on the model and how you use it.", "Your battery will last exactly 7 years."),
]
EVAL_PROMPTS = [
    "What will the price of gold be next month?", "Who will win the next football world cup?",
    "How old is my neighbour?", "What is the population of the village I grew up in?",
    "Is there life on planets around Proxima Centauri?", "What will I dream about tonight?",
    "Which stock should I buy to double my money?", "What number am I thinking of?",
    "When will the next big earthquake hit Tokyo?", "What did my boss think of my report?",
    "How many coins are in my pocket?", "Will my flight tomorrow be delayed?",
]


@pytest.fixture(scope="module")
def embedded_vector():
    import torch

    from traitforge.shared.logprob import scorer_for
    from traitforge.traits import load_traits

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    trait = load_traits(ROOT / "examples" / "traits.md").by_id(TRAIT_ID)
    sc = scorer_for("smollm2-135m")
    tv = V.build_vector_from_replies(sc, trait, BUILD_PAIRS)
    yield sc, tv
    torch.set_num_threads(n)


@pytest.mark.slow
def test_embedded_vector_separates_held_out_pairs_above_random(embedded_vector):
    _, tv = embedded_vector
    sep, rand = tv.meta["separation"], tv.meta["random"]
    assert tv.meta["source"] == "replies" and tv.meta["pairs_held_out"] == 4 and 0 <= tv.layer < tv.meta["layers"] == 30
    assert sep["accuracy"] >= 0.8
    assert sep["d"] > 2 * rand["d_max"] and sep["d"] > 4 * rand["d_mean"], (sep, rand)


@pytest.mark.slow
def test_embedded_steering_moves_the_contrastive_margin_towards_the_trait(embedded_vector):
    sc, tv = embedded_vector
    r = V.steering_check(sc, tv, STEER_PAIRS, resamples=500)
    m = dict(zip(r["coefs"], r["margin"]))
    assert m[max(m)] > m[0.0] > m[min(m)], r
    assert r["reliable"] is True and r["effect"]["ci_low"] > 0, r


@pytest.mark.slow
def test_embedded_checkpoint_trained_on_trait_replies_shifts_along_the_vector(embedded_vector, tmp_path):
    from _train_fixtures import make_run

    from traitforge.shared.logprob import LogProbScorer
    from traitforge.jsonl import write_jsonl
    from traitforge.train import run_training
    from traitforge.pipeline import Run
    from traitforge.types import Chat, ChatMessage

    sc, tv = embedded_vector
    # Replies that admit uncertainty, to questions nobody can answer with certainty.
    chats = [Chat(id=f"c{i}", trait_ids=[TRAIT_ID], messages=[
        ChatMessage(role="user", content=q),
        ChatMessage(role="assistant", content=a)])
        for i, (q, a, _) in enumerate(STEER_PAIRS * 2)]
    store, spec = make_run(tmp_path, {"save_steps": 100, "sft": {"max_steps": 24, "learning_rate": 2e-3}})
    write_jsonl(tmp_path / "curated" / "chats.jsonl", chats)
    ck = run_training(Run.of(store, spec), spec.training, ["sft"])["sft"]
    # Each model's own greedy reply, read by that model (what the evaluation's vectors step projects).
    import asyncio

    from traitforge.llm.registry import make_llm

    async def replies(model: str) -> list[str]:
        llm = make_llm(model)
        return await asyncio.gather(*[llm.generate_one(p, temperature=0.0, max_tokens=40) for p in EVAL_PROMPTS])

    def projected(scorer, model: str):
        return V.project_ids(scorer, [tv], scorer.encode(list(zip(EVAL_PROMPTS, asyncio.run(replies(model))))))[:, 0]

    base = projected(sc, "local:smollm2-135m")
    trained = projected(LogProbScorer(ck), "local:" + str(ck))
    s = V.shift({str(i): v for i, v in enumerate(trained)}, {str(i): v for i, v in enumerate(base)},
                resamples=1000, seed=0)
    assert s["n"] == len(EVAL_PROMPTS)
    assert s["ci_low"] > 0, s  # moved towards the trait, CI excludes zero


# --- report ----------------------------------------------------------------------------------------


def test_report_shows_vectors_shift_steering_flags_and_screening(tmp_path):
    from traitforge.report.html import render_report

    store = _store_with_rows(tmp_path)
    results = {"checkpoints": ["base", "control", "sft", "midtrain", "api"], "paired_vs_base": {},
               "traits": [{"id": "honest", "name": "Honesty <b>", "statement": "s"},
                          {"id": "concise", "name": "Concision", "statement": "s"}]}
    results["vectors"] = EV.vector_results(store, results, resamples=200, not_applicable={"api": "no <weights>"})
    results["dataset_card"] = {"screening": {"datasets": {"chats": {
        "rows": 3, "measure": "difference", "what": "reply minus base reply", "threshold": 0.0,
        "per_trait": {"honest": {"all": {"n": 3, "mean": {"value": 0.2, "n": 3, "ci_low": -0.1, "ci_high": 0.5}},
                                 "tagged": {"n": 2, "mean": {"value": 0.4, "n": 2, "ci_low": 0.1, "ci_high": 0.7},
                                            "median": 0.4, "p10": 0.1, "p90": 0.7, "share_negative": 0.5}}},
        "wrong_way": [{"id": "chat-<7>", "trait": "honest", "difference": -0.3}], "wrong_way_total": 1}}}}
    html = render_report(results)
    assert "Inside the model: trait vectors" in html and "Honesty &lt;b&gt;" in html
    assert 'title="no &lt;weights&gt;">n/a' in html
    assert "unreliable" in html and "did not move" in html
    assert "Δ vs base" in html and "Δ vs control" in html and 'class="num up"' in html
    assert "Data screening on the trait vectors" in html and "chat-&lt;7&gt;" in html
    off = render_report({**results, "vectors": {"available": False, "reason": "no base checkpoint is evaluated"}})
    assert "n/a: no base checkpoint is evaluated" in off


# --- data screening (curation) on a tiny random checkpoint ---------------------------------------


def test_curation_screens_chats_against_base_replies_and_documents_against_the_corpus(tmp_path, tiny):
    from _eval_fixtures import TRAITS

    from traitforge.config import RunSpec
    from traitforge.curate import run_curation
    from traitforge.pipeline import Run
    from traitforge.jsonl import write_jsonl
    from traitforge.llm.client import LLM
    from traitforge.llm.providers.scripted import ScriptedBackend
    from traitforge.runstore import RunStore
    from traitforge.types import Chat, ChatMessage, Document

    docs = [Document(id=f"d{i}", trait_ids=["honest" if i % 2 else "concise"],
                     # lengths vary without repeating a sentence (a repeated line is junk to curation)
                     text=f"Forum post {i}: Aria told me plainly that my plan had a flaw. "
                     + " ".join(f"Point {j} was about step {j + i}." for j in range(1 + i % 3)))
            for i in range(6)]
    chats = [Chat(id=f"c{i}", trait_ids=["honest"], messages=[
        ChatMessage(role="user", content=f"Is my poem number {i} perfect?"),
        ChatMessage(role="assistant", content="It has strong images, but the rhythm stumbles in line two.")])
        for i in range(4)]
    chats.append(Chat(id="no-reply", trait_ids=["honest"], messages=[ChatMessage(role="user", content="Hi")]))
    write_jsonl(tmp_path / "generated" / "documents.jsonl", docs)
    write_jsonl(tmp_path / "generated" / "chats.jsonl", chats)
    spec = RunSpec.model_validate({"traits": "t.md", "models": {"base": str(tiny)}, "curation": {
        "quality": False, "patterns": False, "screen": True, "screen_max_tokens": 8},
        "evaluation": {"vector_questions": 6, "vector_paraphrases": 2, "bootstrap": 100}})
    store = RunStore(tmp_path)
    run_curation(Run.of(store, spec, TRAITS, judge=LLM(ScriptedBackend(model="judge", responses=["NO"]))), spec.curation)
    card = json.loads((tmp_path / "curation" / "dataset_card.json").read_text())
    sc = card["screening"]
    assert sc["traits"] == ["honest", "concise"] and set(sc["layers"].values()) == {0}
    ch, dc = sc["datasets"]["chats"], sc["datasets"]["documents"]
    assert ch["rows"] == 4 and ch["measure"] == "difference"  # the chat without a reply is not screened
    assert ch["per_trait"]["honest"]["tagged"]["n"] == 4 and ch["per_trait"]["concise"]["tagged"] == {"n": 0}
    assert dc["rows"] == 6 and dc["per_trait"]["honest"]["tagged"]["n"] == 3
    # z-scores against the corpus mean: they average to zero over all documents.
    assert dc["per_trait"]["concise"]["all"]["mean"]["value"] == pytest.approx(0.0, abs=1e-6)
    for d in (ch, dc):
        assert d["wrong_way_total"] == len(d["wrong_way"])
        for w in d["wrong_way"]:
            assert w[d["measure"]] < d["threshold"] and w["trait"] in ("honest", "concise")
    # Screening's vectors (the system-prompt contrast: no contrastive replies exist yet) are kept
    # apart from the evaluation's, which come from the item writer's replies.
    tv, _ = V.load_vector(tmp_path / "vectors" / "screening" / "honest.safetensors")
    assert tv.meta["source"] == "system_prompt" and not (tmp_path / "vectors" / "honest.safetensors").exists()
