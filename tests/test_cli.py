"""The command line: init writes a valid example, errors are one line with exit code 2."""

import subprocess
import sys

from traitforge.config import load_spec
from traitforge.runstore import RunStore
from traitforge.traits import load_traits


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "traitforge.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_init_writes_a_valid_spec_and_traits(tmp_path):
    r = cli("init", str(tmp_path))
    assert r.returncode == 0, r.stderr
    spec = load_spec(tmp_path / "spec.yaml")
    assert load_traits(spec.resolve(spec.traits)).traits
    again = cli("init", str(tmp_path))
    assert again.returncode == 2 and "already exists" in again.stderr


def test_bad_traits_file_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "t.md"
    bad.write_text("no bullets here\n")
    r = cli("traits", str(bad))
    assert r.returncode == 2
    assert r.stderr.strip() == f"traitforge: error: {bad}: no traits found (expected a bulleted list: '- The model ...')"


def test_bad_spec_key_names_it(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("traits: t.md\ntraning: {}\n")
    r = cli("run", str(spec))
    assert r.returncode == 2 and r.stderr.strip().endswith("unknown key 'traning'")
    assert len(r.stderr.strip().splitlines()) == 1


def test_status_shows_stages(tmp_path):
    store = RunStore(tmp_path / "run")
    with store.stage("claims"):
        store.set_counts("claims", rows=4)
    r = cli("status", str(tmp_path / "run"))
    assert r.returncode == 0 and "claims" in r.stdout and "done" in r.stdout and "rows=4" in r.stdout
    missing = cli("status", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "not a run directory" in missing.stderr


def test_quiet_screen_silences_the_datasets_progress_bars():
    """TRL's tokenizing passes (datasets.map) drew progress bars on the user's screen during training."""
    import subprocess
    import sys

    code = ("from traitforge.logs import quiet_screen; quiet_screen(); import datasets; "
            "datasets.Dataset.from_dict({'a': list(range(50))}).map(lambda x: x, desc='Tokenizing train dataset')")
    env = {k: v for k, v in __import__("os").environ.items() if k != "HF_DATASETS_DISABLE_PROGRESS_BARS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-500:]
    assert "Tokenizing train dataset" not in out.stderr + out.stdout
