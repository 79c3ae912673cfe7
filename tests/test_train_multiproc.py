"""Two CPU processes (gloo) under `accelerate launch` train one checkpoint together.

accelerate's `--cpu` / MULTI_CPU configs start ONE process (its simple launcher; several need an MPI
hostfile), so examples/accelerate/multi_cpu.yaml uses the torchrun launcher, which on a machine
without CUDA gives CPU processes over gloo. See the comments in that file.
"""

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from _train_fixtures import make_run
from traitforge.train.run import stage_name

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "examples" / "accelerate" / "multi_cpu.yaml"


def _free_port() -> int:
    # A fixed port would collide with another launch (a CI run) on the same machine.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_accelerate_launch_two_cpu_processes_make_one_checkpoint(tmp_path):
    from transformers import AutoModelForCausalLM

    run = tmp_path / "run"
    store, spec = make_run(run, {"sft": {"max_steps": 2, "batch_size": 2}, "save_steps": 100})
    store.manifest["config"] = json.loads(spec.model_dump_json())
    store.save()

    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "TOKENIZERS_PARALLELISM": "false"}
    cmd = ["accelerate", "launch", "--config_file", str(CONFIG), "--main_process_port", str(_free_port()),
           "-m", "traitforge.train.launch", str(run), "--stage", "sft"]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]

    # Both processes trained: the Trainer's world size is recorded with the stage's counts.
    info = json.loads((run / "manifest.json").read_text())["stages"][stage_name("sft")]
    assert info["status"] == "done"
    assert info["counts"]["world_size"] == 2 and info["counts"]["steps"] == 2

    # Only the main process wrote: one checkpoint, printed once, no leftover temp folder.
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["sft"]
    assert proc.stdout.count("sft\t") == 1
    model = AutoModelForCausalLM.from_pretrained(str(run / "checkpoints" / "sft"))
    assert model.num_parameters() > 100_000_000
