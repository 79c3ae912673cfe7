"""Run many coroutines with a progress bar (rate and ETA), keeping input order in the result."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import sys
from typing import Any, Awaitable, Callable, Iterable, Iterator, TypeVar

from tqdm import tqdm

T = TypeVar("T")
# Inside `one_line()`, gather_progress draws no bar of its own: the caller shows one for the whole.
_QUIET: contextvars.ContextVar[bool] = contextvars.ContextVar("traitforge_quiet_bars", default=False)


@contextlib.contextmanager
def one_line(desc: str, total: int, unit: str = "step") -> Iterator[tqdm]:
    """One progress bar for work made of many gathers (tasks started inside inherit the quiet)."""
    token = _QUIET.set(True)
    bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, mininterval=1.0)
    try:
        yield bar
    finally:
        bar.close()
        _QUIET.reset(token)


async def gather_progress(coros: Iterable[Awaitable[T]], desc: str,
                          on_result: Callable[[int, T], Any] | None = None) -> list[T]:
    """Await all; `on_result(i, value)` runs as each finishes, so a stage can append rows
    as they arrive and a crash halfway keeps what was done."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    results: list[Any] = [None] * len(tasks)
    index = {t: i for i, t in enumerate(tasks)}
    bar = tqdm(total=len(tasks), desc=desc, unit="req", file=sys.stderr, dynamic_ncols=True,
               disable=len(tasks) == 0 or _QUIET.get(), mininterval=1.0)
    try:
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                i = index[t]
                results[i] = t.result()
                if on_result is not None:
                    on_result(i, results[i])
                bar.update(1)
    except BaseException:
        for t in tasks:
            t.cancel()
        raise
    finally:
        bar.close()
    return results
