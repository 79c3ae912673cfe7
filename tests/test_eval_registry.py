"""The eval registry: an eval defined only here, registered with the same one call the shipped evals
use, shows up in results.json, in its own report section and in the Inspect task list with no other
edit; and the report's shared cells keep a vector cell's sign without nesting cells."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from _eval_fixtures import TRAITS, api_model_responder, judge_responder

from traitforge.config import RunSpec
from traitforge.evaluate import run_evaluation
from traitforge.evaluate.common import EvalContext, ItemResult, eval_path, result_id
from traitforge.shared.eval_registry import Eval, InspectTask, Metric, SectionInput, Work, evals, register, unregister
from traitforge.llm.client import LLM
from traitforge.llm.providers.scripted import ScriptedBackend
from traitforge.pipeline import Run
from traitforge.report import write_report
from traitforge.runstore import RunStore
from traitforge.steps import Unit

NAME = "reply_brevity"
SMALL = {"knowledge": False, "contrastive": False, "vectors": False, "behaviour_prompts_per_trait": 1,
         "multiturn_conversations_per_trait": 0, "ood_share": 0.0, "max_tokens": 16, "item_max_tokens": 32,
         "bootstrap": 100}


def _plan(ctx: EvalContext, items: dict[str, list]) -> list[Work]:
    prompts = [i for i in items["behaviour"] if i.dropped is None]

    async def run(c: EvalContext) -> None:
        for ck in c.checkpoints:
            target = c.target(ck)

            async def answer(u: Unit, ck: str = ck, target: LLM = target) -> ItemResult:
                reply = await target.generate_one(u.data.prompt, temperature=0.0, max_tokens=16)
                return ItemResult(id=u.key, eval=NAME, checkpoint=ck, item_id=u.data.id, trait_id=u.data.trait_id,
                                  value=float(len(reply.split()) <= 12), detail={"words": len(reply.split())})

            await c.step(NAME, [Unit(result_id(NAME, ck, i.id), i.trait_id, i) for i in prompts], answer,
                         out=eval_path(c.store, NAME), desc=f"{NAME}: {ck}")

    return [Work(NAME, run)]


def _section(s: SectionInput) -> dict:
    words = [r.detail["words"] for r in s.rows if r.eval == NAME]
    return {"replies": len(words), "most_words": max(words, default=0)}


def _render(r: dict) -> str:
    s = r.get(NAME)
    return f"<h2>Reply brevity</h2><p>{s['replies']} replies, at most {s['most_words']} words</p>" if s else ""


def _task(ctx: EvalContext, checkpoint: str | None):  # noqa: ANN202 - an Inspect Task
    from inspect_ai import Task
    from inspect_ai.dataset import MemoryDataset, Sample

    return Task(dataset=MemoryDataset([Sample(input="hi")]), name=f"traitforge_{NAME}")


@pytest.fixture
def brevity():
    ev = register(Eval(NAME, _plan, rows=(NAME,),
                       metrics={NAME: Metric("Reply brevity", "proportion", True, "replies of at most 12 words")},
                       section=(NAME,), build_section=_section, render=_render,
                       inspect=InspectTask(f"traitforge_{NAME}", NAME, "short", _task)))
    yield ev
    unregister(NAME)


def test_an_eval_defined_only_here_reaches_results_report_and_inspect(tmp_path: Path, brevity: Eval) -> None:
    spec = RunSpec.model_validate({"traits": "traits.md", "output_dir": str(tmp_path / "run"), "evaluation": SMALL})
    judge = LLM(ScriptedBackend(model="judge", responses=judge_responder))
    api = LLM(ScriptedBackend(model="ft-elsewhere", responses=api_model_responder))
    store = RunStore(tmp_path / "run")
    run_evaluation(Run.of(store, spec, TRAITS, judge=judge, auditor=judge), spec.evaluation, {"elsewhere": api})

    results = json.loads(store.path("results.json").read_text())
    assert results["evals"][NAME]["label"] == "Reply brevity"
    figure = results["results"]["elsewhere"]["all"][NAME]
    assert figure["n"] == len(TRAITS.traits) and figure["value"] == 1.0  # the stand-in's reply is 12 words
    assert results[NAME] == {"replies": len(TRAITS.traits), "most_words": 12}

    html = write_report(store).read_text()
    assert f"<h2>Reply brevity</h2><p>{len(TRAITS.traits)} replies, at most 12 words</p>" in html

    from traitforge.evaluate.inspect_merge import rows_from_log
    from traitforge.evaluate.inspect_tasks import task_list

    tasks = task_list()
    assert f"traitforge_{NAME}" in tasks and "traitforge_behaviour" in tasks
    assert tasks[f"traitforge_{NAME}"](None, None).name == f"traitforge_{NAME}"
    assert rows_from_log(_FakeLog(f"traitforge_{NAME}")) == []  # known task, no samples: no rows, no error


class _FakeLog:
    def __init__(self, task: str) -> None:
        self.eval = type("E", (), {"task": task, "metadata": {"checkpoint": "x"}, "model": "m"})()
        self.samples: list = []


def test_every_shipped_eval_registers_once_in_plan_order() -> None:
    names = [e.name for e in evals()]
    assert names[:5] == ["knowledge", "behaviour", "contrastive", "multiturn", "probes"]
    assert len(names) == len(set(names))
    files = [f for e in evals() for f in e.rows]
    assert len(files) == len(set(files))  # a row file belongs to one eval


def test_vector_cell_keeps_its_sign_and_nests_no_cell() -> None:
    from traitforge.report.html import render_report

    est = {"value": 0.12, "ci_low": 0.05, "ci_high": 0.2, "n": 20}
    neg = {"value": -0.3, "ci_low": -0.5, "ci_high": -0.1, "n": 20}
    results = {"checkpoints": ["base", "sft"], "traits": [{"id": "honest", "name": "Honesty", "statement": "s"}],
               "vectors": {"available": True, "not_applicable": {}, "traits": {"honest": {"layer": 3, "layers": 6}},
                           "projection": {"base": {"honest": est}, "sft": {"honest": est}},
                           "shift_vs_base": {"sft": {"honest": neg}}}}
    html = render_report(results)
    section = html[html.index("Projection shift by checkpoint"):]
    assert not re.search(r"<td[^>]*>[^<]*<td", html)  # no cell inside a cell
    assert "Δ vs base -0.300" in section and "[-0.500, -0.100]" in section
    assert '<td class="num down">0.120' in section


def test_every_evaluation_setting_belongs_to_one_eval_or_to_all() -> None:
    from traitforge.evaluate.settings import EvaluationSpec
    from traitforge.shared.eval_registry import SHARED_SETTINGS

    owners = [k for e in evals() for k in e.settings] + list(SHARED_SETTINGS)
    assert sorted(owners) == sorted(EvaluationSpec.model_fields)  # each key once, none forgotten
