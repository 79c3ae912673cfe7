"""The embedded model's one-time conversion, when two runs start it at once on a new machine.

Found when two tiny runs were started together on a fresh box: both wrote into one fixed
`smollm2-135m.tmp` folder and one died in save_pretrained ("No such file or directory").
"""

import os
import subprocess
import sys
from pathlib import Path

_CONVERT = "from traitforge.llm.embedded import embedded_checkpoint; print(embedded_checkpoint())"


def test_two_processes_converting_at_once_both_get_a_whole_checkpoint(tmp_path):
    env = {**os.environ, "TRAITFORGE_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    procs = [subprocess.Popen([sys.executable, "-c", _CONVERT], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    results = [p.communicate(timeout=600) + (p.returncode,) for p in procs]
    for out, err, rc in results:
        assert rc == 0, err[-2000:]
        assert Path(out.strip()) == tmp_path / "models" / "smollm2-135m"
    target = tmp_path / "models" / "smollm2-135m"
    assert (target / "config.json").is_file() and (target / "model.safetensors").is_file()
    # Neither process leaves its private folder behind.
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["smollm2-135m"]
