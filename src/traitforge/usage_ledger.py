"""RUN/usage/calls.jsonl: every paid backend call, appended as it completes (append-only), so cost
and budget include calls made before a kill.

One source of truth: the ledger holds each call once; manifest["usage"] is a summary written when a
client's usage counter is drained (`RunStore.record_llm_usage`), and manifest["usage_ledger"]
records, per counter, the last ledger record that summary covers (`CallRecord.counter`/`seq`). A
record past its counter's mark was never summarised (its step was killed): `unrecorded` finds
those, the run's total cost adds them, and the next process folds them into the summary under
their stage (`fold_interrupted`), so nothing is counted twice or lost.

Free calls (local and scripted models, cost 0) are not written: the ledger is of what was paid for
(or could have been: an API model without a price is written, its cost unknown).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable, Iterator

from traitforge.jsonl import _repair_tail, iter_jsonl_dicts
from traitforge.llm.ledger import Ledger  # the run store, as llm/ sees it (runstore.py imports this module)
from traitforge.llm.record import CallRecord, Sink

log = logging.getLogger(__name__)
LEDGER = ("usage", "calls.jsonl")
MARKS = "usage_ledger"  # manifest key: counter id -> last seq summarised into manifest["usage"]


def ledger_path(store: Ledger) -> Path:
    return store.root.joinpath(*LEDGER)


def sink_for(store: Ledger, stage: Callable[[], str]) -> Sink:
    """A client's sink writing to the run's ledger; `stage()` names the stage running now."""
    live = _live(store)

    path = ledger_path(store)
    repaired = False

    def write(rec: CallRecord) -> None:
        nonlocal repaired
        if rec.cached or not paid(rec):
            return
        live.add(rec.counter)
        if not repaired:  # a torn last line left by a kill is cut before the first append
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                _repair_tail(path)
            repaired = True
        # One line per call, written when the call completes: a killed process keeps every line it
        # wrote (the OS has it); no fsync per call, which would stall the event loop of a busy stage.
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({**rec.to_dict(), "stage": stage()}, ensure_ascii=False) + "\n")
    return write


def paid(rec: CallRecord) -> bool:
    """A call that cost money, or may have: priced above zero, or an API model without a price.
    Local and scripted models are never paid for (unless a prices file gives one a price)."""
    if rec.cost_usd is not None:
        return rec.cost_usd > 0
    return rec.model.partition(":")[0] not in ("local", "scripted")


def _live(store: Ledger) -> set[str]:
    """Counters of this process (their records are summarised when they are drained)."""
    live = getattr(store, "_live_counters", None)
    if live is None:
        live = set()
        store._live_counters = live  # type: ignore[attr-defined]
    return live


def mark(store: Ledger, counter: str, seq: int) -> None:
    """The summary now covers `counter`'s records up to `seq` (saved with the manifest)."""
    if counter and seq:
        store.manifest.setdefault(MARKS, {})[counter] = seq


def records(store: Ledger) -> Iterator[dict[str, Any]]:
    path = ledger_path(store)
    return iter_jsonl_dicts(path) if path.is_file() else iter(())


def unrecorded(store: Ledger) -> list[dict[str, Any]]:
    """Ledger records no summary covers yet (calls of a killed step, or of one still running)."""
    marks = store.manifest.get(MARKS, {})
    return [r for r in records(store) if int(r.get("seq") or 0) > int(marks.get(r.get("counter", ""), 0))]


def fold_interrupted(store: Ledger) -> int:
    """Add the records of counters of earlier processes that no summary covers to manifest["usage"]
    under their stage ("interrupted" when none was running), counted as `interrupted_calls`, and mark
    them covered. Such calls are a killed step's (or a preview's, whose summary went to RUN/preview:
    the run's budget paid for them too). Returns how many calls were folded in."""
    live = _live(store)
    orphans = [r for r in unrecorded(store) if r.get("counter") not in live]
    if not orphans:
        return 0
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in orphans:
        groups.setdefault((r.get("stage") or "interrupted", r.get("model", "?")), []).append(r)
    for (stage, model), recs in groups.items():
        costs = [r.get("cost_usd") for r in recs]
        store.add_usage(stage, model, input_tokens=sum(int(r.get("input_tokens") or 0) for r in recs),
                        output_tokens=sum(int(r.get("output_tokens") or 0) for r in recs), calls=len(recs),
                        cached=0, cost_usd=None if all(c is None for c in costs) else sum(c or 0.0 for c in costs),
                        reasoning_tokens=sum(int(r.get("reasoning_tokens") or 0) for r in recs),
                        outcomes=[o for r in recs for o in r.get("outcomes") or []], save=False)
        u = store.manifest["usage"][stage][model]
        u["interrupted_calls"] = u.get("interrupted_calls", 0) + len(recs)
    for r in orphans:
        marks = store.manifest.setdefault(MARKS, {})
        marks[r["counter"]] = max(int(marks.get(r["counter"], 0)), int(r.get("seq") or 0))
    store.save()
    log.warning("usage: %d paid call(s) of an interrupted run counted from %s", len(orphans),
                "/".join(LEDGER))
    return len(orphans)


def unrecorded_cost(store: Ledger) -> float:
    return sum(float(r.get("cost_usd") or 0.0) for r in unrecorded(store))
