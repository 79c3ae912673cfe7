"""Crash anywhere: a generation (documents, chats) plus curation run in a subprocess is killed with
SIGKILL right after its Nth row is written (for a seeded list of N, some kills tearing the row half
way), then resumed, again and again. At the end the run's files hold exactly the rows of an
uninterrupted run (none lost, none twice, no torn line), and no model call was made twice except
one whose answer had not yet been saved when the process died (never one of a finished unit).

The scripted backend (tests/scripted_generator.py) keeps it short; the same file is the child
process: `python tests/test_crash_anywhere.py WORKDIR KILL_AFTER TORN`.
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


# --- the test ------------------------------------------------------------------------------------


def run_child(work: Path, kill_after: int = 0, torn: bool = False) -> subprocess.CompletedProcess:
    import traitforge

    src = str(Path(traitforge.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, __file__, str(work), str(kill_after), str(int(torn))],
                          env=env, capture_output=True, text=True, timeout=300)


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


if __name__ == "__main__":
    child(Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1")
