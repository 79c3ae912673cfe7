"""A checkpoint's content identity (issue 27): hashed once when saved (identity.json beside the
weights), re-hashed only where a file changed; evaluation rows keyed by it and by the settings they
depend on, so a retrained or changed checkpoint is evaluated again and an unchanged one makes no
model call; results never mix two versions of a checkpoint; rows from before identities are set
aside once; resume from a Trainer checkpoint only when it is complete."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from _eval_fixtures import TRAITS, api_model_responder, judge_responder, tiny_checkpoint

from traitforge.config import RunSpec
from traitforge.errors import InputError
from traitforge.evaluate import run_evaluation
from traitforge.evaluate.results import build_results
from traitforge.llm.client import LLM
from traitforge.llm.providers import local_hf
from traitforge.llm.providers.scripted import ScriptedBackend
from traitforge.pipeline import Run
from traitforge.runstore import RunStore
from traitforge.llm import identity as ident
from traitforge.train.resume import checkpoint_problem, earlier_losses, usable_checkpoint

# Two evals that call the evaluated model (behaviour: generation; perplexity: log-probs) and the judge.
TINY_EVAL = {"knowledge": False, "contrastive": False, "vectors": False, "behaviour_prompts_per_trait": 1,
             "ood_share": 0.0, "multiturn_conversations_per_trait": 0, "max_tokens": 8, "item_max_tokens": 32,
             "bootstrap": 100, "capability_max_tokens": 64, "capability_window": 32}


def _perturb(ckpt: Path, scale: float = 0.01) -> None:
    """Retrain in place, as far as the files can tell: other weights under the same name."""
    from safetensors.torch import load_file, save_file

    f = ckpt / "model.safetensors"
    w = load_file(str(f))
    k = next(iter(w))
    w[k] = w[k] + scale
    save_file(w, str(f), metadata={"format": "pt"})


# --- the identity -------------------------------------------------------------------------------------


def test_identity_is_stored_once_rehashed_only_when_a_file_changes(tmp_path, monkeypatch) -> None:
    ck = tiny_checkpoint(tmp_path / "ck")
    first = ident.checkpoint_identity(ck)
    rec = json.loads((ck / "identity.json").read_text())
    assert rec["identity"] == first and "model.safetensors" in rec["files"] and "config.json" in rec["files"]
    hashed: list[str] = []
    real = ident.file_sha256
    monkeypatch.setattr(ident, "file_sha256", lambda f: hashed.append(f.name) or real(f))
    assert ident.checkpoint_identity(ck) == first and hashed == []  # sizes and mtimes unchanged: nothing read
    _perturb(ck)
    second = ident.checkpoint_identity(ck)
    assert second != first and hashed == ["model.safetensors"]  # only the changed file
    assert ident.recorded(ck) == second


def test_sharded_identity_covers_the_index_and_every_shard(tmp_path) -> None:
    from transformers import AutoModelForCausalLM

    one = tiny_checkpoint(tmp_path / "one")
    model = AutoModelForCausalLM.from_pretrained(str(one))
    sharded = tmp_path / "sharded"
    model.save_pretrained(str(sharded), max_shard_size="1MB")
    shards = sorted(p.name for p in sharded.glob("model-*.safetensors"))
    assert len(shards) >= 2 and (sharded / "model.safetensors.index.json").is_file()
    for f in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(one / f, sharded / f)
    first = ident.checkpoint_identity(sharded)
    listed = set(json.loads((sharded / "identity.json").read_text())["files"])
    assert set(shards) | {"model.safetensors.index.json"} <= listed
    last = sharded / shards[-1]
    data = bytearray(last.read_bytes())
    data[-1] ^= 1  # one byte of one tensor
    last.write_bytes(bytes(data))
    assert ident.checkpoint_identity(sharded) != first
    (sharded / shards[0]).unlink()
    assert "missing" in (ident.weights_problem(sharded) or "")


@pytest.mark.parametrize("damage,says", [("delete", "no weight files"), ("empty", "is empty"),
                                         ("truncate", "is truncated")])
def test_weights_that_would_not_load_are_named(tmp_path, damage, says) -> None:
    ck = tiny_checkpoint(tmp_path / "ck")
    assert ident.weights_problem(ck) is None
    f = ck / "model.safetensors"
    if damage == "delete":
        f.unlink()
    elif damage == "empty":
        f.write_bytes(b"")
    else:
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    assert says in (ident.weights_problem(ck) or "")


# --- resuming from a Trainer checkpoint ---------------------------------------------------------------


def _trainer_checkpoint(folder: Path, step: int, losses: list[float]) -> Path:
    """The files a Trainer checkpoint holds (weights, optimizer, scheduler, RNG state, state)."""
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    save_file({"w": torch.ones(4)}, str(folder / "model.safetensors"))
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
        torch.save({"step": step}, folder / name)
    history = [{"step": i + 1, "loss": v} for i, v in enumerate(losses)]
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": history}))
    return folder


@pytest.mark.parametrize("damage,says", [
    ("empty dir", "trainer_state.json is missing"), ("optimizer.pt 0 bytes", "optimizer.pt is empty"),
    ("optimizer.pt truncated", "optimizer.pt is truncated"), ("no scheduler", "scheduler.pt is missing"),
    ("weights truncated", "model.safetensors is truncated"), ("state unreadable", "trainer_state.json is unreadable")])
def test_an_incomplete_trainer_checkpoint_falls_back_to_the_one_before(tmp_path, caplog, damage, says) -> None:
    trainer = tmp_path / "trainer"
    _trainer_checkpoint(trainer / "checkpoint-2", 2, [1.0, 2.0])
    newest = trainer / "checkpoint-4"
    if damage == "empty dir":
        newest.mkdir(parents=True)
    else:
        _trainer_checkpoint(newest, 4, [1.0, 2.0, 3.0, 4.0])
        opt = newest / "optimizer.pt"
        if damage == "optimizer.pt 0 bytes":
            opt.write_bytes(b"")
        elif damage == "optimizer.pt truncated":
            opt.write_bytes(opt.read_bytes()[:-40])
        elif damage == "no scheduler":
            (newest / "scheduler.pt").unlink()
        elif damage == "weights truncated":
            w = newest / "model.safetensors"
            w.write_bytes(w.read_bytes()[:-4])
        else:
            (newest / "trainer_state.json").write_text('{"global_step": 4, "log_hist')
    assert checkpoint_problem(trainer / "checkpoint-2") is None
    assert says in (checkpoint_problem(newest) or "")
    with caplog.at_level(logging.WARNING, logger="traitforge.train"):
        assert usable_checkpoint(trainer, "sft") == trainer / "checkpoint-2"
    assert not newest.exists()  # removed: the Trainer writes that step again
    assert f"checkpoint-4 is incomplete ({says}" in caplog.text


def test_no_complete_trainer_checkpoint_means_training_from_scratch(tmp_path, caplog) -> None:
    trainer = tmp_path / "trainer"
    (trainer / "checkpoint-2").mkdir(parents=True)
    with caplog.at_level(logging.WARNING, logger="traitforge.train"):
        assert usable_checkpoint(trainer, "sft") is None
    assert "training from scratch" in caplog.text


def test_the_losses_before_a_resume_come_from_the_checkpoint(tmp_path) -> None:
    ck = _trainer_checkpoint(tmp_path / "checkpoint-4", 4, [1.0, 2.0, 3.0, 6.0])
    assert earlier_losses(ck) == (4, 12.0)
    # logged every 2 steps (a logged loss is the mean of its steps), saved at step 5: step 5 at the mean
    state = {"global_step": 5, "log_history": [{"step": 2, "loss": 1.0}, {"step": 4, "loss": 3.0}]}
    (ck / "trainer_state.json").write_text(json.dumps(state))
    assert earlier_losses(ck) == (5, pytest.approx(10.0))


# --- evaluation keyed by what was evaluated -----------------------------------------------------------


class Loads:
    """Counts real loads of weights per checkpoint folder (every local call or log-prob needs one)."""

    def __init__(self, monkeypatch):
        from transformers import AutoModelForCausalLM

        self.n: dict[str, int] = {}
        real = AutoModelForCausalLM.from_pretrained

        def counting(path, *a, **k):
            self.n[Path(path).name] = self.n.get(Path(path).name, 0) + 1
            return real(path, *a, **k)

        monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", counting)


def _evaluate(out: Path, checkpoints: dict, settings: dict | None = None) -> RunStore:
    spec = RunSpec.model_validate({"traits": "traits.md", "output_dir": str(out),
                                   "evaluation": {**TINY_EVAL, **(settings or {})}})
    judge = LLM(ScriptedBackend(model="judge", responses=judge_responder))
    for p in checkpoints.values():
        if isinstance(p, Path):
            local_hf.unload_model(p)
    store = RunStore(out)
    run_evaluation(Run.of(store, spec, TRAITS, judge=judge, auditor=judge), spec.evaluation, dict(checkpoints))
    return store


def _rows(store: RunStore) -> dict[str, list[dict]]:
    """checkpoint -> its rows in every eval file (items excluded)."""
    out: dict[str, list[dict]] = {}
    for f in sorted((store.root / "eval").glob("*.jsonl")):
        for line in f.read_text().splitlines():
            d = json.loads(line)
            if "checkpoint" in d:
                out.setdefault(d["checkpoint"], []).append(d)
    return out


@pytest.fixture
def two(tmp_path) -> dict[str, Path]:
    return {"base": tiny_checkpoint(tmp_path / "cks" / "base"), "sft": tiny_checkpoint(tmp_path / "cks" / "sft")}


def test_a_changed_checkpoint_is_evaluated_again_an_unchanged_one_is_not(tmp_path, two, monkeypatch) -> None:
    api_backend = ScriptedBackend(model="elsewhere", responses=api_model_responder)
    api = LLM(api_backend)
    run = tmp_path / "run"
    loads = Loads(monkeypatch)
    store = _evaluate(run, {**two, "api": api})
    first = _rows(store)
    res1 = json.loads(store.path("results.json").read_text())
    assert set(first) == {"base", "sft", "api"} and loads.n == {"base": 1, "sft": 1}
    assert res1["identities"]["sft"] and len({d["identity"] for d in first["sft"]}) == 1
    api_calls = len(api_backend.calls)
    assert api_calls > 0

    # Nothing changed: no model call, no row written.
    loads.n.clear()
    assert _rows(_evaluate(run, {**two, "api": api})) == first
    assert loads.n == {} and len(api_backend.calls) == api_calls

    # sft retrained in place (same folder, other weights): sft alone is evaluated again.
    _perturb(two["sft"])
    store = _evaluate(run, {**two, "api": api})
    after = _rows(store)
    assert loads.n == {"sft": 1} and len(api_backend.calls) == api_calls
    assert after["base"] == first["base"] and after["api"] == first["api"]
    assert len(after["sft"]) == len(first["sft"])
    assert {d["identity"] for d in after["sft"]} != {d["identity"] for d in first["sft"]}
    res2 = json.loads(store.path("results.json").read_text())
    assert res2["identities"]["sft"] != res1["identities"]["sft"]
    assert res2["identities"]["base"] == res1["identities"]["base"]
    # The old version's rows are kept, aside, never in the results.
    aside = [json.loads(x) for f in (run / "eval" / "superseded").glob("*.jsonl") for x in f.read_text().splitlines()]
    assert sorted(d["id"] for d in aside) == sorted(d["id"] for d in first["sft"])


def test_a_changed_eval_setting_evaluates_every_model_again(tmp_path, two, monkeypatch) -> None:
    run = tmp_path / "run"
    loads = Loads(monkeypatch)
    _evaluate(run, two)
    loads.n.clear()
    _evaluate(run, two, {"max_tokens": 12})  # the evaluated models' answers are longer
    assert loads.n == {"base": 1, "sft": 1}


def test_rows_from_before_identities_are_set_aside_and_evaluated_once(tmp_path, two, monkeypatch) -> None:
    run = tmp_path / "run"
    store = _evaluate(run, two)
    for f in (run / "eval").glob("*.jsonl"):  # as a run made before identities wrote them
        rows = [json.loads(x) for x in f.read_text().splitlines()]
        f.write_text("".join(json.dumps({k: v for k, v in d.items() if k != "identity"}) + "\n" for d in rows))
    legacy = _rows(store)
    loads = Loads(monkeypatch)
    store = _evaluate(run, two)
    assert loads.n == {"base": 1, "sft": 1}
    now = _rows(store)
    assert all(d["identity"] for rows in now.values() for d in rows)
    assert sorted(d["id"] for d in now["sft"]) == sorted(d["id"] for d in legacy["sft"])
    assert (run / "eval" / "superseded").is_dir()
    loads.n.clear()
    _evaluate(run, two)
    assert loads.n == {}  # once


def test_results_refuse_two_versions_of_one_checkpoint(tmp_path, two) -> None:
    run = tmp_path / "run"
    store = _evaluate(run, two)
    f = run / "eval" / "behaviour.jsonl"
    rows = [json.loads(x) for x in f.read_text().splitlines()]
    mixed = [d for d in rows if d["checkpoint"] == "sft"][:1]
    assert mixed
    mixed[0]["identity"] = "0123456789abcdef"
    f.write_text("".join(json.dumps(d) + "\n" for d in rows))
    with pytest.raises(InputError) as e:
        build_results(store, TRAITS, ["base", "sft"], bootstrap_resamples=100)
    msg = str(e.value)
    assert "\n" not in msg and "checkpoint 'sft'" in msg and "behaviour" in msg and "0123456789abcdef" in msg


def test_the_report_flags_results_from_before_identities() -> None:
    from traitforge.report.html import render_report

    old = render_report({"checkpoints": ["base", "sft"]})
    assert "made before checkpoint identities" in old and "base, sft" in old
    new = render_report({"checkpoints": ["base", "sft"], "identities": {"base": "a" * 16, "sft": "b" * 16}})
    assert "made before checkpoint identities" not in new and "sft bbbbbbbbbbbb" in new


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_evaluating_a_checkpoint_whose_weights_would_not_load_is_one_line(tmp_path, two, damage) -> None:
    f = two["sft"] / "model.safetensors"
    if damage == "delete":
        f.unlink()
    else:
        f.write_bytes(f.read_bytes()[:100])
    with pytest.raises(InputError) as e:
        _evaluate(tmp_path / "run", two)
    assert "\n" not in str(e.value) and str(two["sft"]) in str(e.value) and "train it again" in str(e.value)


def test_retrain_then_eval_evaluates_exactly_the_changed_checkpoints(tmp_path, monkeypatch, caplog) -> None:
    """The lead's sequence: change training.sft.learning_rate, train, evaluate: sft, midtrain_sft and
    control (trained with the sft settings) are trained and evaluated again; midtrain and base are not."""
    import torch
    from _train_fixtures import make_tiny_run

    from traitforge.evaluate.settings import EvaluationSpec
    from traitforge.pipeline import checkpoints_for_eval
    from traitforge.train import run_training

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        store, spec = make_tiny_run(tmp_path, {"midtrain": {"max_steps": 1}, "sft": {"max_steps": 1}})
        spec = spec.model_copy(update={"evaluation": EvaluationSpec.model_validate(TINY_EVAL)})
        judge = LLM(ScriptedBackend(model="judge", responses=judge_responder))

        def train_and_evaluate(spec: RunSpec) -> dict[str, int]:
            run = Run.of(store, spec, TRAITS, judge=judge, auditor=judge)
            run_training(run, spec.training)
            cks = checkpoints_for_eval(run)
            for p in cks.values():
                local_hf.unload_model(Path(p))
            loads = Loads(monkeypatch)
            run_evaluation(run, spec.evaluation, cks)
            return loads.n

        first = train_and_evaluate(spec)
        assert first == {"tiny-base": 1, "midtrain": 1, "sft": 1, "midtrain_sft": 1, "control": 1}
        rows = _rows(store)
        res1 = json.loads(store.path("results.json").read_text())

        sft = spec.training.sft.model_copy(update={"learning_rate": spec.training.sft.learning_rate / 2})
        changed = spec.model_copy(update={"training": spec.training.model_copy(update={"sft": sft})})
        with caplog.at_level(logging.INFO, logger="traitforge.train"):
            second = train_and_evaluate(changed)
    finally:
        torch.set_num_threads(threads)
    assert "midtrain: done already, skipping" in caplog.text
    assert second == {"sft": 1, "midtrain_sft": 1, "control": 1}  # model loads (calls) per checkpoint
    after = _rows(store)
    res2 = json.loads(store.path("results.json").read_text())
    for ck in ("base", "midtrain"):
        assert after[ck] == rows[ck] and res2["identities"][ck] == res1["identities"][ck]
    for ck in ("sft", "midtrain_sft", "control"):
        assert len(after[ck]) == len(rows[ck]) and res2["identities"][ck] != res1["identities"][ck]
        assert {d["identity"] for d in after[ck]} == {res2["identities"][ck]}


def test_the_local_models_cache_key_follows_the_content_not_the_clock(tmp_path) -> None:
    """Retrained in place within the same second, same size: the LLM cache must not answer with
    the old weights' replies."""
    import os

    from traitforge.llm.providers.local_hf import LocalHFBackend

    ck = tiny_checkpoint(tmp_path / "ck")
    ident.checkpoint_identity(ck)
    before = LocalHFBackend(str(ck)).cache_identity()
    assert before["content"] == ident.recorded(ck)
    f = ck / "model.safetensors"
    st = f.stat()
    _perturb(ck)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # same second
    assert f.stat().st_size == st.st_size
    assert LocalHFBackend(str(ck)).cache_identity() != before  # identity.json no longer describes it
    ident.checkpoint_identity(ck)  # as evaluation does before any call
    after = LocalHFBackend(str(ck)).cache_identity()
    assert after["content"] != before["content"]
    # The content alone is the key (not the path, size or clock): the same weights elsewhere, such as
    # an ablation arm's copy, answer from the same cache entries.
    assert after == {"provider": "local", "content": after["content"]}


def test_an_api_models_identity_is_its_cache_identity() -> None:
    from traitforge.config import ModelSpec
    from traitforge.evaluate.common import row_identity

    settings = {"max_tokens": 8}
    spec = ModelSpec(model="openai:gpt-4o-mini")
    same = [spec.model_copy(update={"concurrency": 4, "rpm": 60.0, "api_key_env": "OTHER_KEY"})]
    other = [spec.model_copy(update={"model": "openai:gpt-4o"}), spec.model_copy(update={"reasoning_effort": "low"}),
             spec.model_copy(update={"temperature": 0.7})]
    ident = row_identity(spec, settings)
    assert all(row_identity(s, settings) == ident for s in same)  # how it is called, not what answers
    assert len({ident} | {row_identity(s, settings) for s in other}) == 4
    assert row_identity(spec, {"max_tokens": 12}) != ident


def test_a_local_models_cache_key_does_not_change_when_its_identity_is_first_recorded(tmp_path) -> None:
    """A fresh model folder (the embedded model on a new machine) has no identity.json until
    evaluation first hashes it. The key was the path and clock before that and the content after,
    so a run's generation calls missed the cache once evaluation had begun (found comparing two tiny
    runs). Now the key is the content from the first call, wherever the folder lies."""
    import shutil

    from traitforge.llm.providers.local_hf import LocalHFBackend

    ck = tiny_checkpoint(tmp_path / "ck")
    (ck / "identity.json").unlink(missing_ok=True)
    first = LocalHFBackend(str(ck)).cache_identity()
    (ck / "identity.json").unlink(missing_ok=True)
    ident.checkpoint_identity(ck)  # as evaluation does
    assert LocalHFBackend(str(ck)).cache_identity() == first
    moved = tmp_path / "elsewhere"
    shutil.copytree(ck, moved)  # mtimes change: hashed again, same content
    assert LocalHFBackend(str(moved)).cache_identity() == first == {"provider": "local", "content": first["content"]}
