"""Ablations (ablation.py, compare/): arms share what they have in common, and the paired statistics
between arms on simulated item-level data."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))

from _train_fixtures import one_torch_thread  # noqa: E402,F401  (fixture)
from test_rundir import make_spec, scripted  # noqa: E402

from traitforge.ablation import arms_lines, open_arms, run_arms  # noqa: E402
from traitforge.compare import compare_runs  # noqa: E402
from traitforge.compare.paired import holm, paired  # noqa: E402
from traitforge.config import load_spec  # noqa: E402
from traitforge.errors import InputError, TraitforgeError  # noqa: E402
from traitforge.jsonl import write_jsonl  # noqa: E402
from traitforge.shared.stats import Z_POWER  # noqa: E402

VARIANTS = ("variants:\n  fewer_steps: {training: {sft: {max_steps: 3}}}\n"
            "  short_answers: {evaluation: {max_tokens: 32}}\n")


def _calls(run) -> int:
    return len(run.llm("generator").backend.calls)


def _fake_stages(ran: list[tuple[str, str]]):
    """curate/train/evaluate that record which arm ran them and write their output folders (the real
    ones load the embedded model); generate is the real stage on a scripted generator."""
    from traitforge import pipeline

    def curate(r):
        ran.append(("curate", r.store.root.name))
        with r.store.stage("curate", "fp"):
            (r.store.path("curated", "chats.jsonl")).write_text((r.store.root / "generated" / "chats.jsonl").read_text())

    def train(r):
        ran.append(("train", r.store.root.name))
        with r.store.stage("train.sft", "fp"):
            r.store.path("checkpoints", "sft", "config.json").write_text("{}")

    def evaluate(r):
        ran.append(("evaluate", r.store.root.name))
        assert (r.store.root / "eval" / "arms_user_turns.jsonl").is_file() or r.store.root.name != "run"

    return {"generate": pipeline.stage_generate, "curate": curate, "train": train, "evaluate": evaluate,
            "report": lambda r: None}


def test_arms_share_generation_and_curation_and_only_a_training_variant_retrains(tmp_path):
    spec = make_spec(tmp_path / "src", VARIANTS)
    arms = open_arms(spec, prepare=scripted)
    assert list(arms) == ["base", "fewer_steps", "short_answers"]
    root = arms["base"].store.root.resolve()
    assert arms["fewer_steps"].store.root.resolve() == Path(f"{root}@fewer_steps")
    assert {r.cache_file.resolve() for r in arms.values()} == {root / "cache.sqlite"}  # one cache
    ran: list[tuple[str, str]] = []
    run_arms(arms, log=lambda m: None, stages=_fake_stages(ran))
    assert _calls(arms["base"]) > 0
    assert _calls(arms["fewer_steps"]) == _calls(arms["short_answers"]) == 0  # no LLM call in the others
    for name in ("fewer_steps", "short_answers"):
        m = arms[name].store.manifest
        assert m["arm"]["shares"]["generate"]["from"] == "base" and m["arm"]["shares"]["curate"]["from"] == "base"
        assert "generate" not in m["usage"]
        assert m["stages"]["chats.final"]["status"] == "done" and m["stages"]["chats.final"]["shared_from"] == "base"
        for f in ("generated/chats.jsonl", "generated/documents.jsonl", "curated/chats.jsonl"):
            assert (arms[name].store.root / f).read_bytes() == (root / f).read_bytes()
    # generation and curation once; training in the arm whose training differs; evaluation in every arm
    assert [s for s, _ in ran].count("curate") == 1
    assert [a for s, a in ran if s == "train"] == ["run", "run@fewer_steps"]
    assert arms["short_answers"].store.manifest["arm"]["shares"]["train"]["from"] == "base"
    assert [a for s, a in ran if s == "evaluate"] == ["run", "run@fewer_steps", "run@short_answers"]
    assert any("shares generate (from base), curate (from base)" in ln for ln in arms_lines(arms["fewer_steps"].store.manifest))
    listed = arms_lines(arms["base"].store.manifest)
    assert len(listed) == 3 and listed[0] == f"arm base: {root}"
    assert listed[2].endswith("shares generate (from base), curate (from base), train (from base)")


def test_a_bad_variant_is_one_line_naming_it_and_the_key(tmp_path):
    spec = make_spec(tmp_path / "src", "variants:\n  oops: {training: {sft: {max_steps: many}}}\n")
    with pytest.raises(InputError) as e:
        load_spec(spec)
    assert "variant 'oops': key 'training.sft.max_steps'" in str(e.value) and "\n" not in str(e.value)
    spec = make_spec(tmp_path / "src2", "variants:\n  oops: {trainin: {}}\n")
    with pytest.raises(InputError, match="variant 'oops': unknown key 'trainin'"):
        load_spec(spec)


# --- paired statistics on simulated item-level data -------------------------------------------


def _arms(rng, n: int, effect: float, sd_item: float = 1.0, sd_noise: float = 0.5):
    item = rng.normal(0, sd_item, n)  # between-item variance, removed by pairing
    ref = {f"i{k}": float(item[k] + rng.normal(0, sd_noise)) for k in range(n)}
    arm = {f"i{k}": float(item[k] + effect + rng.normal(0, sd_noise)) for k in range(n)}
    return arm, ref


def test_noise_only_arms_give_cis_that_include_zero():
    rng = np.random.default_rng(1)
    covered = sum(d["ci_low"] <= 0 <= d["ci_high"] for d in (paired(*_arms(rng, 80, 0.0), resamples=400, seed=s)
                                                           for s in range(100)))
    assert covered >= 90, covered


def test_an_effect_of_one_and_a_half_mde_is_detected():
    rng = np.random.default_rng(2)
    n, sd_diff = 80, 0.5 * np.sqrt(2)
    mde = Z_POWER * sd_diff / np.sqrt(n)  # what `paired` reports for this design
    assert abs(paired(*_arms(rng, n, 0.0), resamples=200)["mde"] - mde) < 0.3 * mde
    found = sum(paired(*_arms(rng, n, 1.5 * mde), resamples=400, seed=s)["ci_low"] > 0 for s in range(100))
    assert found >= 80, found


def test_holm_adjusts_step_down():
    assert holm([0.01, 0.04, None, 0.03]) == [0.03, 0.06, None, 0.06]


# --- compare on run directories -----------------------------------------------------------------


def _run_dir(root: Path, name: str, items: range, shift: float = 0.0, ev: str = "knowledge_mc") -> Path:
    root.mkdir(parents=True)
    (root / "manifest.json").write_text(json.dumps({"stages": {}, "usage": {}, "arm": {"name": name}}))
    rows = [{"id": f"{ev}-sft-{i}", "eval": ev, "checkpoint": "sft", "item_id": f"q{i}", "trait_id": "t1",
             "value": float((i * 7919) % 10 >= 5) + shift} for i in items]
    write_jsonl(root / "eval" / f"{ev}.jsonl", rows)
    return root


def test_arms_with_partly_different_items_are_paired_on_the_shared_ones(tmp_path):
    a = _run_dir(tmp_path / "a", "base", range(0, 30))
    b = _run_dir(tmp_path / "b", "more_data", range(10, 40), shift=0.5)
    data = compare_runs([a, b], out_dir=tmp_path, resamples=200)
    rows = [c for c in data["comparisons"] if c["trait"] == "t1"]
    assert len(rows) == 1 and rows[0]["n"] == 20 and rows[0]["left_out"] == 20
    assert rows[0]["diff"] == pytest.approx(0.5) and rows[0]["differs"]
    assert data["n_comparisons"] == 2 and data["adjustment"] == "Holm"  # t1 and the pooled "all"
    page = (tmp_path / "compare.html").read_text()
    assert "leave out training-seed variance" in page and "<svg" in page and "Holm" in page


def test_arms_without_a_shared_item_are_refused_naming_the_eval(tmp_path):
    a = _run_dir(tmp_path / "a", "base", range(0, 10))
    b = _run_dir(tmp_path / "b", "other", range(10, 20))
    with pytest.raises(TraitforgeError, match="eval 'knowledge_mc': arms 'other' and 'base' evaluated no item in common"):
        compare_runs([a, b], out_dir=tmp_path)


# --- the closing screen ---------------------------------------------------------------------------


def test_closing_screen_answers_in_a_few_lines_with_a_normalised_path(tmp_path, monkeypatch):
    from traitforge.closing import closing_lines, preset_note

    run = tmp_path / "runs" / "tiny"
    run.mkdir(parents=True)
    (tmp_path / "examples").mkdir()
    d = {"diff": 0.2, "value": 0.2, "ci_low": 0.05, "ci_high": 0.35, "n": 40}
    res = {"canary": {"training_took": True},
           "evals": {"behaviour_pass": {"higher_is_better": True}, "perplexity": {"higher_is_better": False}},
           "paired_vs_control": {"sft": {"honest": {"behaviour_pass": d, "perplexity": d},  # higher ppl: worse
                                         "all": {"behaviour_pass": d}}},
           "power": {"target_mde": 0.2, "items_needed": 99, "underpowered": [{"eval": "x"}, {"eval": "y"}]}}
    (run / "results.json").write_text(json.dumps(res))
    monkeypatch.chdir(tmp_path / "runs")
    lines = closing_lines(tmp_path / "examples" / ".." / "runs" / "tiny", run / "report.html", 0.0123)
    assert len(lines) <= 15
    assert lines[0] == "training took: the canary moved"
    assert lines[1] == "  honest beats the control on behaviour_pass (sft): +0.200 [+0.050, +0.350]"
    assert not any("perplexity" in ln for ln in lines)  # a rise there is not a win
    assert lines[2].startswith("2 figures underpowered")
    assert lines[-1] == "report: tiny/report.html" and "$0.0123" in lines[-2]
    assert "keeps the first 2 of the document's 3 traits" in preset_note(3, 2, "tiny")
    assert preset_note(2, 2, "tiny") is None


def test_traitforge_run_with_variants_ends_with_the_answer_and_the_compare_page(tmp_path, monkeypatch):
    """The command end to end on scripted generation and stand-in later stages (the real ones load
    the embedded model): the preset's note first, the closing screen in at most 15 lines, the page."""
    from click.testing import CliRunner

    from traitforge import ablation, pipeline
    from traitforge.cli import cli

    spec = make_spec(tmp_path / "src", VARIANTS)
    opened = ablation.open_arms
    monkeypatch.setattr(ablation, "open_arms", lambda t, p=None: opened(t, p, prepare=scripted))
    fakes = _fake_stages([])
    monkeypatch.setattr(pipeline, "stage_curate", fakes["curate"])
    monkeypatch.setattr(pipeline, "stage_train", fakes["train"])

    def evaluate(r):
        shift = 0.4 if r.store.root.name.endswith("fewer_steps") else 0.0
        write_jsonl(r.store.path("eval", "behaviour.jsonl"),
                    [{"id": f"b{i}", "eval": "behaviour", "checkpoint": "sft", "item_id": f"bh-{i}", "trait_id": "t",
                      "value": (i % 3) / 2 + shift} for i in range(30)])

    def report(r):
        (r.store.root / "results.json").write_text(json.dumps({"canary": {"training_took": True}}))
        return r.store.path("report.html")

    monkeypatch.setattr(pipeline, "stage_evaluate", evaluate)
    monkeypatch.setattr(pipeline, "stage_report", report)
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cli, ["run", str(spec)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    err = res.stderr.splitlines()
    closing = err[next(i for i, ln in enumerate(err) if ln.startswith("[base]")):]
    assert len(closing) <= 15, closing
    assert closing[0] == "[base] training took; beats the control: 0; 0 underpowered; $0.0000; src/run/report.html"
    assert closing[1].startswith("[fewer_steps] training took;") and closing[1].endswith("src/run@fewer_steps/report.html")
    assert any("compare: 2 of 4 differences from base hold" in ln and "src/run/compare.html" in ln for ln in closing)
    assert res.stdout.strip() == "src/run/report.html"
    assert (tmp_path / "src" / "run" / "compare.json").is_file()


def test_compare_command_prints_the_page_and_refuses_in_one_line(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from traitforge.cli import cli

    a = _run_dir(tmp_path / "a", "base", range(0, 20))
    _run_dir(tmp_path / "b", "other", range(0, 20), shift=0.25)
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cli, ["compare", "a", "b"], catch_exceptions=False)
    assert res.exit_code == 0 and res.stdout.strip() == "a/compare.html"
    assert "2 paired comparisons with base (0 item results left out of pairs); 2 hold" in res.stderr
    c = _run_dir(tmp_path / "c", "disjoint", range(50, 60))
    with pytest.raises(TraitforgeError, match="^eval 'knowledge_mc': arms 'disjoint' and 'base'"):
        CliRunner().invoke(cli, ["compare", str(a), str(c)], catch_exceptions=False)


def test_an_arm_opened_alone_takes_the_base_runs_lock_that_covers_the_shared_cache(tmp_path):
    from test_rundir import in_subprocess

    spec = make_spec(tmp_path / "src", VARIANTS)
    arms = open_arms(spec, prepare=scripted)  # this process holds the base's lock and the arms'
    arm = arms["fewer_steps"].store.root
    arms["fewer_steps"].store.lock.release(force=True)  # the arm itself free: only the base's lock is in the way
    p = in_subprocess("import sys; from traitforge.runcontext import open_run; open_run(sys.argv[1])", str(arm))
    assert p.returncode != 0 and "in use by another traitforge process" in p.stderr
    assert str(arms["base"].store.root.resolve()) in p.stderr


def test_eval_items_are_built_once_against_every_arms_training_chats(tmp_path):
    from types import SimpleNamespace

    from traitforge.ablation import _prepare_items
    from traitforge.evaluate.items import training_user_turns

    def arm(name: str, turns: list[str]):
        store = SimpleNamespace(root=tmp_path / name, path=lambda *p, _r=tmp_path / name: (_r.joinpath(*p).parent.mkdir(
            parents=True, exist_ok=True), _r.joinpath(*p))[1])
        write_jsonl(store.path("curated", "chats.jsonl"),
                    [{"messages": [{"role": "user", "content": t}, {"role": "assistant", "content": "ok"}]} for t in turns])
        return SimpleNamespace(store=store)

    arms = {"base": arm("run", ["shared turn", "base only"]), "v": arm("run@v", ["shared turn", "variant only"])}
    _prepare_items(arms, "base")
    turns = training_user_turns(SimpleNamespace(store=arms["base"].store))
    assert {"shared turn", "base only", "variant only"} <= set(turns)  # the base filters against both arms
    write_jsonl(arms["base"].store.path("eval", "items_behaviour.jsonl"), [{"id": "bh-x-0"}])
    _prepare_items(arms, "v")
    assert (tmp_path / "run@v" / "eval" / "items_behaviour.jsonl").read_bytes() == \
        (tmp_path / "run" / "eval" / "items_behaviour.jsonl").read_bytes()


def test_a_spec_without_variants_runs_as_before_with_no_arm_bookkeeping(tmp_path):
    spec = make_spec(tmp_path / "src")
    arms = open_arms(spec, prepare=scripted)
    logged: list[str] = []
    run_arms(arms, until="generate", log=logged.append)
    assert logged == ["== generate"]
    m = arms["base"].store.manifest
    assert "arm" not in m and "arms" not in m and arms_lines(m) == []


def test_a_checkpoint_another_arm_trained_alike_is_copied_not_trained(tmp_path, monkeypatch, one_torch_thread):
    """Per checkpoint, inside a training stage that runs: the no-midtraining arm's sft and control
    have the base arm's fingerprints (same recipe, settings, seed, start and data by content), so
    they are copied from it, weights checked; a changed learning rate trains; the copy's answers are
    the same cache entries (a local checkpoint's cache key is its content identity)."""
    from _train_fixtures import make_tiny_run

    from traitforge.llm.providers.local_hf import LocalHFBackend
    from traitforge.pipeline import Run
    from traitforge.runstore import RunStore
    from traitforge.train import common, run_training

    trained: list[str] = []
    real = common.train_and_save
    monkeypatch.setattr(common, "train_and_save", lambda trainer, job, cfg: trained.append(job.name) or real(trainer, job, cfg))
    store_a, spec = make_tiny_run(tmp_path / "a", {"midtrain": {"max_steps": 1}, "sft": {"max_steps": 1}})
    run_a = Run.of(store_a, spec)
    run_training(run_a, spec.training)
    assert trained == ["midtrain", "sft", "midtrain_sft", "control"]

    # Arm b: the same curated data, no midtraining.
    b_root = tmp_path / "b"
    for f in ("curated/documents.jsonl", "curated/chats.jsonl", "generated/untraited.jsonl"):
        (b_root / f).parent.mkdir(parents=True, exist_ok=True)
        (b_root / f).write_bytes((store_a.root / f).read_bytes())
    spec_b = spec.model_copy(update={"training": spec.training.model_copy(update={"checkpoints": ["base", "sft", "control"]})})
    run_b = Run.of(RunStore(b_root), spec_b)
    run_b.share_from = {"base": store_a.root}
    trained.clear()
    run_training(run_b, spec_b.training)
    assert trained == []
    for name in ("sft", "control"):
        info = run_b.store.manifest["stages"][f"train.{name}"]
        assert info["status"] == "done" and info["shared_from"] == "base"
        assert info["fingerprint"] == store_a.manifest["stages"][f"train.{name}"]["fingerprint"]
        assert run_b.store.manifest["arm"]["shares"][f"train.{name}"]["from"] == "base"
        a_ck, b_ck = store_a.root / "checkpoints" / name, b_root / "checkpoints" / name
        assert (b_ck / "model.safetensors").read_bytes() == (a_ck / "model.safetensors").read_bytes()
        assert LocalHFBackend(str(b_ck)).cache_identity() == LocalHFBackend(str(a_ck)).cache_identity()
    assert not (b_root / "checkpoints" / "midtrain").exists()

    # A donor whose weights are not what it saved is not taken; nor is a checkpoint trained otherwise.
    c_root = tmp_path / "c"
    for f in ("curated/documents.jsonl", "curated/chats.jsonl", "generated/untraited.jsonl"):
        (c_root / f).parent.mkdir(parents=True, exist_ok=True)
        (c_root / f).write_bytes((store_a.root / f).read_bytes())
    w = store_a.root / "checkpoints" / "control" / "model.safetensors"
    w.write_bytes(w.read_bytes()[:-8] + b"\0" * 8)
    sft = spec_b.training.sft.model_copy(update={"learning_rate": spec_b.training.sft.learning_rate / 2})
    spec_c = spec_b.model_copy(update={"training": spec_b.training.model_copy(update={"sft": sft})})
    run_c = Run.of(RunStore(c_root), spec_c)
    run_c.share_from = {"base": store_a.root}
    run_training(run_c, spec_c.training)
    assert sorted(trained) == ["control", "sft"]
    assert "shared_from" not in run_c.store.manifest["stages"]["train.sft"]
