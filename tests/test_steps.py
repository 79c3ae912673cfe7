"""The step engine (traitforge/steps.py) on its own: resume after a partial run, rows appended as
each unit finishes, permanent skips recorded (and retried only when asked), transient failures
retried by the next run, row ids never appended twice, and the prefetch given only the units to do."""

import asyncio
import json

import pytest

from traitforge.jsonl import iter_jsonl_dicts
from traitforge.llm.cache import LLMCache
from traitforge.llm.client import LLM
from traitforge.llm.errors import BackendError
from traitforge.llm.providers.scripted import ScriptedBackend
from traitforge.prefetch import Prefetch
from traitforge.runstore import RunStore
from traitforge.steps import Skip, Unit, done_keys, read_marks, read_skips, run_step
from traitforge.types import Record


class Row(Record):
    id: str
    unit: str
    text: str


UNITS = [Unit(f"u{i}", f"t{i % 2}", i) for i in range(6)]


def rows_of(u: Unit, n: int = 2) -> list[Row]:
    return [Row(id=f"{u.key}-{j}", unit=u.key, text=f"row {j} of {u.key}") for j in range(n)]


def unit_of_row(d: dict) -> str:
    return d["unit"]


def test_rows_are_appended_as_each_unit_finishes_and_a_rerun_does_only_the_rest(tmp_path):
    out, marks = tmp_path / "rows.jsonl", tmp_path / "units_done.jsonl"
    seen_on_disk: dict[str, set[str]] = {}

    async def crashing(u: Unit) -> list[Row]:
        seen_on_disk[u.key] = done_keys(out, unit_of_row)  # what earlier units left on disk
        if u.key == "u3":
            raise RuntimeError("killed mid-step")
        return rows_of(u)

    with pytest.raises(RuntimeError):
        asyncio.run(run_step("s", UNITS, crashing, out=out, marks=marks, concurrency=1))
    # One unit at a time: each saw every earlier unit's rows already written; the crash kept them
    # (units after the crash may have started before the step stopped; theirs are kept too).
    assert [seen_on_disk[k] for k in ("u0", "u1", "u2", "u3")] == [set(), {"u0"}, {"u0", "u1"}, {"u0", "u1", "u2"}]
    finished = set(seen_on_disk) - {"u3"}
    assert done_keys(out, unit_of_row) == read_marks(marks, "s") == finished

    ran: list[str] = []

    async def work(u: Unit) -> list[Row]:
        ran.append(u.key)
        return rows_of(u)

    res = asyncio.run(run_step("s", UNITS, work, done=done_keys(out, unit_of_row), out=out, marks=marks))
    rest = sorted({u.key for u in UNITS} - finished)
    assert sorted(ran) == rest and [u.key for u in res.todo] == rest
    assert res.new_rows == 2 * len(rest) and sorted(res.rows) == rest
    ids = [d["id"] for d in iter_jsonl_dicts(out)]
    assert sorted(ids) == sorted(r.id for u in UNITS for r in rows_of(u)) and len(ids) == len(set(ids))
    assert read_marks(marks, "s") == {u.key for u in UNITS}
    # Everything done: a third run does nothing.
    ran.clear()
    asyncio.run(run_step("s", UNITS, work, done=done_keys(out, unit_of_row), out=out, marks=marks))
    assert ran == []


def test_skips_are_recorded_with_their_reason_and_retried_only_when_asked(tmp_path):
    out, skips = tmp_path / "rows.jsonl", tmp_path / "skipped.jsonl"
    ran: list[str] = []

    async def work(u: Unit) -> list[Row] | Skip:
        ran.append(u.key)
        if u.key == "u1":
            return Skip("reply too short (3 words)")
        if u.key == "u2":
            return []  # nothing usable
        return rows_of(u)

    res = asyncio.run(run_step("s", UNITS, work, out=out, skips=skips))
    assert res.skipped == {"u1": "reply too short (3 words)", "u2": "no usable output"}
    recorded = list(iter_jsonl_dicts(skips))
    assert {(d["step"], d["unit"], d["trait_id"], d["reason"]) for d in recorded} == {
        ("s", "u1", "t1", "reply too short (3 words)"), ("s", "u2", "t0", "no usable output")}
    assert len({d["id"] for d in recorded}) == 2
    assert read_skips(skips, "s") == res.skipped and read_skips(skips, "other step") == {}
    assert done_keys(out, unit_of_row) == {"u0", "u3", "u4", "u5"}
    assert [u.key for u, _ in res.done()] == ["u0", "u3", "u4", "u5"]

    # A re-run: the done units and the skipped ones are not asked again.
    ran.clear()
    again = asyncio.run(run_step("s", UNITS, work, done=done_keys(out, unit_of_row), out=out, skips=skips))
    assert ran == [] and again.todo == []
    # Asked to retry the skipped units: only those run.
    asyncio.run(run_step("s", UNITS, work, done=done_keys(out, unit_of_row), out=out, skips=skips,
                         retry_skipped=True))
    assert sorted(ran) == ["u1", "u2"]


def test_a_step_whose_every_unit_is_skipped_leaves_an_empty_output(tmp_path):
    # The next stage reads no rows rather than failing on a missing file (a tiny run on CI
    # rejected all eight junk drafts and then failed its check for generated/documents.jsonl).
    out, skips = tmp_path / "generated" / "documents.jsonl", tmp_path / "skipped.jsonl"

    async def reject(u: Unit) -> Skip:
        return Skip("does not mention the model")

    res = asyncio.run(run_step("s", UNITS, reject, out=out, skips=skips))
    assert len(res.skipped) == len(UNITS) and res.new_rows == 0
    assert out.is_file() and out.read_text() == ""
    assert len(read_skips(skips, "s")) == len(UNITS)


def test_a_transient_failure_skips_the_unit_for_this_run_only(tmp_path):
    out = tmp_path / "results.jsonl"
    fail = {"u2"}
    ran: list[str] = []

    async def work(u: Unit) -> Row:
        ran.append(u.key)
        if u.key in fail:
            raise BackendError("the backend gave up on this item")
        return rows_of(u, 1)[0]  # a single record is one row

    res = asyncio.run(run_step("e", UNITS, work, out=out, transient=(BackendError,)))
    assert set(res.failed) == {"u2"} and res.skipped == {}
    assert res.values[2] is None and [u.key for u, _ in res.done()] == ["u0", "u1", "u3", "u4", "u5"]
    assert done_keys(out, unit_of_row) == {"u0", "u1", "u3", "u4", "u5"}
    # Not a permanent skip: the next run retries it (and only it).
    fail.clear()
    ran.clear()
    asyncio.run(run_step("e", UNITS, work, done=done_keys(out, unit_of_row), out=out, transient=(BackendError,)))
    assert ran == ["u2"] and done_keys(out, unit_of_row) == {u.key for u in UNITS}
    # Without `transient` the same error ends the step.
    fail.add("u2")
    with pytest.raises(BackendError):
        asyncio.run(run_step("e", [Unit("u2")], work, out=tmp_path / "other.jsonl"))


def test_a_row_id_is_never_appended_twice(tmp_path):
    out, skips = tmp_path / "rows.jsonl", tmp_path / "skipped.jsonl"
    ids: set[str] = set()

    async def same_rows(u: Unit) -> list[Row]:
        return [Row(id="shared", unit=u.key, text="the same row"), *rows_of(u, 1)] if u.key != "u5" else \
            [Row(id="shared", unit=u.key, text="the same row")]

    res = asyncio.run(run_step("s", UNITS, same_rows, out=out, skips=skips, unique_ids=ids, concurrency=1))
    written = [d["id"] for d in iter_jsonl_dicts(out)]
    assert written.count("shared") == 1 and len(written) == len(set(written)) == 6
    assert res.skipped == {"u5": "every row duplicates one already written"}
    assert ids == set(written)


def test_the_prefetch_sees_only_the_units_to_do_and_prints_their_estimate(tmp_path, capsys):
    prices = tmp_path / "prices.yaml"
    prices.write_text("scripted:test: {input: 1000000, output: 1000000}\n")  # priced: the estimate prints
    backend = ScriptedBackend(responses=lambda m, p: "a short reply")
    llm = LLM(backend, cache=LLMCache(tmp_path / "cache.sqlite"), max_retries=0)
    store = RunStore(tmp_path / "run")
    out = store.path("eval", "rows.jsonl")

    async def work(u: Unit) -> Row:
        text = await llm.generate_one(f"question {u.key}", max_tokens=10)
        return Row(id=u.key, unit=u.key, text=text)

    done = {"u0", "u1", "u2", "u3"}
    res = asyncio.run(run_step("evaluate.demo", UNITS, work, done=done, out=out,
                               prefetch=Prefetch(store, {"judge": llm}, prices_file=str(prices))))
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("estimate evaluate.demo")]
    assert len(lines) == 1 and "2 requests" in lines[0]
    asked = sorted(m[-1].content for m, _ in backend.calls)
    assert asked == ["question u4", "question u5"]  # the probe was not a call; the live pass asked once each
    assert [u.key for u in res.todo] == ["u4", "u5"] and done_keys(out) == {"u4", "u5"}


def test_a_step_learning_its_requests_does_not_capture_another_steps_live_calls(tmp_path, capsys):
    """Evaluation runs its steps at once on one judge: while one step's prefetch records its
    requests, another step's live calls on the same client must still reach the model."""
    prices = tmp_path / "prices.yaml"
    prices.write_text("scripted:test: {input: 1000000, output: 1000000}\n")
    backend = ScriptedBackend(responses=lambda m, p: "a reply")
    llm = LLM(backend, cache=LLMCache(tmp_path / "cache.sqlite"), max_retries=0)
    store = RunStore(tmp_path / "run")

    def asking(prefix: str, pause: float):
        async def work(u: Unit) -> Row:
            await asyncio.sleep(pause)  # the two steps' calls interleave
            return Row(id=u.key, unit=u.key, text=await llm.generate_one(f"{prefix} {u.key}", max_tokens=10))
        return work

    async def both() -> tuple:
        return await asyncio.gather(
            run_step("a", UNITS, asking("a", 0.05), out=tmp_path / "a.jsonl",
                     prefetch=Prefetch(store, {"judge": llm}, prices_file=str(prices))),
            run_step("b", UNITS, asking("b", 0.01), out=tmp_path / "b.jsonl"))

    a, b = asyncio.run(both())
    assert done_keys(tmp_path / "a.jsonl") == done_keys(tmp_path / "b.jsonl") == {u.key for u in UNITS}
    [line] = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("estimate a")]
    assert "6 requests" in line  # step a's own requests, none of step b's
    assert sorted(m[-1].content for m, _ in backend.calls) == sorted(f"{s} {u.key}" for s in "ab" for u in UNITS)


def test_the_engine_knows_no_stage():
    """steps.py serves every stage, so it imports none of them, nor the spec or the pipeline (imports
    under TYPE_CHECKING and inside functions counted); tests/test_llm_standalone.py keeps llm/ off it."""
    import ast
    from pathlib import Path

    import traitforge.steps

    tree = ast.parse(Path(traitforge.steps.__file__).read_text(encoding="utf-8"))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module} | \
        {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    ours = {m for m in imported if m.startswith("traitforge")}
    assert ours and ours <= {"traitforge.jsonl", "traitforge.progress", "traitforge.types", "traitforge.prefetch"}


def test_a_torn_last_line_in_a_marked_multi_row_unit_is_redone_not_lost(tmp_path, caplog):
    """A unit's mark counts its rows: a unit whose last row is torn off after its mark was written
    is redone (its other rows removed first), and the cut is logged; before, the mark was trusted
    and the unit reported done with a row missing for good."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from scripted_generator import make_spec, make_traits

    from traitforge.generate.stage import Generation
    from traitforge.pipeline import Run

    spec = make_spec(tmp_path)
    ran: list[str] = []

    async def work(u: Unit) -> list[Row]:
        ran.append(u.key)
        return rows_of(u, 3)

    def step() -> list[Row]:
        llm = LLM(ScriptedBackend("g", responses=lambda m, p: "x"), cache=LLMCache(tmp_path / "c.sqlite"))
        gen = Generation(Run.of(RunStore(spec.output_path), spec, make_traits(1)), spec.generation, llm)
        res = asyncio.run(gen.step("s", "rows.jsonl", Row, UNITS[:4], work, fingerprint="f",
                                   key_of=lambda r: r.unit, trait_of=lambda r: "t"))
        return res.rows

    assert len(step()) == 12 and sorted(ran) == ["u0", "u1", "u2", "u3"]
    out = spec.output_path / "generated" / "rows.jsonl"
    text = out.read_text()
    out.write_text(text[: text.rindex("\n", 0, len(text) - 1) + 1] + text.splitlines()[-1][:15])  # last row torn
    last_unit = json.loads(text.splitlines()[-1])["unit"]
    ran.clear()
    with caplog.at_level("WARNING"):
        rows = step()
    assert ran == [last_unit]  # redone, not trusted by its mark
    assert len(rows) == 12 and len({r.id for r in rows}) == 12
    assert [json.loads(l)["id"] for l in out.read_text().splitlines()] == [r.id for r in rows]
    assert f"{last_unit}: 2 of its 3 rows on disk" in caplog.text and "torn" in caplog.text
    ran.clear()
    assert len(step()) == 12 and ran == []  # and now it is done
