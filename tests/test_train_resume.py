import json
import logging

import pytest

from _train_fixtures import one_torch_thread  # noqa: F401  (fixture)
from _train_fixtures import losses, make_run, make_tiny_run, weight_changes
from traitforge.train import run_training
from traitforge.pipeline import Run
from traitforge.train.common import read_metrics
from traitforge.train.run import stage_name

pytestmark = [pytest.mark.usefixtures("one_torch_thread")]


class Crash(Exception):
    pass


def _crash_after_save(step: int = 2):
    from transformers import TrainerCallback

    class CrashAfterSave(TrainerCallback):
        def on_save(self, args, state, control, **kw):
            if state.global_step == step:
                raise Crash(f"simulated crash after checkpoint-{step}")

    return CrashAfterSave()


def _weights(ckpt):
    from safetensors.torch import load_file

    return load_file(str(ckpt / "model.safetensors"))


@pytest.mark.slow
def test_interrupted_training_resumes_and_matches_uninterrupted(tmp_path):
    training = {"save_steps": 2, "midtrain": {"max_steps": 4, "batch_size": 2}}
    store, spec = make_run(tmp_path / "a", training)

    with pytest.raises(Crash):
        run_training(Run.of(store, spec), spec.training, ["midtrain"], callbacks=[_crash_after_save()])
    assert store.manifest["stages"][stage_name("midtrain")]["status"] == "failed"
    assert (tmp_path / "a" / "train" / "midtrain" / "trainer" / "checkpoint-2").is_dir()
    assert not (tmp_path / "a" / "checkpoints" / "midtrain").exists()

    run_training(Run.of(store, spec), spec.training, ["midtrain"])
    info = store.manifest["stages"][stage_name("midtrain")]
    assert info["status"] == "done"
    assert info["counts"]["resumed_from"] == "checkpoint-2" and info["counts"]["steps"] == 4
    metrics = read_metrics(tmp_path / "a" / "train" / "midtrain" / "metrics.jsonl")
    steps = [r["step"] for r in metrics if "loss" in r]
    assert steps == [1, 2, 3, 4]  # the second run started at step 3

    store_b, spec_b = make_run(tmp_path / "b", training)
    run_training(Run.of(store_b, spec_b), spec_b.training, ["midtrain"])
    assert losses(tmp_path / "a" / "train" / "midtrain" / "metrics.jsonl") == pytest.approx(
        losses(tmp_path / "b" / "train" / "midtrain" / "metrics.jsonl"), rel=1e-4)
    wa, wb = _weights(tmp_path / "a" / "checkpoints" / "midtrain"), _weights(tmp_path / "b" / "checkpoints" / "midtrain")
    assert wa.keys() == wb.keys()
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-5
    # ...and training did change the weights (the comparison is not trivially equal).
    assert max(weight_changes(tmp_path / "a" / "checkpoints" / "midtrain").values()) > 1e-4
    # train_loss covers every step, not only the resumed ones.
    clean = store_b.manifest["stages"][stage_name("midtrain")]["counts"]["train_loss"]
    assert info["counts"]["train_loss"] == pytest.approx(clean, rel=1e-4)


# --- on a tiny random-weight model (fast) ------------------------------------------------------------

TINY = {"save_steps": 2, "keep_trainer_checkpoints": True, "sft": {"max_steps": 6, "batch_size": 2}}


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """An uninterrupted tiny run: (its store, its sft weights)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("clean")
    store, spec = make_tiny_run(root, TINY)
    run_training(Run.of(store, spec), spec.training, ["sft"])
    torch.set_num_threads(n)
    return store, _weights(root / "run" / "checkpoints" / "sft")


@pytest.mark.parametrize("damage", ["empty dir", "optimizer.pt 0 bytes"])
def test_a_half_written_trainer_checkpoint_resumes_from_the_one_before(tmp_path, caplog, clean, damage):
    """A kill while the Trainer saved checkpoint-4 (or a full disk): the re-run resumes from
    checkpoint-2, no traceback, and ends where an uninterrupted run ends; train_loss covers every step."""
    store, spec = make_tiny_run(tmp_path / "a", TINY)
    with pytest.raises(Crash):
        run_training(Run.of(store, spec), spec.training, ["sft"], callbacks=[_crash_after_save(4)])
    ck4 = tmp_path / "a" / "run" / "train" / "sft" / "trainer" / "checkpoint-4"
    if damage == "empty dir":
        for f in ck4.iterdir():
            f.unlink()
    else:  # the other damages: tests/test_checkpoint_identity.py
        (ck4 / "optimizer.pt").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="traitforge.train"):
        run_training(Run.of(store, spec), spec.training, ["sft"])
    assert "checkpoint-4 is incomplete" in caplog.text
    counts = store.manifest["stages"][stage_name("sft")]["counts"]
    assert counts["resumed_from"] == "checkpoint-2" and counts["steps"] == 6
    clean_store, wb = clean
    wa = _weights(tmp_path / "a" / "run" / "checkpoints" / "sft")
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-5  # as an uninterrupted run ends
    assert counts["train_loss"] == pytest.approx(
        clean_store.manifest["stages"][stage_name("sft")]["counts"]["train_loss"], rel=1e-4)


def test_train_loss_after_a_resume_covers_every_step(tmp_path):
    store, spec = make_tiny_run(tmp_path / "a", TINY)
    with pytest.raises(Crash):
        run_training(Run.of(store, spec), spec.training, ["sft"], callbacks=[_crash_after_save(4)])
    run_training(Run.of(store, spec), spec.training, ["sft"])
    counts = store.manifest["stages"][stage_name("sft")]["counts"]
    assert counts["resumed_from"] == "checkpoint-4"
    step_losses = [r["loss"] for r in read_metrics(tmp_path / "a" / "run" / "train" / "sft" / "metrics.jsonl")
                   if "loss" in r]
    assert len(step_losses) == 6  # logged every step: train_loss is their mean
    assert counts["train_loss"] == pytest.approx(sum(step_losses) / 6, rel=1e-5)
    summary = [r for r in read_metrics(tmp_path / "a" / "run" / "train" / "sft" / "metrics.jsonl") if r.get("summary")]
    assert summary[-1]["train_loss"] == pytest.approx(counts["train_loss"], rel=1e-6)
    assert counts["train_loss"] != pytest.approx(sum(step_losses[4:]) / 2, rel=1e-3)  # not the resumed steps only


def test_a_checkpoint_whose_weights_would_not_load_is_trained_again(tmp_path, caplog):
    from safetensors.torch import load_file, save_file

    from traitforge.llm.identity import checkpoint_identity, weights_problem

    store, spec = make_tiny_run(tmp_path / "a", {"sft": {"max_steps": 2}})
    run_training(Run.of(store, spec), spec.training, ["sft"])
    ck = tmp_path / "a" / "run" / "checkpoints" / "sft"
    trained = json.loads((ck / "identity.json").read_text())["identity"]
    assert store.manifest["stages"][stage_name("sft")]["counts"]["identity"] == trained
    weights = ck / "model.safetensors"
    for damage in ("delete", "truncate", "replace"):
        if damage == "delete":
            weights.unlink()
        elif damage == "truncate":
            weights.write_bytes(weights.read_bytes()[:1000])
        else:  # other weights under the same name (a copy of another checkpoint, an edit)
            w = load_file(str(weights))
            save_file({k: v + 1 for k, v in w.items()}, str(weights), metadata={"format": "pt"})
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="traitforge.train"):
            run_training(Run.of(store, spec), spec.training, ["sft"])
        assert "marked trained, but" in caplog.text and "training it again" in caplog.text, damage
        assert weights_problem(ck) is None and checkpoint_identity(ck) == trained  # the same weights, trained again
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="traitforge.train"):
        run_training(Run.of(store, spec), spec.training, ["sft"])
    assert "done already, skipping" in caplog.text and "training it again" not in caplog.text
