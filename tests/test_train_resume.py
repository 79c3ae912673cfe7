import pytest

from _train_fixtures import one_torch_thread  # noqa: F401  (fixture)
from _train_fixtures import losses, make_run, weight_changes
from traitforge.train import run_training
from traitforge.pipeline import Run
from traitforge.train.run import stage_name

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


class Crash(Exception):
    pass


def _crash_after_first_save():
    from transformers import TrainerCallback

    class CrashAfterSave(TrainerCallback):
        def on_save(self, args, state, control, **kw):
            if state.global_step == 2:
                raise Crash("simulated crash after checkpoint-2")

    return CrashAfterSave()


def _weights(ckpt):
    from safetensors.torch import load_file

    return load_file(str(ckpt / "model.safetensors"))


def test_interrupted_training_resumes_and_matches_uninterrupted(tmp_path):
    training = {"save_steps": 2, "midtrain": {"max_steps": 4, "batch_size": 2}}
    store, spec = make_run(tmp_path / "a", training)

    with pytest.raises(Crash):
        run_training(Run.of(store, spec), spec.training, ["midtrain"], callbacks=[_crash_after_first_save()])
    assert store.manifest["stages"][stage_name("midtrain")]["status"] == "failed"
    assert (tmp_path / "a" / "train" / "midtrain" / "trainer" / "checkpoint-2").is_dir()
    assert not (tmp_path / "a" / "checkpoints" / "midtrain").exists()

    run_training(Run.of(store, spec), spec.training, ["midtrain"])
    info = store.manifest["stages"][stage_name("midtrain")]
    assert info["status"] == "done"
    assert info["counts"]["resumed_from"] == "checkpoint-2" and info["counts"]["steps"] == 4
    steps = [r["step"] for r in __import__("traitforge.train.common", fromlist=["x"]).read_metrics(
        tmp_path / "a" / "train" / "midtrain" / "metrics.jsonl") if "loss" in r]
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
