"""Crash anywhere: a generation (documents, chats) plus curation run in a subprocess is killed with
SIGKILL right after its Nth row is written (for a seeded list of N, some kills tearing the row half
way), then resumed, again and again. At the end the run's files hold exactly the rows of an
uninterrupted run (none lost, none twice, no torn line), and no model call was made twice except
one whose answer had not yet been saved when the process died (never one of a finished unit).

The same for training and evaluation (a tiny random-weight model, a scripted judge): killed at the
Nth event of a seeded list, where an event is a training step, a Trainer checkpoint saved, a file
of one being written (a torn kill leaves it half written), the export of the trained checkpoint,
or an evaluation row written; the resumed run's results.json figures are the uninterrupted run's.

The scripted backend (tests/scripted_generator.py) keeps it short; the same file is the child
process: `python tests/test_crash_anywhere.py WORKDIR KILL_AFTER TORN [train-eval]`.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import pytest

TESTS = Path(__file__).resolve().parent
SEED = 19
KILLS = 6  # kill points per test run; each is a restart


# --- the child process ---------------------------------------------------------------------------


def _judge(messages: Sequence[Any], params: Any) -> str:
    """Curation's judge: a score that varies with the row (some fall under the threshold), no patterns."""
    from traitforge.types import stable_hash

    last = messages[-1].content
    if "SCORE" in last:
        return f"REASON: scored by the script\nSCORE: {3 + int(stable_hash(last, 6), 16) % 7}"
    return "None." if "recur" in last else "NO"


def child(work: Path, kill_after: int, torn: bool) -> None:
    sys.path.insert(0, str(TESTS))
    import scripted_generator as sg

    import traitforge.curate.run as curate_run
    import traitforge.jsonl as jsonl
    import traitforge.steps as steps
    from traitforge.curate import run_curation
    from traitforge.pipeline import Run
    from traitforge.generate.chats import run_chats
    from traitforge.generate.documents import run_documents
    from traitforge.llm.cache import LLMCache
    from traitforge.llm.client import LLM
    from traitforge.llm.providers.scripted import ScriptedBackend
    from traitforge.runstore import RunStore
    from traitforge.types import stable_hash

    log = open(work / "calls.log", "a", encoding="utf-8", buffering=1)  # each line reaches the OS at once
    log.write(f"start {os.getpid()}\n")
    written = 0
    real_append = jsonl.append_jsonl

    def append(path: Any, rows: Any) -> int:
        """append_jsonl that dies by SIGKILL once the kill_after-th row is on disk (or half of it)."""
        nonlocal written
        rows = list(rows)
        if kill_after and written + len(rows) >= kill_after:
            k = kill_after - written
            real_append(path, rows[: k - 1] if torn else rows[:k])
            if torn:
                row = rows[k - 1]
                line = json.dumps(row.model_dump(mode="json") if hasattr(row, "model_dump") else row)
                with open(path, "a", encoding="utf-8") as f:
                    f.write(line[: len(line) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
        written += len(rows)
        return real_append(path, rows)

    # Every writer of rows: the step engine (generation steps, curation's per-row verdicts, unit
    # marks and skips), and write_jsonl's temp files.
    jsonl.append_jsonl = steps.append_jsonl = append  # type: ignore[assignment]
    curate_run.load_embedder = lambda: None  # the optional embedder: not what this test is about

    def request(messages: Sequence[Any], params: Any) -> str:
        return stable_hash([[m.to_dict() for m in messages], params.cache_fields()])

    def logged(responder: Any) -> Any:
        def respond(messages: Sequence[Any], params: Any) -> str:
            log.write(f"call {request(messages, params)}\n")
            return responder(messages, params)
        return respond

    real_fetch = LLM._fetch

    async def fetch(self: LLM, msgs: Any, p: Any, indices: list[int]) -> list[str]:
        out = await real_fetch(self, msgs, p, indices)  # returns right after the cache writes
        log.write("".join(f"cached {request(msgs, p)}\n" for _ in indices))
        return out

    LLM._fetch = fetch  # type: ignore[method-assign]
    spec = sg.make_spec(work)
    traits = sg.make_traits(2)
    cache = LLMCache(work / "cache.sqlite")
    generator = LLM(ScriptedBackend("generator", responses=logged(sg.good_responder)), cache=cache, max_retries=0)
    judge = LLM(ScriptedBackend("judge", responses=logged(_judge)), cache=cache, max_retries=0)
    run_documents(Run.of(RunStore(spec.output_path), spec, traits, generator=generator), spec.generation)
    run_chats(Run.of(RunStore(spec.output_path), spec, traits, generator=generator), spec.generation)
    run_curation(Run.of(RunStore(spec.output_path), spec, traits, judge=judge), spec.curation)
    print(json.dumps({"rows_written": written}))


# --- training and evaluation: the child process ------------------------------------------------------

TRAIN = {"save_steps": 2, "sft": {"max_steps": 4, "batch_size": 2}}
EVAL = {"knowledge": False, "contrastive": False, "vectors": False, "behaviour_prompts_per_trait": 2,
        "ood_share": 0.0, "multiturn_conversations_per_trait": 1, "multiturn_turns": 2, "max_tokens": 8,
        "item_max_tokens": 32, "bootstrap": 100, "capability_max_tokens": 64, "capability_window": 32}


def train_eval_child(work: Path, kill_after: int, torn: bool) -> None:
    """Train sft on a tiny base model, then evaluate base and sft; die by SIGKILL at event `kill_after`."""
    sys.path.insert(0, str(TESTS))
    import importlib
    import io

    import torch
    from transformers import TrainerCallback

    import traitforge.jsonl as jsonl
    import traitforge.steps as steps
    import traitforge.train.common as train_common
    from _eval_fixtures import TRAITS, judge_responder
    from _train_fixtures import make_tiny_run
    from traitforge.evaluate.settings import EvaluationSpec
    from traitforge.evaluate import run_evaluation
    from traitforge.llm.cache import LLMCache
    from traitforge.llm.client import LLM
    from traitforge.llm.providers.scripted import ScriptedBackend
    from traitforge.pipeline import Run, checkpoints_for_eval
    from traitforge.train import run_training
    from traitforge.types import stable_hash

    torch.set_num_threads(1)
    store, spec = make_tiny_run(work, TRAIN)  # the curated data: written before any kill point
    log = open(work / "calls.log", "a", encoding="utf-8", buffering=1)
    log.write(f"start {os.getpid()}\n")
    events = {"train": 0, "eval": 0}

    def event(phase: str, half: Any = None) -> None:
        """One kill point; `half()` makes the torn version of the write about to happen."""
        events[phase] += 1
        if kill_after and sum(events.values()) == kill_after:
            if torn and half is not None:
                half()
            log.write(f"kill {phase}\n")
            os.kill(os.getpid(), signal.SIGKILL)

    class Kill(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            event("train")

        def on_save(self, args, state, control, **kw):
            event("train")

    real_save = torch.save

    def save(obj: Any, f: Any, *a: Any, **k: Any) -> Any:
        """torch.save of a Trainer checkpoint's file: a kill before it, or (torn) half of it written."""
        if isinstance(f, (str, Path)):
            def half() -> None:
                buf = io.BytesIO()
                real_save(obj, buf)
                Path(f).write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
            event("train", half)
        return real_save(obj, f, *a, **k)

    torch.save = save  # type: ignore[assignment]
    real_export = train_common.export_checkpoint

    def export(*a: Any, **k: Any) -> Any:
        event("train")
        return real_export(*a, **k)

    train_common.export_checkpoint = export  # type: ignore[assignment]
    real_append = jsonl.append_jsonl

    def append(path: Any, rows: Any) -> int:
        rows = list(rows)
        for i, row in enumerate(rows):
            def half(i: int = i, row: Any = row) -> None:
                real_append(path, rows[:i])
                line = json.dumps(row.model_dump(mode="json") if hasattr(row, "model_dump") else row)
                with open(path, "a", encoding="utf-8") as f:
                    f.write(line[: len(line) // 2])
            if kill_after and sum(events.values()) + 1 == kill_after and not torn:
                real_append(path, rows[:i])  # the rows before this one are on disk
            event("eval", half)
        return real_append(path, rows)

    jsonl.append_jsonl = steps.append_jsonl = append  # type: ignore[assignment]
    for name in ("behaviour", "capability", "items", "knowledge", "patterns", "probes"):  # bound at import
        importlib.import_module(f"traitforge.evaluate.{name}").append_jsonl = append  # type: ignore[attr-defined]

    def logged(messages: Sequence[Any], params: Any) -> str:
        log.write(f"call {stable_hash([[m.to_dict() for m in messages], params.cache_fields()])}\n")
        return judge_responder(messages, params)

    spec = spec.model_copy(update={"evaluation": EvaluationSpec.model_validate(EVAL)})
    judge = LLM(ScriptedBackend("judge", responses=logged), cache=LLMCache(work / "run" / "cache.sqlite"),
                max_retries=0)
    run = Run.of(store, spec, TRAITS, judge=judge, auditor=judge)
    run_training(run, spec.training, ["sft"], callbacks=[Kill()])
    cks = checkpoints_for_eval(run)
    run_evaluation(run, spec.evaluation, {k: v for k, v in cks.items() if k in ("base", "sft")})
    print(json.dumps({"events": events}))


# --- the test ------------------------------------------------------------------------------------


def run_child(work: Path, kill_after: int = 0, torn: bool = False, mode: str = "") -> subprocess.CompletedProcess:
    import traitforge

    src = str(Path(traitforge.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    args = [str(work), str(kill_after), str(int(torn))] + ([mode] if mode else [])
    return subprocess.run([sys.executable, __file__, *args], env=env, capture_output=True, text=True, timeout=300)


def call_log(work: Path) -> list[tuple[Counter, Counter]]:
    """Per process: (calls answered, calls whose answers were saved), by request."""
    out: list[tuple[Counter, Counter]] = []
    for line in (work / "calls.log").read_text().splitlines():
        kind, _, key = line.partition(" ")
        if kind == "start":
            out.append((Counter(), Counter()))
        else:
            out[-1][0 if kind == "call" else 1][key] += 1
    return out


def run_files(work: Path) -> dict[str, list[str]]:
    """Every JSONL file of the run: its rows as canonical JSON (sorted), after checking that each
    line is whole and that no row id appears twice."""
    out = {}
    root = work / "run"
    for f in sorted(root.rglob("*.jsonl")):
        text = f.read_text(encoding="utf-8")
        assert not text or text.endswith("\n"), f"{f}: torn last line"
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]  # raises on a torn line
        ids = [r["id"] for r in rows if "id" in r]
        if f.name != "quality.jsonl":  # verdicts are keyed by (dataset, row_id)
            assert len(ids) == len(set(ids)), f"{f}: duplicate ids {[i for i, n in Counter(ids).items() if n > 1]}"
        out[str(f.relative_to(root))] = sorted(json.dumps(r, sort_keys=True) for r in rows)
    return out


def test_kill_9_after_any_row_then_resume_loses_and_repeats_nothing(tmp_path):
    clean_dir = tmp_path / "clean"
    clean_dir.mkdir()
    done = run_child(clean_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    total = json.loads(done.stdout.strip().splitlines()[-1])["rows_written"]
    [(clean_calls, clean_saved)] = call_log(clean_dir)
    assert total > 20 and clean_calls == clean_saved

    rng = random.Random(SEED)
    points = sorted(rng.sample(range(1, total), KILLS))
    work = tmp_path / "crashy"
    work.mkdir()
    kills, before = 0, 0
    for point in points:
        r = run_child(work, kill_after=point - before, torn=rng.random() < 0.5)
        before = point
        if r.returncode == 0:
            break  # a resumed run writes fewer rows: it finished before this kill point
        assert r.returncode == -signal.SIGKILL, r.stderr[-3000:]
        kills += 1
    assert kills >= 3, f"only {kills} of the kill points were reached"
    final = run_child(work)
    assert final.returncode == 0, final.stderr[-3000:]

    # No row lost, none twice, none torn: the files are the uninterrupted run's.
    assert run_files(work) == run_files(clean_dir)
    # Every call was made once, except calls answered but not yet saved when their process died.
    processes = call_log(work)
    assert len(processes) == kills + 1
    calls = sum((c for c, _ in processes), Counter())
    lost = sum((c - s for c, s in processes[:-1]), Counter())
    assert not processes[-1][0] - processes[-1][1], "the last run left answered calls unsaved"
    assert calls == clean_calls + lost, {"repeated": calls - clean_calls - lost, "missing": clean_calls - calls}
    # A lost answer belongs to a unit in flight at the kill: at most one per concurrent unit.
    assert sum(lost.values()) <= kills * 8


def _figures(x: Any) -> Any:
    """results.json's figures, floats rounded: a resumed training run's weights equal an
    uninterrupted run's to ~1e-7, not bit for bit."""
    if isinstance(x, dict):
        return {k: _figures(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_figures(v) for v in x]
    return float(f"{x:.4g}") if isinstance(x, float) else x


def _eval_rows(work: Path) -> dict[str, list[str]]:
    """RUN/eval/*.jsonl: each line whole, no id twice; rows by file, without the weights' identity."""
    out = {}
    for f in sorted((work / "run" / "eval").glob("*.jsonl")):
        text = f.read_text(encoding="utf-8")
        assert not text or text.endswith("\n"), f"{f}: torn last line"
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        ids = [r["id"] for r in rows]
        assert len(ids) == len(set(ids)), f"{f}: duplicate ids {[i for i, n in Counter(ids).items() if n > 1]}"
        out[f.name] = sorted(json.dumps(_figures({k: v for k, v in r.items() if k != "identity"}), sort_keys=True)
                             for r in rows)
    return out


def test_kill_9_in_training_and_evaluation_then_resume_matches_a_clean_run(tmp_path):
    clean_dir, work = tmp_path / "clean", tmp_path / "crashy"
    clean_dir.mkdir()
    work.mkdir()
    done = run_child(clean_dir, mode="train-eval")
    assert done.returncode == 0, done.stderr[-3000:]
    events = json.loads(done.stdout.strip().splitlines()[-1])["events"]
    assert events["train"] >= 10 and events["eval"] >= 20

    rng = random.Random(SEED)
    # Two kills in training (a step, a checkpoint or one of its files, the export), one in evaluation.
    points = sorted(rng.sample(range(1, events["train"] + 1), 2) + [events["train"] + rng.randint(1, events["eval"])])
    kills, before = 0, 0
    for point in points:
        r = run_child(work, kill_after=max(1, point - before), torn=rng.random() < 0.5, mode="train-eval")
        before = point
        if r.returncode == 0:
            break
        assert r.returncode == -signal.SIGKILL, r.stderr[-3000:]
        kills += 1
    killed_in = [line.split()[1] for line in (work / "calls.log").read_text().splitlines() if line.startswith("kill ")]
    assert len(killed_in) == kills >= 2 and {"train", "eval"} <= set(killed_in), killed_in
    final = run_child(work, mode="train-eval")
    assert final.returncode == 0, final.stderr[-3000:]  # no traceback from a half-written checkpoint

    # No row lost, none twice, none torn; results.json's figures are the uninterrupted run's.
    assert _eval_rows(work) == _eval_rows(clean_dir)
    res, clean = (json.loads((w / "run" / "results.json").read_text()) for w in (work, clean_dir))
    for key in ("results", "paired_vs_base", "survival", "eval_items"):
        assert _figures(res[key]) == _figures(clean[key]), key
    train = json.loads((work / "run" / "manifest.json").read_text())["stages"]["train.sft"]["counts"]
    assert train["steps"] == 4 and train["train_loss"] == pytest.approx(
        json.loads((clean_dir / "run" / "manifest.json").read_text())["stages"]["train.sft"]["counts"]["train_loss"],
        rel=1e-4)
    # Cost: the judge's calls recorded in the manifest are the calls the scripted server answered,
    # less at most those of the processes killed before they recorded usage (the per-call usage
    # ledger closes that gap; then they are equal).
    processes = call_log(work)
    answered = sum(sum(c.values()) for c, _ in processes)
    in_killed = sum(sum(c.values()) for c, _ in processes[:-1])
    usage = json.loads((work / "run" / "manifest.json").read_text())["usage"]
    recorded = sum(m["calls"] for stage in usage.values() for name, m in stage.items() if "judge" in name)
    assert answered - in_killed <= recorded <= answered
    clean_usage = json.loads((clean_dir / "run" / "manifest.json").read_text())["usage"]
    assert sum(m["calls"] for st in clean_usage.values() for n, m in st.items() if "judge" in n) == \
        sum(sum(c.values()) for c, _ in call_log(clean_dir))


if __name__ == "__main__":
    main = train_eval_child if sys.argv[4:] == ["train-eval"] else child
    main(Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1")
