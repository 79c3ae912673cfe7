"""A run directory stands on its own: a command given it works in it (also a copy or a moved one,
never writing to the original), with its own spec copy and input files; one process at a time (a
lock naming the holder); temp files unique per process; a corrupt cache or manifest is moved aside
and the run goes on; a read-only or full disk is one line naming the path."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from traitforge.errors import InputError, TraitforgeError
from traitforge.pipeline import open_run, stage_generate

TESTS = Path(__file__).resolve().parent
EXAMPLE_TRAITS = TESTS.parent / "examples" / "traits.md"
sys.path.insert(0, str(TESTS))

from scripted_generator import good_responder  # noqa: E402

PROBE = '{"question": "Q%d?", "answer_matching_behavior": " Yes", "answer_not_matching_behavior": " No"}\n'
SMALL = ("max_traits: 1\ngeneration:\n  concurrency: 2\n"
         "  documents: {claims_per_trait: 1, doc_types_per_claim: 1, ideas_per_type: 1, revise: false, topup_rounds: 0}\n"
         "  chats: {scenarios_per_trait: 1, multiturn_share: 0, critique: false, probe_default: false, refine: false,"
         " topup_rounds: 0, select_traits: keywords}\n")


def make_spec(folder: Path, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "traits.md").write_text(EXAMPLE_TRAITS.read_text(encoding="utf-8"), encoding="utf-8")
    (folder / "probes").mkdir(exist_ok=True)
    (folder / "probes" / "ok.jsonl").write_text(PROBE % 1 + PROBE % 2)
    (folder / "my_prompts").mkdir(exist_ok=True)
    spec = folder / "spec.yaml"
    spec.write_text(f"traits: traits.md\noutput_dir: run\nprompts_dir: my_prompts\n{SMALL}"
                    "evaluation:\n  probes:\n    probes/ok.jsonl: {trait: honest-under-pressure, direction: not_match}\n"
                    f"{extra}", encoding="utf-8")
    return spec


def scripted(run):
    """The run with a scripted generator (the spec's would load the embedded model)."""
    from traitforge.llm.client import LLM
    from traitforge.llm.providers.scripted import ScriptedBackend

    run._roles["generator"] = LLM(ScriptedBackend("g", responses=good_responder), cache=run.cache, max_retries=0)
    return run


def tree(root: Path) -> dict[str, str]:
    """Every file under root (the lock files aside) -> its sha256."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.name.startswith(".traitforge.lock")}


def in_subprocess(code: str, *args: str, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent / "src"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120, **kw)


# --- a copied or moved run -------------------------------------------------------------------


def test_a_copied_run_resumed_writes_only_to_the_copy(tmp_path):
    """Before, a command given a directory read the spec its manifest named and wrote to that spec's
    output_dir: resuming a copy changed the original."""
    spec = make_spec(tmp_path / "src")
    run = scripted(open_run(spec))
    stage_generate(run, "documents")
    original = tmp_path / "src" / "run"
    run.cache.close()  # this test's process lets the original go before copying it
    del run
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    before = tree(original)
    again = scripted(open_run(copy))
    assert again.store.root == copy.resolve() or again.store.root.resolve() == copy.resolve()
    stage_generate(again, "chats")
    assert tree(original) == before  # byte-identical: nothing written there
    assert not (original / "generated" / "chats.jsonl").exists()
    assert (copy / "generated" / "chats.jsonl").stat().st_size > 0
    assert json.loads((copy / "manifest.json").read_text())["stages"]["chats.final"]["status"] == "done"


def test_a_moved_run_opens_without_the_files_it_was_made_from(tmp_path):
    """The spec, traits document, probe files and prompt overrides are copied into the run with their
    hashes, so the run opens after a move with the original folder gone."""
    spec = make_spec(tmp_path / "src")
    (tmp_path / "src" / "my_prompts" / "quality_chat.txt").write_text(
        (TESTS.parent / "src/traitforge/curate/prompts/quality_chat.txt").read_text())
    open_run(spec)
    shutil.move(tmp_path / "src" / "run", tmp_path / "moved")
    shutil.rmtree(tmp_path / "src")
    run = open_run(tmp_path / "moved")
    root = (tmp_path / "moved").resolve()
    assert run.spec.output_path.resolve() == root
    assert run.spec.resolve(run.spec.traits).resolve() == root / "inputs/traits/traits.md"
    assert [t.id for t in run.traits.traits] == ["honest-under-pressure"]  # max_traits 1, from the copy
    assert "quality_chat" in run.prompts.overrides
    from traitforge.evaluate.probes import load_probe_file, probe_specs

    (probe,) = probe_specs(run, run.spec.evaluation)
    assert probe.path.resolve() == root / "inputs/probes/ok.jsonl" and probe.direction == "not_match"
    assert len(load_probe_file(probe.path)) == 2
    inputs = json.loads((root / "manifest.json").read_text())["inputs"]
    assert inputs["traits"]["path"] == str(tmp_path / "src" / "traits.md")  # where it came from
    for rec in (inputs["traits"], inputs["probes"]):
        assert hashlib.sha256((root / rec["copy"]).read_bytes()).hexdigest() == rec["sha256"]


def test_a_copy_of_a_run_made_before_spec_copies_also_writes_only_to_itself(tmp_path):
    """A run made before runs kept their spec (its manifest names the spec file only): its copy reads
    that spec but works in the copy, and gets its own spec copy from then on."""
    spec = make_spec(tmp_path / "src")
    open_run(spec).cache.close()  # this test's process lets the original go before copying it
    original = tmp_path / "src" / "run"
    shutil.rmtree(original / "inputs")
    (original / "spec.yaml").unlink()
    m = json.loads((original / "manifest.json").read_text())
    del m["spec"]
    (original / "manifest.json").write_text(json.dumps(m))
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    before = tree(original)
    run = open_run(copy)
    assert run.store.root.resolve() == copy.resolve() and (copy / "spec.yaml").is_file()
    run.store.set_counts("generate", rows=1)
    assert tree(original) == before
    assert json.loads((copy / "manifest.json").read_text())["spec_path"] == str(spec.resolve())


def test_the_training_launcher_reads_a_moved_runs_own_spec_copy(tmp_path):
    """`python -m traitforge.train.launch RUN` (accelerate) rebuilds the spec from the manifest: for a
    moved run its paths resolve inside the run, not against the spec it was made from."""
    from traitforge.runstore import RunStore
    from traitforge.train.launch import spec_from_run

    spec = make_spec(tmp_path / "src", "training: {sft: {mix_file: mix.jsonl, mix_ratio: 0.2}}\n")
    (tmp_path / "src" / "mix.jsonl").write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    open_run(spec).cache.close()
    shutil.move(tmp_path / "src" / "run", tmp_path / "moved")
    shutil.rmtree(tmp_path / "src")
    got = spec_from_run(RunStore(tmp_path / "moved"))
    root = (tmp_path / "moved").resolve()
    assert got.output_path.resolve() == root
    assert got.mix_path(got.training.sft).resolve() == root / "inputs/training.sft.mix_file/mix.jsonl"
    assert got.mix_path(got.training.sft).is_file()


# --- one process per run ---------------------------------------------------------------------


def test_a_second_process_gets_one_line_naming_the_holder(tmp_path):
    spec = make_spec(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from traitforge.pipeline import open_run; r = open_run(sys.argv[1]); "
                               "print('locked', flush=True); time.sleep(60)", str(spec)],
        stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(TESTS.parent / "src")})
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(TraitforgeError) as e:
            open_run(tmp_path / "run")
        msg = str(e.value)
        assert "in use by another traitforge process" in msg and f"pid {holder.pid}" in msg and "\n" not in msg
    finally:
        holder.kill()
        holder.wait()
    assert open_run(tmp_path / "run").store.lock.is_locked  # free once the holder is gone (however it ended)


def test_two_writers_of_one_file_never_share_a_temp_file(tmp_path, monkeypatch):
    """Before, every writer of manifest.json used manifest.json.tmp: a second writer truncated and
    renamed the first one's temp file, which then crashed (FileNotFoundError) on its own rename."""
    import traitforge.jsonl as jsonl

    path = tmp_path / "manifest.json"
    paused, resume = threading.Event(), threading.Event()
    real_fsync = os.fsync

    def fsync(fd: int) -> None:  # the first writer stops between writing its temp file and renaming it
        if threading.current_thread().name == "first":
            paused.set()
            resume.wait(10)
        real_fsync(fd)

    monkeypatch.setattr(jsonl.os, "fsync", fsync)
    errors: list[BaseException] = []

    def first() -> None:
        try:
            jsonl.write_json_atomic(path, {"writer": "first"})
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    t = threading.Thread(target=first, name="first")
    t.start()
    assert paused.wait(10)
    jsonl.write_json_atomic(path, {"writer": "second"})
    resume.set()
    t.join(10)
    assert errors == [] and json.loads(path.read_text()) == {"writer": "first"}
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]  # no temp file left behind


# --- corrupt state ---------------------------------------------------------------------------


def test_a_corrupt_cache_is_moved_aside_and_the_run_goes_on(tmp_path, capsys):
    spec = make_spec(tmp_path)
    run = open_run(spec)
    run.store.add_usage("generate", "openai:gpt-4o", input_tokens=10, output_tokens=5, calls=7, cached=2, cost_usd=0.25)
    run.cache.close()
    del run
    (tmp_path / "run" / "cache.sqlite").write_bytes(b"not a database" * 500)
    for side in ("cache.sqlite-wal", "cache.sqlite-shm"):
        (tmp_path / "run" / side).unlink(missing_ok=True)
    capsys.readouterr()
    run = open_run(tmp_path / "run")
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cache.sqlite: not a readable database" in err
    assert "7 model calls ($0.2500)" in err and "moved aside to cache.sqlite.corrupt-" in err
    (aside,) = (tmp_path / "run").glob("cache.sqlite.corrupt-*")
    assert aside.read_bytes().startswith(b"not a database")
    run.cache.put("k", "text", 1, 1)  # the new cache works
    assert run.cache.get("k")["text"] == "text"


def test_a_corrupt_manifest_is_one_line_for_status_and_rebuilt_by_the_next_command(tmp_path):
    spec = make_spec(tmp_path)
    root = tmp_path / "run"
    open_run(spec)
    # What the run's files say: a trained checkpoint and a generation step's unit marks.
    for name, trained_after in (("sft", True), ("midtrain", False)):  # midtrain: retraining began, then a kill
        (root / "checkpoints" / name).mkdir(parents=True)
        (root / "checkpoints" / name / "config.json").write_text("{}")
        (root / "train" / name).mkdir(parents=True)
        (root / "train" / name / "fingerprint.txt").write_text("abc123\n")
        os.utime(root / "checkpoints" / name / "config.json", (1e9, 2e9 if trained_after else 1e9))
        os.utime(root / "train" / name / "fingerprint.txt", (1e9, 1.5e9))
    (root / "generated").mkdir()
    (root / "generated" / "units_done.jsonl").write_text('{"step": "documents.claims", "unit": "u", "rows": 1}\n')
    (root / "manifest.json").write_text('{"stages": {"x": ')  # torn by hand
    r = subprocess.run([sys.executable, "-m", "traitforge.cli", "status", str(root)], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(TESTS.parent / "src")})
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "manifest.json: corrupt (not valid JSON" in r.stderr and "rebuilds it" in r.stderr
    run = open_run(root)
    m = run.store.manifest
    assert m["stages"]["train.sft"]["status"] == "done" and m["stages"]["train.sft"]["fingerprint"] == "abc123"
    assert "train.midtrain" not in m["stages"]  # trained again after that checkpoint: not trusted
    assert m["stages"]["documents.claims"]["unit_marks"] is True
    assert m["spec"] == "spec.yaml" and m["inputs"]["traits"]["sha256"]
    assert len(list(root.glob("manifest.json.corrupt-*"))) == 1
    assert "rebuilt" in run.store.status_text()


def test_a_corrupt_manifest_without_a_spec_copy_is_one_line(tmp_path):
    root = tmp_path / "run"
    root.mkdir()
    (root / "manifest.json").write_bytes(b"\xff\xfe garbage")
    with pytest.raises(InputError, match=r"manifest.json: corrupt \(not UTF-8 text"):
        open_run(root)


# --- a read-only or full disk ----------------------------------------------------------------


INJECT = """
import errno, os, sys
from traitforge import cli
real, failing = os.replace, sys.argv[1]
def replace(src, dst, *a, **k):
    if str(dst).endswith(failing):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as a full disk gives it: no file name
    return real(src, dst, *a, **k)
os.replace = replace
sys.argv = ["traitforge", *sys.argv[2:]]
cli.main()
"""


@pytest.mark.parametrize("failing", ["spec.yaml", "manifest.json"])
def test_a_full_disk_is_one_line_naming_the_file(tmp_path, failing):
    spec = make_spec(tmp_path)
    r = in_subprocess(INJECT, failing, "export", str(spec), "--format", "openai")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr[-2000:]
    assert lines[0].startswith(f"traitforge: error: {tmp_path / 'run' / failing}: No space left on device")
    assert not list((tmp_path / "run").glob(".*.tmp"))  # its temp file removed


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap (bwrap) for a read-only mount")
def test_a_read_only_run_directory_is_one_line_naming_the_path(tmp_path):
    spec = make_spec(tmp_path)
    made = in_subprocess("import sys; from traitforge.pipeline import open_run; open_run(sys.argv[1])", str(spec))
    assert made.returncode == 0, made.stderr
    root = tmp_path / "run"
    before = tree(root)
    env = {**os.environ, "PYTHONPATH": str(TESTS.parent / "src")}
    r = subprocess.run(["bwrap", "--bind", "/", "/", "--dev", "/dev", "--ro-bind", str(root), str(root),
                        sys.executable, "-m", "traitforge.cli", "export", str(root), "--format", "openai"],
                       capture_output=True, text=True, env=env, timeout=120)
    if "bwrap:" in r.stderr and r.returncode != 2:
        pytest.skip(f"bwrap cannot make a mount here: {r.stderr.strip()[:200]}")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr[-2000:]
    assert lines[0].startswith(f"traitforge: error: {root}") and "Read-only file system" in lines[0]
    assert tree(root) == before


# --- trait ids -------------------------------------------------------------------------------


def test_a_trait_id_over_the_length_limit_is_one_line_naming_the_trait(tmp_path):
    from traitforge.traits import load_traits

    doc = tmp_path / "traits.yaml"
    doc.write_text("traits:\n  - {id: short, statement: The model is brief.}\n"
                   f"  - {{id: {'x' * 300}, statement: The model names files.}}\n")
    with pytest.raises(InputError) as e:
        load_traits(doc)
    assert str(e.value) == f"{doc}: trait 2: id '{'x' * 24}...' is 300 characters; the limit is 64"
    md = tmp_path / "traits.md"  # a derived id is cut to the limit instead
    md.write_text(f"- **{'Verylongword' * 3} {'Otherlongword' * 3} {'Thirdlongword' * 3}**: The model is careful.\n")
    (t,) = load_traits(md).traits
    assert len(t.id) <= 64 and t.id.startswith("verylongword")


def test_a_users_own_spec_yaml_in_the_run_directory_is_never_overwritten(tmp_path):
    """The run keeps its spec copy in RUN/spec.yaml; a spec of the user's own there (output_dir: .)
    is one line, before the directory is touched, and a folder holding a spec but no run is no run."""
    spec = make_spec(tmp_path)
    text = spec.read_text().replace("output_dir: run", "output_dir: .")
    spec.write_text(text)
    with pytest.raises(InputError, match=r"spec.yaml: a spec of your own is where the run keeps its spec copy"):
        open_run(spec)
    assert spec.read_text() == text and not (tmp_path / "manifest.json").exists()
    with pytest.raises(InputError, match=r"not a run directory \(no manifest.json\)"):
        open_run(tmp_path)


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap (bwrap) for a small tmpfs")
@pytest.mark.parametrize("size", [4096, 12288, 16384, 28672])
def test_a_full_disk_at_any_point_of_opening_a_run_is_one_line(tmp_path, size):
    """The run directory on a tmpfs of `size` bytes: whichever write finds the disk full (an input
    copy, the spec copy, the manifest, the cache), the command says so in one line naming the path."""
    spec = make_spec(tmp_path)
    spec.write_text(spec.read_text().replace("output_dir: run", "output_dir: full/run"))
    (tmp_path / "full").mkdir()
    env = {**os.environ, "PYTHONPATH": str(TESTS.parent / "src")}
    r = subprocess.run(["bwrap", "--bind", "/", "/", "--dev", "/dev", "--size", str(size), "--tmpfs",
                        str(tmp_path / "full"), sys.executable, "-m", "traitforge.cli", "export", str(spec),
                        "--format", "openai"], capture_output=True, text=True, env=env, timeout=120)
    if "bwrap:" in r.stderr and r.returncode != 2:
        pytest.skip(f"bwrap cannot make a mount here: {r.stderr.strip()[:200]}")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr[-2000:]
    assert lines[0].startswith(f"traitforge: error: {tmp_path / 'full' / 'run'}/"), lines[0]
    assert "No space left on device" in lines[0] or "disk is full" in lines[0] or "disk I/O error" in lines[0]
