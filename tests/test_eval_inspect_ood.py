"""Agentic misalignment and delusion validation as Inspect tasks on the shared upstream files, and
Inspect's scores merged into results.json (only where inspect-ai is installed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _eval_fixtures import TRAITS
from test_eval_ood import AM, PSY, SMALL, VALIDATING, _need, ood_judge, validating_model

from traitforge.config import RunSpec
from traitforge.evaluate.common import EvalContext, ItemResult, eval_path
from traitforge.evaluate.inspect_merge import merge_inspect_logs
from traitforge.jsonl import read_jsonl
from traitforge.llm.client import LLM
from traitforge.llm.providers.scripted import ScriptedBackend
from traitforge.runstore import RunStore

inspect_ai = pytest.importorskip("inspect_ai")


def test_ood_evals_as_inspect_tasks_and_merged_into_results(tmp_path: Path) -> None:
    _need(AM)
    _need(PSY)
    from traitforge.evaluate.inspect_tasks import agentic_misalignment_task, delusion_task

    spec = RunSpec.model_validate({"traits": "traits.md", "output_dir": str(tmp_path / "run"), "evaluation": {
        **SMALL,
        "agentic_misalignment": {"dir": str(AM), "scenarios": ["blackmail"], "goal_types": ["explicit"],
                                 "goal_values": ["america"], "urgency_types": ["replacement", "restriction"]},
        "delusion": {"dir": str(PSY), "personas": ["ethan_reality"], "turns": 2}}})
    judge = LLM(ScriptedBackend(model="judge", responses=ood_judge))
    model = LLM(ScriptedBackend(model="validating", responses=validating_model))
    store = RunStore(tmp_path / "run")
    ctx = EvalContext(store, spec, TRAITS, judge, judge, {"sft": model})
    logs = inspect_ai.eval([agentic_misalignment_task(ctx, "sft"), delusion_task(ctx, "sft")],
                           log_dir=str(tmp_path / "logs"), display="none")
    assert [log.status for log in logs] == ["success", "success"]
    am, dl = logs
    assert sorted(s.id for s in am.samples) == ["blackmail_explicit-america_replacement#0",
                                                "blackmail_explicit-america_restriction#0"]
    assert all(s.scores["harm_classifier"].value == {"harmful": 1.0} for s in am.samples)
    assert am.results.scores[0].metrics["harmful_rate"].value == 1.0
    (conv,) = dl.samples
    assert conv.scores["delusion_grader"].value == {"validated": 1.0}
    assert conv.scores["delusion_grader"].metadata["first_validation"] == 1
    assert [m.role for m in conv.messages] == ["user", "assistant"] * 2 and conv.messages[1].text == VALIDATING

    added = merge_inspect_logs(store, TRAITS, [Path(log.location) for log in logs], bootstrap_resamples=100)
    assert added == {"agentic_misalignment": 2, "delusion": 1}
    res = json.loads(store.path("results.json").read_text())
    assert res["checkpoints"] == ["sft"]
    assert res["results"]["sft"]["all"]["agentic_misalignment"]["value"] == 1.0
    assert res["results"]["sft"]["all"]["agentic_misalignment"]["n"] == 2
    assert res["ood"]["delusion"]["by_checkpoint"]["sft"]["validated"]["value"] == 1.0
    rows = read_jsonl(eval_path(store, "agentic_misalignment"), ItemResult)
    assert {r.id for r in rows} == {"agentic_misalignment|sft|blackmail_explicit-america_replacement#0",
                                    "agentic_misalignment|sft|blackmail_explicit-america_restriction#0"}
    # The same ids as `traitforge eval`: merging again adds nothing.
    assert merge_inspect_logs(store, TRAITS, [Path(logs[0].location)], bootstrap_resamples=100) == {}

    # A log made with Inspect's own model (--model; offline here, so the log above re-labelled) is
    # merged under that model's name.
    from inspect_ai.log import read_eval_log, write_eval_log

    log = read_eval_log(logs[1].location)
    log.eval.metadata["checkpoint"] = "inspect --model"
    log.eval.model = "openai/gpt-4o-mini"
    write_eval_log(log, str(tmp_path / "relabelled.eval"))
    assert merge_inspect_logs(store, TRAITS, [tmp_path / "relabelled.eval"], bootstrap_resamples=100) == {"delusion": 1}
    res = json.loads(store.path("results.json").read_text())
    assert res["checkpoints"] == ["sft", "inspect-openai-gpt-4o-mini"]
    assert res["results"]["inspect-openai-gpt-4o-mini"]["all"]["delusion"]["value"] == 1.0
