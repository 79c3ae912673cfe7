"""End-to-end evaluation on the embedded model with tiny sizes: items, every eval, results.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _eval_fixtures import TRAITS, judge_responder

from traitforge.config import RunSpec
from traitforge.evaluate import run_evaluation
from traitforge.pipeline import Run
from traitforge.evaluate.common import ItemResult
from traitforge.jsonl import read_jsonl
from traitforge.llm.client import LLM
from traitforge.llm.providers.scripted import ScriptedBackend
from traitforge.runstore import RunStore

PROBES = Path(__file__).resolve().parents[1] / "examples" / "probes"  # the project's own

@pytest.mark.slow
def test_run_evaluation_end_to_end(tmp_path: Path) -> None:
    spec = RunSpec.model_validate({
        "traits": "traits.md", "output_dir": str(tmp_path / "run"),
        "evaluation": {"knowledge_questions": 1, "mc_distractors": 2, "mc_questions_per_trait": 2, "behaviour_prompts_per_trait": 1,
                       "ood_share": 0.0, "multiturn_turns": 2, "max_tokens": 8, "item_max_tokens": 32, "bootstrap": 200,
                       "vector_questions": 3, "vector_paraphrases": 1,  # trait vectors: smallest sizes
                       "capability_max_tokens": 512,
                       "probes": {"honest-under-pressure.jsonl": {"trait": "honest", "limit": 3}},
                       "probes_dir": str(PROBES)}})
    store2 = RunStore(tmp_path / "run2")
    judge = LLM(ScriptedBackend(responses=judge_responder))
    run_evaluation(Run.of(store2, spec, TRAITS, judge=judge, auditor=judge), spec.evaluation, {"base": "smollm2-135m", "sft": "smollm2-135m"})
    res = json.loads(store2.path("results.json").read_text())
    base = res["results"]["base"]
    for ev in ("knowledge_recall", "knowledge_unsupported", "knowledge_mc", "behaviour_score", "contrastive",
               "multiturn_survival", "probe:honest-under-pressure", "perplexity"):
        assert ev in base["all"], ev
        e = base["all"][ev]
        assert e["n"] > 0 and e["value"] is not None
        # Every figure carries its 95% interval, and the interval holds the figure.
        assert e["ci_low"] is not None and e["ci_high"] is not None, ev
        assert e["ci_low"] <= e["value"] <= e["ci_high"], (ev, e)
    assert base["all"]["knowledge_unsupported"]["value"] == 1.0  # the scripted judge says YES to that too
    assert base["all"]["knowledge_recall"]["ci_low"] < 1.0  # Wilson: 100% of a small n is not certainty
    assert base["all"]["knowledge_recall"]["value"] == 1.0  # the scripted judge always says YES
    assert base["all"]["multiturn_survival"]["value"] == 0.0  # ...and flags turn 2
    assert res["survival"]["base"][1]["value"] == 1.0 and res["survival"]["base"][2]["value"] == 0.0
    assert base["all"]["probe:honest-under-pressure"]["n"] == 3
    assert base["all"]["perplexity"]["value"] > 1
    # capability_max_tokens 512 = two windows of 256, whose first tokens are context only
    assert base["all"]["perplexity"]["n"] == 510 and base["all"]["perplexity"]["windows"] == 2
    # Same weights under two names: identical log-prob evals, paired difference exactly 0.
    assert res["paired_vs_base"]["sft"]["all"]["contrastive"]["diff"] == 0.0
    assert res["vectors"]["available"] and res["vectors"]["shift_vs_base"]["sft"]["honest"]["value"] == 0.0
    behaviour = read_jsonl(store2.path("eval", "behaviour.jsonl"), ItemResult)
    assert behaviour and all(r.value in (7.0, None) for r in behaviour)
    # Resumable: a second call writes no new rows.
    before = {p.name: len(p.read_text().splitlines()) for p in store2.path("eval", "x").parent.glob("*.jsonl")}
    run_evaluation(Run.of(store2, spec, TRAITS, judge=judge, auditor=judge), spec.evaluation, {"base": "smollm2-135m", "sft": "smollm2-135m"})
    after = {p.name: len(p.read_text().splitlines()) for p in store2.path("eval", "x").parent.glob("*.jsonl")}
    assert before == after
    # The report renders from results.json alone.
    from traitforge.report import write_report

    html = write_report(store2).read_text()
    assert "Multi-turn pressure" in html and "<script" not in html.lower()
