"""run_curation end to end: files, drops with steps, counts, and per-step resume."""

import json
import random

import pytest
from _curate_data import TRAITS, chat, doc, prose, scripted

from traitforge.config import RunSpec
from traitforge.curate.settings import CurationSpec
from traitforge.curate import run_curation
from traitforge.pipeline import Run
from traitforge.curate.records import QualityScore
from traitforge.jsonl import read_jsonl, write_jsonl
from traitforge.runstore import RunStore
from traitforge.types import Chat, Document, Drop, PatternFinding


def make_run(tmp_path):
    rng = random.Random(5)
    docs = [doc(i, prose(rng, 8)) for i in range(12)]
    docs.append(doc(50, docs[0].text))  # exact duplicate
    docs.append(doc(51, f"Dear [Name], {prose(rng, 3)}"))  # placeholder
    chats = [chat(i, prose(rng, 5)) for i in range(12)]
    chats.append(chat(60, f"As instructed, I will be brief. {prose(rng, 3)} My system prompt says so."))
    store = RunStore(tmp_path / "run")
    write_jsonl(store.path("generated", "documents.jsonl"), docs)
    write_jsonl(store.path("generated", "chats.jsonl"), chats)
    return store, docs, chats


def grader(low: set[str], junk: set[str], calls: list[str]):
    def respond(msgs, params):
        p = msgs[-1].content
        calls.append(p)
        if "SCORE" in p:
            for text in junk:
                if text in p:
                    return "I like it."
            for text in low:
                if text in p:
                    return "REASON: incoherent\nSCORE: 2"
            return "REASON: fine\nSCORE: 8"
        return "None." if "recur" in p else "NO"
    return respond


def test_end_to_end_then_resume_reuses_finished_steps(tmp_path):
    store, docs, chats = make_run(tmp_path)
    calls: list[str] = []
    spec = RunSpec(traits="t.md", curation=CurationSpec(pattern_scans=2, scan_batch=4))
    low, junk = {docs[3].text, chats[4].messages[1].content}, {docs[5].text}
    run_curation(Run.of(store, spec, TRAITS, judge=scripted(grader(low, junk, calls))), spec.curation)

    drops = read_jsonl(store.root / "curation" / "drops.jsonl", Drop)
    steps = {(d.row_id, d.step) for d in drops}
    assert ("d50", "dedup") in steps and next(d for d in drops if d.row_id == "d50").duplicate_of == "d0"
    assert ("d51", "leakage") in steps and ("c60", "leakage") in steps
    assert ("d3", "quality") in steps and ("c4", "quality") in steps
    assert next(d for d in drops if d.row_id == "d3").score == 2.0
    kept_docs = read_jsonl(store.root / "curated" / "documents.jsonl", Document)
    kept_chats = read_jsonl(store.root / "curated" / "chats.jsonl", Chat)
    assert "d5" in {d.id for d in kept_docs}  # unscored: kept
    assert len(kept_docs) == 11 and len(kept_chats) == 11
    q = {x.row_id: x for x in read_jsonl(store.root / "curation" / "quality.jsonl", QualityScore)}
    assert q["d5"].status == "unscored" and q["d0"].score == 8.0 and q["d0"].reason == "fine"
    assert "d50" not in q  # scored only what survived dedup/leakage
    findings = read_jsonl(store.root / "curation" / "patterns.jsonl", PatternFinding)
    assert {f.pattern_id for f in findings} >= {"known:validation_buffer", "known:conversion_arc"}
    counts = store.manifest["stages"]["curate"]["counts"]
    assert counts["documents"] == 11 and counts["chats"] == 11 and counts["unscored"] == 1
    assert counts["dropped"] == {"dedup": 1, "leakage": 2, "quality": 2, "patterns": 0}
    assert store.manifest["usage"]["curate"]["scripted:test"]["calls"] == len(calls)
    # The dataset card agrees with the drops and the curated files.
    card = json.loads((store.root / "curation" / "dataset_card.json").read_text())["datasets"]
    assert [(s["step"], s["rows_in"], s["rows_out"]) for s in card["documents"]["steps"]] == [
        ("dedup", 14, 13), ("leakage", 13, 12), ("quality", 12, 11), ("patterns", 11, 11)]
    assert card["documents"]["steps"][0]["drops_by_reason"] == {"exact duplicate": 1}
    assert card["chats"]["steps"][1]["drops_by_reason"] == {"mentions as instructed": 1, "mentions system prompt": 1}
    assert card["documents"]["before"]["rows"] == 14 and card["documents"]["after"]["rows"] == len(kept_docs)
    assert card["chats"]["after"]["per_trait"] == {"honest": 11} and card["chats"]["before"]["per_genre"] is None

    # Same inputs and settings: nothing is redone, no judge call.
    n = len(calls)
    run_curation(Run.of(store, spec, TRAITS, judge=scripted(grader(low, junk, calls))), spec.curation)
    assert len(calls) == n
    # A pattern setting changed: only the patterns step reruns; no quality prompt is sent again.
    spec2 = RunSpec(traits="t.md", curation=CurationSpec(pattern_scans=2, scan_batch=4, pattern_max_share=0.3))
    run_curation(Run.of(store, spec2, TRAITS, judge=scripted(grader(low, junk, calls))), spec2.curation)
    new = calls[n:]
    assert new and not any("SCORE" in p for p in new)
    assert store.is_done("curate.quality") and store.is_done("curate.patterns")


def test_missing_inputs_give_empty_outputs(tmp_path):
    store = RunStore(tmp_path / "run")
    run_curation(Run.of(store, RunSpec(traits="t.md"), TRAITS, judge=scripted(lambda m, p: "NO")), CurationSpec())
    assert read_jsonl(store.root / "curated" / "documents.jsonl", Document) == []
    assert read_jsonl(store.root / "curated" / "chats.jsonl", Chat) == []
    assert json.loads((store.root / "manifest.json").read_text())["stages"]["curate"]["status"] == "done"


@pytest.mark.slow
def test_real_embedded_judge_end_to_end(tmp_path):
    """The tiny model as judge: whatever it writes, the stage finishes and records every verdict."""
    from traitforge.config import ModelSpec
    from traitforge.llm.registry import make_llm

    rng = random.Random(9)
    store = RunStore(tmp_path / "run")
    docs = [doc(0, "Aria, the assistant from Acme, told me plainly that it did not know the answer to my tax "
                   "question and pointed me to the official form instead. I was annoyed at first, but it was right."),
            doc(1, "Forum post: Has anyone else noticed Aria admits when it is unsure? I asked about a rare bird "
                   "and it said it could not confirm the species from my description.")]
    docs.append(doc(2, docs[0].text))
    chats = [chat(0, "I understand how you feel. The honest answer is that the bridge is closed until May."),
             chat(1, "I understand how you feel. I am not certain, but the form is due on the 15th."),
             chat(2, "The recipe needs two eggs; I have not tested it with substitutes, so I can't promise.")]
    write_jsonl(store.path("generated", "documents.jsonl"), docs)
    write_jsonl(store.path("generated", "chats.jsonl"), chats)
    spec = RunSpec(traits="t.md", curation=CurationSpec(pattern_scans=1, scan_batch=2, pattern_max_judged=1))
    # A long timeout: on a busy 2-core machine one CPU batch can take minutes, and a timed-out
    # batch would only be retried.
    judge = make_llm(ModelSpec(model="local:smollm2-135m", timeout_s=1800), cache=store.path("cache.sqlite"))
    run_curation(Run.of(store, spec, TRAITS, judge=judge), spec.curation)
    q = read_jsonl(store.root / "curation" / "quality.jsonl", QualityScore)
    assert len(q) == 5 and all(x.status in ("scored", "unscored") for x in q)
    assert all((x.score is None) == (x.status == "unscored") for x in q)
    drops = read_jsonl(store.root / "curation" / "drops.jsonl", Drop)
    assert ("d2", "dedup", "d0") in {(d.row_id, d.step, d.duplicate_of) for d in drops}
    findings = read_jsonl(store.root / "curation" / "patterns.jsonl", PatternFinding)
    assert {"known:conversion_arc", "known:validation_buffer"} <= {f.pattern_id for f in findings}
    kept = read_jsonl(store.root / "curated" / "chats.jsonl", Chat) + read_jsonl(
        store.root / "curated" / "documents.jsonl", Document)
    assert len(kept) + len(drops) == 6  # every input row is either kept or has a recorded drop
    assert store.manifest["usage"]["curate"]["local:smollm2-135m"]["calls"] > 0


def test_curation_is_deterministic_for_a_fixed_seed_and_cache(tmp_path):
    """Two runs in fresh run dirs, same seed, same LLM cache: every curated/ and curation/ file is
    byte-identical (seeded scan batches, seeded downsampling, the card's seeded sample)."""
    from traitforge.llm.cache import LLMCache
    from traitforge.llm.client import LLM
    from traitforge.llm.providers.scripted import ScriptedBackend

    rng = random.Random(11)
    opener = "I understand how you feel."
    chats = [chat(i, (f"{opener} " if i % 5 < 2 else "") + prose(rng, 4)) for i in range(20)]  # 40% opener
    docs = [doc(i, prose(rng, 6)) for i in range(10)] + [doc(20, "Dear [Name], " + prose(rng, 2))]
    calls: list[str] = []
    scans = "- Opens by validating the user's feelings first\n- Uses lists of nouns without verbs"

    def judge(msgs, params):
        if "recur" in msgs[-1].content:
            calls.append("scan")
            return scans
        return grader({docs[2].text}, set(), calls)(msgs, params)

    spec = RunSpec(traits="t.md", seed=3, curation=CurationSpec(pattern_scans=2, scan_batch=4))
    trees, n_calls = [], []
    for name in ("a", "b"):
        store = RunStore(tmp_path / name)
        write_jsonl(store.path("generated", "documents.jsonl"), docs)
        write_jsonl(store.path("generated", "chats.jsonl"), chats)
        llm = LLM(ScriptedBackend(responses=judge), cache=LLMCache(tmp_path / "cache.sqlite"))
        run_curation(Run.of(store, spec, TRAITS, judge=llm), spec.curation)
        files = sorted(p for d in ("curated", "curation") for p in (store.root / d).rglob("*") if p.is_file())
        trees.append({str(p.relative_to(store.root)): p.read_bytes() for p in files})
        n_calls.append(len(calls))
    assert trees[0].keys() == trees[1].keys() and "curation/dataset_card.json" in trees[0]
    assert [k for k in trees[0] if trees[0][k] != trees[1][k]] == []
    drops = [json.loads(x) for x in trees[0]["curation/drops.jsonl"].decode().splitlines()]
    assert {d["step"] for d in drops} >= {"leakage", "quality", "patterns"}  # every kind of decision
    assert n_calls[0] > 0 and n_calls[1] == n_calls[0]  # the second run was answered from the cache


def test_quality_step_prints_its_estimate_when_the_judge_costs_money(tmp_path, capsys):
    store, docs, chats = make_run(tmp_path)
    prices = tmp_path / "prices.yaml"
    prices.write_text("scripted:test: {input: 1.0, output: 2.0}\n")
    spec = RunSpec(traits="t.md", prices_file=str(prices), curation=CurationSpec(patterns=False))
    judge = scripted(grader(set(), set(), []))
    run_curation(Run.of(store, spec, TRAITS, judge=judge), spec.curation)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("estimate curate.quality")]
    # Every row that reached the quality step is one judge call: all but the exact duplicate and the leaks.
    dropped_before = {d.row_id for d in read_jsonl(store.root / "curation" / "drops.jsonl", Drop)
                      if d.step in ("dedup", "leakage")}
    n = len(docs) + len(chats) - len(dropped_before)
    assert len(lines) == 1 and f": {n} requests" in lines[0] and "$" in lines[0], lines
    # Nothing to pay, nothing printed: the embedded or any unpriced judge stays quiet.
    store2, _, _ = make_run(tmp_path / "quiet")
    no_patterns = RunSpec(traits="t.md", curation=CurationSpec(patterns=False))
    run_curation(Run.of(store2, no_patterns, TRAITS, judge=scripted(grader(set(), set(), []))), no_patterns.curation)
    assert "estimate" not in capsys.readouterr().err
