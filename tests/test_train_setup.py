"""What training decides before it trains: which checkpoints (and the ones they start from), which
of them evaluation compares, and where metrics are reported. No model is loaded."""

import importlib.machinery
import logging
import sys
import types

import pytest

from traitforge.config import RunSpec
from traitforge.errors import InputError
from traitforge.pipeline import checkpoints_for_eval, open_run
from traitforge.train import common
from traitforge.train.run import plan, requested


def _spec(**training) -> RunSpec:
    return RunSpec.model_validate({"traits": "t.md", "training": training})


# --- which checkpoints --------------------------------------------------------------------


def test_default_is_the_four_checkpoints_to_compare_and_the_control_arm():
    spec = _spec()
    assert spec.training.checkpoints == ["base", "midtrain", "sft", "midtrain_sft", "control"]
    # base is the untouched model, never trained; midtrain is built before the SFT that starts from it.
    assert plan(requested(spec.training)) == ["midtrain", "sft", "midtrain_sft", "control"]


def test_a_subset_trains_only_it_and_what_it_starts_from():
    assert plan(requested(_spec(checkpoints=["base", "sft"]).training)) == ["sft"]
    # Asking only for midtrain+SFT trains midtrain first, as its starting point.
    assert plan(requested(_spec(checkpoints=["midtrain_sft"]).training)) == ["midtrain", "midtrain_sft"]
    assert plan(["midtrain_sft_dpo", "sft"]) == ["midtrain", "midtrain_sft", "midtrain_sft_dpo", "sft"]
    # --stage overrides the spec's list.
    assert requested(_spec(checkpoints=["base", "midtrain_sft"]).training, ["sft"]) == ["sft"]
    with pytest.raises(InputError, match="unknown checkpoint 'rlhf'"):
        plan(["rlhf"])


@pytest.mark.parametrize("chosen, expected", [
    (None, ["base", "midtrain", "sft"]),  # midtrain_sft has no finished checkpoint
    (["base", "sft"], ["base", "sft"]),  # midtrain exists on disk but was not asked for
])
def test_evaluation_compares_the_chosen_checkpoints_that_exist(tmp_path, chosen, expected):
    (tmp_path / "t.md").write_text("- **Honest**: Vega says plainly when it does not know.\n")
    training = "" if chosen is None else f"training: {{checkpoints: [{', '.join(chosen)}]}}\n"
    (tmp_path / "spec.yaml").write_text(f"traits: t.md\noutput_dir: run\n{training}")
    run = open_run(tmp_path / "spec.yaml")
    for name in ("midtrain", "sft"):
        (run.store.root / "checkpoints" / name).mkdir(parents=True)
        (run.store.root / "checkpoints" / name / "config.json").write_text("{}")
    (run.store.root / "checkpoints" / "midtrain_sft").mkdir()  # a folder without config.json is no checkpoint
    got = checkpoints_for_eval(run)
    assert list(got) == expected
    assert got["base"] == "smollm2-135m"  # the base model as the spec names it
    assert got["sft"] == str(tmp_path / "run" / "checkpoints" / "sft")


# --- where metrics go ---------------------------------------------------------------------


@pytest.fixture
def installed(monkeypatch):
    """installed(*names): exactly these logger packages import; the others do not."""
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)

    def set_installed(*names):
        for mod in ("tensorboard", "tensorboardX", "wandb", "trackio"):
            if mod in names:
                m = types.ModuleType(mod)
                m.__spec__ = importlib.machinery.ModuleSpec(mod, None)
                monkeypatch.setitem(sys.modules, mod, m)
            else:
                monkeypatch.setitem(sys.modules, mod, None)  # find_spec() -> None: not importable

    return set_installed


def test_report_to_defaults_to_auto():
    assert _spec().training.report_to == "auto"
    assert _spec(report_to=[]).training.report_to == []


def test_auto_reports_to_installed_loggers_and_wandb_only_when_configured(installed, monkeypatch):
    installed()
    assert common.report_targets("auto") == ["none"]
    installed("tensorboardX", "trackio", "wandb")
    # wandb installed but not configured would stop the run to ask for a login: left out.
    assert common.report_targets("auto") == ["tensorboard", "trackio"]
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert common.report_targets("auto") == ["tensorboard", "trackio", "wandb"]
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("WANDB_API_KEY", "k")
    installed("wandb")
    assert common.report_targets("auto") == ["wandb"]


def test_an_explicit_list_wins_and_empty_means_none(installed, caplog):
    installed("tensorboard", "trackio", "wandb")
    assert common.report_targets(["wandb"]) == ["wandb"]  # named, so used even without WANDB_* set
    assert common.report_targets([]) == ["none"]
    installed("trackio")
    with caplog.at_level(logging.WARNING, logger="traitforge.train"):
        assert common.report_targets(["tensorboard", "trackio"]) == ["trackio"]
    assert "report_to tensorboard: package not installed" in caplog.text
