"""Run store and JSONL: appends survive a crash mid-line; the manifest tracks stages and usage."""

import json

import pytest

from traitforge.errors import InputError
from traitforge.jsonl import append_jsonl, read_jsonl, write_jsonl
from traitforge.runstore import RunStore
from traitforge.types import Claim


def test_torn_last_line_is_ignored_then_cut_on_append(tmp_path):
    p = tmp_path / "claims.jsonl"
    append_jsonl(p, [Claim(id="a", trait_id="t", text="one"), Claim(id="b", trait_id="t", text="two")])
    with open(p, "a") as f:
        f.write('{"id": "c", "trait_id": "t", "te')  # a crash in the middle of a write
    assert [c.id for c in read_jsonl(p, Claim)] == ["a", "b"]
    append_jsonl(p, [Claim(id="d", trait_id="t", text="four")])
    assert [c.id for c in read_jsonl(p, Claim)] == ["a", "b", "d"]
    assert p.read_text().count("\n") == 3


def test_corrupt_middle_line_names_file_and_line(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"id": "a", "trait_id": "t", "text": "x"}\nnot json\n{"id": "b", "trait_id": "t", "text": "y"}\n')
    with pytest.raises(InputError, match=r"x.jsonl: line 2: not valid JSON"):
        read_jsonl(p, Claim)


def test_schema_drift_names_row_and_field(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"id": "a", "trait_id": "t", "text": "x", "extra": 1}\n')
    with pytest.raises(InputError, match=r"row 1: field 'extra'"):
        read_jsonl(p, Claim)


def test_write_jsonl_replaces_atomically(tmp_path):
    p = tmp_path / "x.jsonl"
    write_jsonl(p, [{"a": 1}])
    write_jsonl(p, [{"a": 2}, {"a": 3}])
    assert [json.loads(l)["a"] for l in p.read_text().splitlines()] == [2, 3]
    assert not (tmp_path / "x.jsonl.tmp").exists()


def test_stage_status_counts_usage_and_failure(tmp_path):
    store = RunStore(tmp_path / "run")
    with store.stage("claims", fingerprint="f1"):
        store.set_counts("claims", rows=3)
    store.add_usage("claims", "openai:gpt-4o", input_tokens=100, output_tokens=50, calls=2, cached=1,
                    cost_usd=0.01)
    with pytest.raises(RuntimeError):
        with store.stage("documents"):
            raise RuntimeError("boom")
    reloaded = RunStore(tmp_path / "run")
    assert reloaded.is_done("claims", "f1") and not reloaded.is_done("claims", "f2")
    assert reloaded.manifest["stages"]["documents"]["status"] == "failed"
    text = reloaded.status_text()
    assert "claims" in text and "rows=3" in text and "RuntimeError: boom" in text and "$0.0100" in text


def test_stage_time_adds_up_over_resumes_and_resets_on_new_work(tmp_path):
    store = RunStore(tmp_path / "run")
    store.manifest["stages"]["gen"] = {"status": "failed", "fingerprint": "f", "elapsed_s": 100.0}
    with store.stage("gen", fingerprint="f"):
        pass
    assert store.manifest["stages"]["gen"]["elapsed_s"] >= 100.0  # the resume adds to the first try
    with store.stage("gen", fingerprint="g"):
        pass
    assert store.manifest["stages"]["gen"]["elapsed_s"] < 100.0  # different work: its own time


def test_a_killed_stage_shows_interrupted_not_running(tmp_path):
    """A stage records the PID (and its start time) and host running it; `status` checks the process:
    a stage whose process was killed shows "interrupted" (before: "running" forever)."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    src = str(Path(__file__).resolve().parents[1] / "src")
    code = ("import os, signal, sys; from traitforge.runstore import RunStore; s = RunStore(sys.argv[1]); "
            "cm = s.stage('generate', 'f'); cm.__enter__(); os.kill(os.getpid(), signal.SIGKILL)")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "run")], env={**os.environ, "PYTHONPATH": src})
    assert r.returncode == -signal.SIGKILL
    store = RunStore(tmp_path / "run")
    info = store.manifest["stages"]["generate"]
    assert info["status"] == "running" and info["pid"] and info["host"] and info["heartbeat"]
    assert store.shown_status(info) == "interrupted"
    text = store.status_text()
    assert "interrupted" in text and "run again to resume" in text
    with store.stage("live", "f"):  # this process is alive: running
        assert store.shown_status(store.manifest["stages"]["live"]) == "running"
    assert "pid" not in store.manifest["stages"]["live"]  # done: who ran it is no longer kept


def test_a_failed_stage_error_is_saved_without_api_keys(tmp_path, monkeypatch):
    key = "sk-test-0123456789abcdefghij"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    store = RunStore(tmp_path / "run")
    with pytest.raises(RuntimeError):
        with store.stage("generate"):
            raise RuntimeError(f"401 Incorrect API key provided: {key}")
    saved = (tmp_path / "run" / "manifest.json").read_text()
    assert key not in saved and "Incorrect API key provided" in saved
    assert key not in store.status_text()
