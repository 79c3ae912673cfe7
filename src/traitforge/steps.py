"""The one step engine of every stage: resumable units of work in, rows appended as each finishes.

A step is a list of units (a stable key, a trait, a payload) and a coroutine that does one unit:
it returns the unit's rows (a record, a list of them, or None for "nothing to write") or a `Skip`
with the reason. `run_step` runs the units not yet done:

- done: the keys the caller read back from the step's output file (`done_keys`), or a predicate;
  skipped: units recorded in the skip file earlier (`read_skips`), retried only with `retry_skipped`;
- before the live pass, the optional `Prefetch` (prefetch.py) gets only the units to do: in batch
  mode their calls go out as provider batches, and the live calls' estimate is printed;
- at most `concurrency` units at once, under one progress bar;
- `out` exists once the step starts, empty if every unit is skipped (the next stage reads no rows,
  not a missing file);
- as each unit finishes (before its concurrency slot goes to the next) its rows are appended to
  `out` (a crash keeps them), then its line in
  `marks` (a unit whose rows are on disk without it was cut short), or its Skip is recorded in
  `skips` with the reason: a permanent skip;
- an exception of a `transient` type (e.g. a backend that gave up on one item) skips the unit for
  this run only: logged, nothing written, so a re-run retries it;
- an exception with a `skip_reason` (llm.errors.Refused: the provider refused or blocked a call,
  after its role's on_refusal policy) is a Skip with that reason ("refused: ..." / "blocked: ...").

Generation (generate/stage.py), curation's judge steps (curate/run.py) and evaluation's steps
(evaluate/common.py) all run here. The engine knows nothing of pipelines or spec sections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Collection, Generic, Sequence, TypeVar

from traitforge.jsonl import append_jsonl, iter_jsonl_dicts
from traitforge.progress import gather_progress
from traitforge.types import Record, stable_hash

if TYPE_CHECKING:
    from traitforge.prefetch import Prefetch

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class Unit:
    key: str  # stable: derived from the unit's inputs
    trait_id: str = ""
    data: Any = None


@dataclass
class Skip:
    reason: str


class Skipped(Record):
    """A unit of work that gave no usable output, and why (e.g. generated/skipped.jsonl)."""

    id: str
    step: str
    unit: str
    trait_id: str
    reason: str


@dataclass
class StepRun(Generic[T]):
    """What one `run_step` call did (units already done are not in it)."""

    todo: list[Unit]  # the units this call ran, in the order given
    values: list[Any]  # per todo unit: what `work` returned (Skip, or None after a transient failure)
    rows: dict[str, list[Any]] = field(default_factory=dict)  # unit key -> rows written by this call
    skipped: dict[str, str] = field(default_factory=dict)  # unit key -> reason, recorded by this call
    failed: dict[str, str] = field(default_factory=dict)  # unit key -> transient error (retried next run)

    @property
    def new_rows(self) -> int:
        return sum(map(len, self.rows.values()))

    def done(self) -> list[tuple[Unit, Any]]:
        """(unit, value) for each todo unit that neither failed nor was skipped, in unit order."""
        return [(u, v) for u, v in zip(self.todo, self.values)
                if u.key not in self.failed and not isinstance(v, Skip)]


def done_keys(path: Path | None, key: Callable[[dict[str, Any]], Any] = lambda d: d.get("id")) -> set[str]:
    """The keys of the rows already in a step's output file (`key` of each row; rows it maps to
    None are left out). A missing file: none."""
    if path is None:
        return set()
    return {str(k) for k in (key(d) for d in iter_jsonl_dicts(path)) if k is not None}


def read_skips(path: Path | None, step: str) -> dict[str, str]:
    """Unit key -> reason, for the units of `step` recorded in a skip file."""
    if path is None:
        return {}
    return {d["unit"]: d["reason"] for d in iter_jsonl_dicts(path) if d.get("step") == step}


def read_marks(path: Path | None, step: str) -> set[str]:
    """The keys of the units of `step` whose rows were all written (their line in the marks file)."""
    return set(marked_rows(path, step))


def marked_rows(path: Path | None, step: str) -> dict[str, int | None]:
    """Unit key -> the rows its mark says it wrote (None: a mark without a count), for `step`;
    a unit marked twice (redone) counts by its last mark."""
    if path is None:
        return {}
    return {d["unit"]: d.get("rows") for d in iter_jsonl_dicts(path) if d.get("step") == step}


def unfinished(marks: dict[str, int | None], rows_by_key: dict[str, list[Any]]) -> dict[str, str]:
    """Unit key -> why it must be redone, for the units with rows on disk that are not finished: no
    mark (cut short before it), or fewer or more rows than its mark counts (a torn or lost line
    after it). Their rows are to be removed and the units run again (the cache answers)."""
    out = {}
    for key, rows in rows_by_key.items():
        if key not in marks:
            out[key] = "no mark"
        elif marks[key] is not None and marks[key] != len(rows):
            out[key] = f"{len(rows)} of its {marks[key]} rows on disk"
    return out


def write_marks(path: Path, step: str, done: dict[str, int]) -> None:
    """Mark units of `step` as finished (unit key -> rows it wrote)."""
    append_jsonl(path, [{"step": step, "unit": k, "rows": n} for k, n in done.items()])


def pending(units: Sequence[Unit], done: Collection[str] | Callable[[Unit], bool] = (),
            skipped: Collection[str] = ()) -> list[Unit]:
    """The units neither done nor skipped, in the order given."""
    is_done = done if callable(done) else (lambda u: u.key in done)  # type: ignore[operator]
    return [u for u in units if not is_done(u) and u.key not in skipped]


def refusal_counts(skips: dict[str, str]) -> dict[str, int]:
    """Skipped units the provider refused or blocked (their reasons start so): {"refused": n,
    "blocked": m}, the non-zero ones, for a step's counts in the manifest."""
    out = {k: sum(1 for r in skips.values() if r.startswith(f"{k}: ")) for k in ("refused", "blocked")}
    return {k: n for k, n in out.items() if n}


def _rows_of(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


async def run_step(name: str, units: Sequence[Unit], work: Callable[[Unit], Awaitable[Any]], *,
                   done: Collection[str] | Callable[[Unit], bool] = (), out: Path | None = None,
                   skips: Path | None = None, retry_skipped: bool = False, marks: Path | None = None,
                   unique_ids: set[str] | None = None, transient: tuple[type[BaseException], ...] = (),
                   concurrency: int | None = None, prefetch: "Prefetch | None" = None,
                   desc: str | None = None) -> StepRun[Any]:
    """Run `work` on each of `units` not done (see the module's doc); return what this call did.

    out: rows are appended here as each unit finishes (None: nothing written; the values are
    returned). skips: the permanent skip file: its units of step `name` are not run again unless
    `retry_skipped`; a Skip, or (with a skip file) a unit that gave no rows, is recorded there.
    marks: a unit's line goes here after its rows. unique_ids: row ids already written; a row whose
    id is among them is not appended again (the set grows). transient: exception types that skip a
    unit for this run only. desc: the progress bar's label (default `name`)."""
    if out is not None:  # a step whose every unit is skipped still leaves its (empty) output
        out.parent.mkdir(parents=True, exist_ok=True)
        out.touch()
    skipped = {} if retry_skipped else read_skips(skips, name)
    todo = pending(units, done, skipped)
    result: StepRun[Any] = StepRun(todo, [None] * len(todo))
    if prefetch is not None:
        await prefetch.before(name, todo, work)
    sem = asyncio.Semaphore(concurrency) if concurrency else None

    async def one(i: int, u: Unit) -> None:
        async with sem or contextlib.nullcontext():
            try:
                value = await work(u)
            except BaseException as e:
                reason = getattr(e, "skip_reason", None)
                if isinstance(reason, str):  # e.g. llm.errors.Refused: a skip with its reason, not an error
                    log.info("%s: %s", desc or name, e)
                    value = Skip(reason)
                elif isinstance(e, transient):
                    log.warning("%s: skipped one item for this run (a re-run retries it): %s", desc or name, e)
                    result.failed[u.key] = str(e)
                    return
                else:
                    raise
            finished(i, u, value)  # before the unit's slot is given to the next one

    def finished(i: int, u: Unit, value: Any) -> None:
        result.values[i] = value
        if out is None and skips is None and marks is None and not isinstance(value, Skip):
            return  # a step whose values are its result: nothing to write
        if not isinstance(value, Skip):
            rows = _rows_of(value)
            fresh = rows if unique_ids is None else [r for r in rows if r.id not in unique_ids]
            if fresh or skips is None:
                if out is not None and fresh:
                    append_jsonl(out, fresh)
                if marks is not None:
                    write_marks(marks, name, {u.key: len(fresh)})
                if unique_ids is not None:
                    unique_ids.update(r.id for r in fresh)
                result.rows[u.key] = fresh
                return
            value = Skip("every row duplicates one already written" if rows else "no usable output")
            result.values[i] = value
        result.skipped[u.key] = value.reason
        if skips is not None:
            append_jsonl(skips, [Skipped(id=stable_hash([name, u.key]), step=name, unit=u.key,
                                         trait_id=u.trait_id, reason=value.reason)])

    await gather_progress([one(i, u) for i, u in enumerate(todo)], desc=desc or name)
    return result
