"""Training's per-step metric lines ({'loss': ...}, which the Trainer prints) go to the run's log,
RUN/run.log, and metrics.jsonl, not to the user's screen."""

import pytest

from _train_fixtures import one_torch_thread  # noqa: F401  (fixture)
from _train_fixtures import make_tiny_run
from traitforge.logs import LOG_FILE, log_to_run
from traitforge.runcontext import Run
from traitforge.train import run_training
from traitforge.train.common import read_metrics

pytestmark = [pytest.mark.usefixtures("one_torch_thread")]


def test_metric_dicts_go_to_the_run_log_not_the_screen(tmp_path, capfd):
    store, spec = make_tiny_run(tmp_path, {"logging_steps": 1, "sft": {"max_steps": 2}})
    log_to_run(store.root)
    run_training(Run.of(store, spec), spec.training, ["sft"])
    out, err = capfd.readouterr()
    steps = [r for r in read_metrics(store.root / "train" / "sft" / "metrics.jsonl") if "loss" in r]
    assert len(steps) == 2  # two logging steps happened
    assert "'loss'" not in out + err and "'train_runtime'" not in out + err
    logged = (store.root / LOG_FILE).read_text(encoding="utf-8")
    assert logged.count("sft step ") >= 3 and "'loss': " in logged and "'train_runtime': " in logged
