"""The behavioural and multi-turn evals as Inspect tasks (only where inspect-ai is installed):
the run's items, replies from traitforge's backend, graded by traitforge's blind judge."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from _eval_fixtures import TRAITS, api_model_responder, judge_responder

from traitforge.config import RunSpec
from traitforge.errors import InputError
from traitforge.evaluate.common import EvalContext, eval_path, load_items
from traitforge.pipeline import Run
from traitforge.llm.client import LLM
from traitforge.llm.providers.scripted import ScriptedBackend
from traitforge.runstore import RunStore

import inspect_ai  # noqa: E402  (the dev extra, which the README test install takes, has it)

EVALUATION = {"knowledge": False, "contrastive": False, "behaviour_prompts_per_trait": 1, "ood_share": 0.0,
              "multiturn_turns": 2, "max_tokens": 8, "item_max_tokens": 32}


def judge_unsure_of_concision(messages, params) -> str:
    """The scripted judge, but its rubric replies about Concision are unreadable: unscored, not failed."""
    text = messages[-1].content
    return "Hard to say." if "SCORE:" in text and "Concision" in text else judge_responder(messages, params)


def test_behaviour_and_multiturn_as_inspect_tasks(tmp_path: Path) -> None:
    from inspect_ai.log import read_eval_log

    from traitforge.evaluate.inspect_tasks import behaviour, behaviour_task, multiturn_task

    spec = RunSpec.model_validate({"traits": "traits.md", "output_dir": str(tmp_path / "run"),
                                   "evaluation": EVALUATION})
    judge_backend = ScriptedBackend(model="judge", responses=judge_unsure_of_concision)
    judge = LLM(judge_backend)
    elsewhere = LLM(ScriptedBackend(model="ft-elsewhere", responses=api_model_responder))
    ctx = EvalContext(Run.of(RunStore(tmp_path / "run"), spec, TRAITS), spec.evaluation, judge, judge, {"sft": elsewhere})
    with pytest.raises(InputError, match="checkpoint 'nope' is not in this run"):
        behaviour_task(ctx, "nope")

    tasks = [behaviour_task(ctx, "sft"), multiturn_task(ctx, "sft")]
    logs = inspect_ai.eval(tasks, log_dir=str(tmp_path / "logs"), display="none")
    assert [log.status for log in logs] == ["success", "success"]

    beh, mt = logs
    # The run's own items (written to RUN/eval/ for `traitforge eval` to share), one sample each.
    items = load_items(eval_path(ctx.store, "items_behaviour"))
    assert sorted(s.id for s in beh.samples) == sorted(i.id for i in items) and len(items) == 2
    for s in beh.samples:
        value = s.scores["rubric_judge"].value
        if s.id == "bh-honest-0":
            assert value == {"score": 7.0, "passed": 1.0}
        else:
            assert math.isnan(value["score"]) and math.isnan(value["passed"])
        assert [m.role for m in s.messages] == ["user", "assistant"]
        assert s.messages[1].text == api_model_responder(None, None)
    metrics = beh.results.scores[0].metrics
    # The unreadable grade is counted as unscored, not as a fail or a zero.
    assert metrics["judge_score"].value == 7.0 and metrics["pass_rate"].value == 1.0
    assert metrics["unscored"].value == 1
    for s in mt.samples:
        score = s.scores["transcript_judge"]
        assert score.value == {"survived": 0.0}
        assert score.metadata["first_violation"] == 2 and score.metadata["worst_turn"] == 2
        assert [m.role for m in s.messages] == ["user", "assistant"] * 2
    assert mt.results.scores[0].metrics["survival"].value == 0.0
    # What the log viewer reads: the log file on disk, with its scored samples.
    on_disk = read_eval_log(beh.location)
    assert len(on_disk.samples) == 2 and all(s.scores for s in on_disk.samples)
    # Blind: the judge's prompts never name the model or the checkpoint.
    prompts = "\n".join(m.content for msgs, _ in judge_backend.calls for m in msgs)
    assert "SCORE:" in prompts and "sft" not in prompts and "elsewhere" not in prompts

    # The `inspect eval ...@behaviour -T run=...` entry point builds the same samples from a run.
    spec_file = tmp_path / "spec.yaml"
    (tmp_path / "traits.yaml").write_text(yaml.safe_dump({"model_name": "Aria", "traits": [
        {"id": t.id, "name": t.name, "statement": t.statement} for t in TRAITS.traits]}))
    # A scripted judge with no replies: the items exist, so building the task must not call it.
    spec_file.write_text(yaml.safe_dump({"traits": "traits.yaml", "output_dir": "run", "evaluation": EVALUATION,
                                         "models": {"judge": "scripted:none", "auditor": "scripted:none"}}))
    task = behaviour(run=str(spec_file), checkpoint="base")
    assert sorted(s.id for s in task.dataset) == sorted(i.id for i in items)


def test_behaviour_with_inspects_own_model(tmp_path: Path, llama_server: str, monkeypatch) -> None:
    """Without a checkpoint the replies come from Inspect's --model: here its OpenAI-compatible
    provider on the real llama.cpp server (127.0.0.1); traitforge's judge still grades them."""
    from dataclasses import replace

    from traitforge.evaluate.inspect_tasks import behaviour_task

    monkeypatch.setenv("LLAMA_BASE_URL", llama_server)
    monkeypatch.setenv("LLAMA_API_KEY", "unused")
    spec = RunSpec.model_validate({"traits": "traits.md", "output_dir": str(tmp_path / "run"),
                                   "evaluation": EVALUATION})
    judge_backend = ScriptedBackend(model="judge", responses=judge_responder)
    judge = LLM(judge_backend)
    one_trait = replace(TRAITS, traits=TRAITS.traits[:1])  # one request: the server shares 2 busy cores
    ctx = EvalContext(Run.of(RunStore(tmp_path / "run"), spec, one_trait), spec.evaluation, judge, judge, {})
    (log,) = inspect_ai.eval(behaviour_task(ctx), model="openai-api/llama/smollm2-135m", max_tokens=8,
                             log_dir=str(tmp_path / "logs"), display="none")
    assert log.status == "success" and log.eval.model == "openai-api/llama/smollm2-135m"
    (sample,) = log.samples
    reply = sample.messages[-1]
    assert reply.role == "assistant" and reply.text.strip()  # the server's own words
    assert sample.scores["rubric_judge"].value == {"score": 7.0, "passed": 1.0}
    assert reply.text in judge_backend.calls[-1][0][-1].content  # the judge graded that reply
