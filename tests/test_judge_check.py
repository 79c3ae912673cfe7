"""The judge check: the published ODCV transcripts and their median labels read from the shared
copy (120 incentivized transcripts, 28 labelled >= 3), a scripted judge that returns the published
score (agreement 1.0, no warning) and one that returns noise (the interval includes chance, the
warning is there), the user's labelled JSONL format, the statistics, and the command."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from traitforge.errors import InputError
from traitforge.evaluate import judge_check as jc
from traitforge.evaluate.odcv.grade import load_rubric
from traitforge.llm.client import LLM
from traitforge.llm.providers.scripted import ScriptedBackend
from traitforge.report.judged import render_judge_check

ODCV = Path(__file__).resolve().parents[2] / "shared" / "evals" / "odcv-bench"


def _need() -> None:
    if not (ODCV / jc.LOGS).is_dir():
        pytest.skip(f"{ODCV} is absent (the upstream ODCV copy lives beside the repository in ../shared)")


def _transcript_of(request: str, rubric) -> str:
    return request.split(rubric.before, 1)[1].rsplit(rubric.after, 1)[0]


@pytest.fixture(scope="module")
def published():
    _need()
    return jc.load_odcv_labelled(ODCV), load_rubric(ODCV)


def _run(judge_fn, dset, rubric, **kw):
    import asyncio

    return asyncio.run(jc.judge_check(LLM(ScriptedBackend(model="judge", responses=judge_fn)), dset, rubric,
                                      boot=300, **kw))


def test_the_published_set_is_read_and_counted(published) -> None:
    dset, _ = published
    assert len(dset.items) == 120 and dset.skipped == 0 and dset.name == "ODCV"
    assert sum(it.label >= 3 for it in dset.items) == 28
    assert {it.id.split("/")[0] for it in dset.items} == {"claude-opus-4.7-incentivized", "gpt-oss-120b-incentivized",
                                                          "qwen3.6-27b-incentivized"}
    assert "not human labels" in dset.labels and "0.81" in dset.labels
    with pytest.raises(InputError, match="no ODCV published results here"):
        jc.load_odcv_labelled(ODCV / "mandated_scenarios")


def test_a_judge_that_returns_the_published_score_agrees_fully(published, tmp_path: Path) -> None:
    dset, rubric = published
    label = {it.transcript: it.label for it in dset.items}

    def oracle(msgs, params):
        return json.dumps({"reasoning": "as published", "score": label[_transcript_of(msgs[-1].content, rubric)]})

    res = _run(oracle, dset, rubric)
    a = res["agreement"]
    assert a["n"] == 120 and res["unscored"] == 0 and res["truncated"] == 0
    assert a["spearman"]["value"] == pytest.approx(1.0) and a["kappa"]["value"] == pytest.approx(1.0)
    assert a["accuracy"]["value"] == 1.0 and a["spearman"]["ci_low"] == pytest.approx(1.0)
    assert res["n_labelled_misaligned"] == 28 and res["warning"] is None
    out = jc.write_judge_check(tmp_path / jc.OUTPUT, res)
    assert jc.read_judge_check(tmp_path) == json.loads(out.read_text())
    assert jc.report_warning(tmp_path) is None and jc.report_warning(tmp_path / "elsewhere") is None
    text = jc.format_text(res)
    assert "28 of 120 labelled >= 3" in text and "Spearman rho 1.00 [1.00, 1.00]" in text and "WARNING" not in text
    html = render_judge_check(res)
    assert "Judge check" in html and "not human labels" in html and "n=120" in html and "⚠" not in html


def test_a_noise_judge_gets_the_warning(published, tmp_path: Path) -> None:
    dset, rubric = published
    rng = random.Random(7)

    def noise(msgs, params):
        return f"Hard to say. Score: {rng.randint(0, 5)}"

    res = _run(noise, dset, rubric, max_chars=20_000)
    a = res["agreement"]
    assert a["n"] == 120 and res["truncated"] > 0
    assert a["kappa"]["ci_low"] <= 0 <= a["kappa"]["ci_high"] and a["spearman"]["ci_low"] <= 0 <= a["spearman"]["ci_high"]
    assert res["warning"].startswith("low agreement on ODCV: judge scripted:judge")
    assert "WARNING: low agreement on ODCV" in jc.format_text(res)
    assert "low agreement on ODCV" in render_judge_check(res)
    jc.write_judge_check(tmp_path / jc.OUTPUT, res)
    assert jc.report_warning(tmp_path, "scripted:judge") == res["warning"]
    assert jc.report_warning(tmp_path, "openai:another-judge") is None  # a check of another judge says nothing


def test_unscored_replies_are_counted_not_scored(published) -> None:
    dset, rubric = published
    small = jc.LabelledSet(dset.items[:6], dset.source, dset.labels, "ODCV")
    res = _run(lambda m, p: "", small, rubric)
    assert res["unscored"] == 6 and res["agreement"]["n"] == 0 and res["unscored_reasons"] == {"empty judge reply": 6}
    assert res["warning"] is not None


def test_statistics() -> None:
    pairs = np.array([[0, 0], [1, 2], [3, 3], [4, 5], [5, 4]], float)
    assert jc.spearman(pairs) == pytest.approx(0.9)
    assert jc.kappa(pairs) == pytest.approx(1.0)  # all agree at >= 3
    assert np.isnan(jc.spearman(np.array([[1, 2], [1, 3]], float)))
    a = jc.agreement([0, 0, 4, 4], [0, 4, 0, 4], boot=200)
    assert a["kappa"]["value"] == 0.0 and a["accuracy"]["value"] == 0.5 and a["chance_accuracy"] == 0.5
    assert jc.low_agreement(a)


def test_user_labelled_file(tmp_path: Path) -> None:
    f = tmp_path / "labels.jsonl"
    rows = [{"id": "a", "transcript": "== Step 1 ==\nrole: user\ncontent: hi\n", "label": 4,
             "rubric": "Grade this: $transcript\nScore 0-5."},
            {"id": "b", "messages": [{"role": "user", "content": "fix the KPI"}, {"role": "assistant", "content": "ok",
                                                                                  "command": "rm /app/kpi.sh"}],
             "label": 0, "rubric": "Rate: $transcript"}]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    dset = jc.load_labelled_jsonl(f)
    assert [it.id for it in dset.items] == ["a", "b"] and dset.name == "labels.jsonl"
    assert dset.items[1].transcript.steps[1].modifies_files
    seen = []

    def judge_fn(msgs, params):
        seen.append(msgs[-1].content)
        return "Score: 4" if "hi" in msgs[-1].content else "Score: 0"

    res = _run(judge_fn, dset, None)
    assert res["agreement"]["accuracy"]["value"] == 1.0 and seen[0].startswith("Grade this: == Step 1 ==")
    assert res["warning"].startswith("low agreement on labels.jsonl")  # n=2: no interval, so no claim
    for bad, msg in (({"id": "x", "transcript": "t", "label": 7}, "field 'label': expected a number 0-5"),
                     ({"id": "x", "label": 1}, "needs a non-empty 'transcript'"),
                     ({"id": "x", "transcript": "t", "label": 1, "rubric": "no slot"}, "field 'rubric'")):
        f.write_text(json.dumps(bad) + "\n")
        with pytest.raises(InputError, match=r"labels.jsonl:1: " + msg):
            jc.load_labelled_jsonl(f)


def test_the_command_writes_run_judge_check_json(tmp_path: Path, monkeypatch) -> None:
    _need()
    from traitforge import cli
    from traitforge.pipeline import Run

    (tmp_path / "traits.md").write_text((Path(cli.__file__).parent / "templates" / "traits.example.md").read_text())
    (tmp_path / "spec.yaml").write_text("traits: traits.md\noutput_dir: run\n")
    judge = LLM(ScriptedBackend(model="judge", responses=lambda m, p: '{"reasoning": "r", "score": 0}'))
    monkeypatch.setattr(Run, "llm", lambda self, role: judge)
    res = CliRunner().invoke(cli.cli, ["judge-check", str(tmp_path / "spec.yaml"), "--odcv", str(ODCV),
                                       "--limit", "5", "--max-chars", "8000"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "on 5 labelled transcripts" in res.output and "WARNING: low agreement on ODCV" in res.output
    saved = json.loads((tmp_path / "run" / jc.OUTPUT).read_text())
    assert saved["n_items"] == 5 and saved["max_transcript_chars"] == 8000
    res = CliRunner().invoke(cli.cli, ["judge-check", str(tmp_path / "spec.yaml")])
    assert res.exit_code != 0 and "give --odcv DIR" in res.output
