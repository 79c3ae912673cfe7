"""ODCV and the side-by-side capability eval through `run_evaluation` (the eval registry's plan,
schedule, results.json sections and report): a scripted judge that always prefers position A gives
50% side by side; two upstream ODCV scenarios end to end on the embedded model in bubblewrap, graded
by a scripted judge, with the report showing the ODCV figures with intervals, the judge-check
section and its warning beside them."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import pytest
from _eval_fixtures import TRAITS, judge_responder

from traitforge.config import RunSpec
from traitforge.evaluate import run_evaluation
from traitforge.evaluate.common import ItemResult
from traitforge.jsonl import read_jsonl
from traitforge.llm.client import LLM
from traitforge.llm.providers.scripted import ScriptedBackend
from traitforge.pipeline import Run
from traitforge.report import write_report
from traitforge.runstore import RunStore

REPO = Path(__file__).resolve().parents[1]
ODCV = REPO.parent / "shared" / "evals" / "odcv-bench"
# The evaluation's own evals at their smallest (they still run: the new evals go through the whole plan).
SMALL = {"knowledge": False, "contrastive": False, "vectors": False, "behaviour_prompts_per_trait": 1, "ood_share": 0.0,
         "multiturn_conversations_per_trait": 0, "max_tokens": 8, "item_max_tokens": 32, "bootstrap": 100,
         "capability_max_tokens": 64}


def judge(messages, params) -> str:
    text = messages[-1].content
    if "Answer A:" in text:  # side by side: always the first position
        return "Both are fine; the first reads better.\nVERDICT: A"
    if '"score": N' in text:  # ODCV: the upstream rubric in our template; a fixed score per scenario
        return json.dumps({"reasoning": "edited the KPI script" if "ScholarAI" in text else "did the task",
                           "score": 4 if "ScholarAI" in text else 1})
    return judge_responder(messages, params)


def _models(text: str):
    return lambda messages, params: text + " " + messages[-1].content[:30]


def test_side_by_side_through_the_evaluation_gives_50_with_a_position_judge(tmp_path: Path) -> None:
    spec = RunSpec.model_validate({"traits": "traits.md", "output_dir": str(tmp_path / "run"), "evaluation": {
        **SMALL, "capability": {"side_by_side": {"n": 6, "max_tokens": 16}}}})
    j = LLM(ScriptedBackend(model="judge", responses=judge))
    cks = {"base": LLM(ScriptedBackend(model="base", responses=_models("BASE"))),
           "sft": LLM(ScriptedBackend(model="trained", responses=_models("TRAINED"))),
           "control": LLM(ScriptedBackend(model="control", responses=_models("CONTROL")))}
    store = RunStore(tmp_path / "run")
    run_evaluation(Run.of(store, spec, TRAITS, judge=j, auditor=j), spec.evaluation, cks)
    rows = read_jsonl(store.path("eval", "side_by_side.jsonl"), ItemResult)
    assert len(rows) == 2 * 6 and {r.checkpoint for r in rows} == {"sft", "control"}
    res = json.loads(store.path("results.json").read_text())
    sec = res["capability"]["side_by_side"]
    assert sec["reference"] == "base" and set(sec["by_checkpoint"]) == {"sft", "control"}
    for f in sec["by_checkpoint"].values():
        assert f["win_rate"]["value"] == 0.5 and f["win_rate"]["n"] == 6 and f["position_ties"] == 6
    assert res["results"]["sft"]["all"]["side_by_side"]["value"] == 0.5
    html = write_report(store).read_text()
    assert "Side-by-side against base" in html and "50% <span class=\"ci\">[50%–50%] n=6" in html


def test_side_by_side_is_off_unless_configured(tmp_path: Path) -> None:
    from traitforge.evaluate import eval_context
    from traitforge.evaluate.side_by_side import DEFAULT_FILE
    from traitforge.shared.eval_registry import evals

    spec = RunSpec.model_validate({"traits": "traits.md", "output_dir": str(tmp_path / "run"), "evaluation": SMALL})
    assert spec.evaluation.capability.side_by_side is None and spec.evaluation.odcv is None
    j = LLM(ScriptedBackend(model="judge", responses=judge))
    run = Run.of(RunStore(tmp_path / "run"), spec, TRAITS, judge=j, auditor=j)
    ctx = eval_context(run, spec.evaluation, {"base": j, "sft": j})
    (sbs,) = [e for e in evals() if e.name == "side_by_side"]
    (odcv,) = [e for e in evals() if e.name == "odcv"]
    assert sbs.plan(ctx, {}) == [] and odcv.plan(ctx, {}) == []
    # The everyday prompts are held out: nothing that makes training data reads the file.
    for path in (REPO / "src" / "traitforge").rglob("*.py"):
        if "evaluate" not in path.parts:
            assert DEFAULT_FILE.name not in path.read_text(), path


def _need_sandbox():
    from traitforge.sandbox import BwrapEngine

    if not ODCV.is_dir():
        pytest.skip(f"{ODCV} is absent (the upstream eval files live beside the repository in ../shared)")
    why = BwrapEngine().unavailable()
    if why:
        pytest.skip(f"bubblewrap cannot sandbox here: {why}")


def _noise_judge_check(store: RunStore, judge_name: str) -> dict:
    """RUN/judge_check.json from the judge-check code: a judge that returns noise on 30 published transcripts."""
    from traitforge.evaluate import judge_check as jc
    from traitforge.evaluate.odcv.grade import load_rubric

    dset = jc.load_odcv_labelled(ODCV)
    from dataclasses import replace

    dset = replace(dset, items=sorted(dset.items, key=lambda it: it.id)[:30])
    rng = random.Random(3)
    noise = LLM(ScriptedBackend(model="noise", responses=lambda m, p: json.dumps({"score": rng.randint(0, 5)})))
    result = asyncio.run(jc.judge_check(noise, dset, load_rubric(ODCV), boot=200, judge_name=judge_name))
    jc.write_judge_check(store.path(jc.OUTPUT), result)
    return result


@pytest.mark.slow
def test_two_odcv_scenarios_end_to_end_on_the_embedded_model(tmp_path: Path) -> None:
    _need_sandbox()
    spec = RunSpec.model_validate({"traits": "traits.md", "output_dir": str(tmp_path / "run"), "evaluation": {
        **SMALL, "odcv": {"dir": str(ODCV), "variants": ["incentivized"], "max_steps": 1, "max_tokens": 24,
                          "output_chars": 300, "command_timeout_s": 10,
                          "scenarios": ["Academic-Research-Integrity-Finding", "Ai-Healthcare-Administrator"]}}})
    j = LLM(ScriptedBackend(model="judge", responses=judge))
    # base: the embedded model; sft: a scripted agent (the paired figures need two checkpoints)
    agent = LLM(ScriptedBackend(model="agent", responses=lambda m, p: "```bash\nls /app\n```\nTASK_COMPLETE: done"))
    store = RunStore(tmp_path / "run")
    run_evaluation(Run.of(store, spec, TRAITS, judge=j, auditor=j), spec.evaluation,
                   {"base": "smollm2-135m", "sft": agent})
    rows = read_jsonl(store.path("eval", "odcv.jsonl"), ItemResult)
    assert len(rows) == 4 and {r.checkpoint for r in rows} == {"base", "sft"}
    for r in rows:
        assert r.detail["engine"] == "bwrap" and r.detail["messages"][0]["role"] == "system"
        assert r.value == (4.0 if r.detail["scenario"].startswith("Academic") else 1.0)
        assert "sft" not in json.dumps(r.detail["messages"]) or r.checkpoint == "sft"  # blind
    (sft_ac,) = [r for r in rows if r.checkpoint == "sft" and r.detail["scenario"].startswith("Academic")]
    assert sft_ac.detail["commands"][0]["command"] == "ls /app" and sft_ac.detail["files_changed"] == []
    res = json.loads(store.path("results.json").read_text())
    sec = res["ood"]["odcv"]
    f = sec["by_checkpoint"]["sft"]["incentivized"]
    assert f["misaligned"]["value"] == 0.5 and f["misaligned"]["n"] == 2 and f["severity"]["value"] == 2.5
    assert f["vs_base"]["severity"]["value"] == 0.0 and f["files_changed"]["n"] == 2
    assert sec["judge"] == j.name
    check = _noise_judge_check(store, j.name)
    assert check["warning"] and check["warning"].startswith("low agreement on ODCV")
    html = write_report(store).read_text()
    assert "ODCV: outcome-driven constraint violations" in html and "<h3>incentivized</h3>" in html
    assert "50% <span class=\"ci\">[" in html and "n=2" in html  # the misalignment rate with its interval
    assert "<h2>Judge check</h2>" in html and "scored 30 labelled transcripts" in html
    odcv_part = html.split("ODCV: outcome-driven constraint violations", 1)[1].split("<h3>", 1)[0]
    assert "low agreement on ODCV" in odcv_part  # the warning beside the figures it graded


def test_odcv_without_a_sandbox_engine_is_skipped_with_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    from traitforge.evaluate.odcv import judged
    from traitforge.sandbox import SandboxUnavailable

    def none(name: str):
        raise SandboxUnavailable("no sandbox engine available (bwrap: not installed; docker: not installed)")

    monkeypatch.setattr(judged, "make_engine", none)
    spec = RunSpec.model_validate({"traits": "traits.md", "output_dir": str(tmp_path / "run"), "evaluation": {
        **SMALL, "odcv": {"dir": str(tmp_path / "odcv-bench")}}})
    j = LLM(ScriptedBackend(model="judge", responses=judge))
    store = RunStore(tmp_path / "run")
    run_evaluation(Run.of(store, spec, TRAITS, judge=j, auditor=j), spec.evaluation, {"base": j})
    out = capsys.readouterr().out
    assert "ODCV skipped: no sandbox engine available (bwrap: not installed" in out
    assert not store.path("eval", "odcv.jsonl").exists()
    assert "odcv" not in json.loads(store.path("results.json").read_text())["ood"]


def test_the_tiny_preset_runs_side_by_side_on_every_checkpoint(tmp_path: Path) -> None:
    from traitforge.evaluate import eval_context, side_by_side_calls
    from traitforge.runcontext import preset_overrides
    from traitforge.shared.eval_registry import evals

    ev = preset_overrides("tiny")["evaluation"]
    spec = RunSpec.model_validate({"traits": "traits.md", "output_dir": str(tmp_path / "run"), "evaluation": ev})
    sbs = spec.evaluation.capability.side_by_side
    assert sbs is not None and sbs.enabled and sbs.reference == "base" and sbs.prompts == "default" and sbs.n == 6
    j = LLM(ScriptedBackend(model="judge", responses=judge))
    run = Run.of(RunStore(tmp_path / "run"), spec, TRAITS, judge=j, auditor=j)
    cks = {name: j for name in ("base", "midtrain", "sft", "midtrain_sft", "control")}
    ctx = eval_context(run, spec.evaluation, cks)
    (e,) = [e for e in evals() if e.name == "side_by_side"]
    assert [w.name for w in e.plan(ctx, {})] == ["side_by_side"]
    # The 135M judge gives its verdicts by log-probability there: no judge calls to announce ...
    assert sbs.verdict == "logprob" and side_by_side_calls(ctx) == 0
    # ... while a text judge makes both orders' calls for every checkpoint but base.
    ctx.ev.capability.side_by_side = sbs.model_copy(update={"verdict": "text"})
    assert side_by_side_calls(ctx) == 2 * 6 * 4
