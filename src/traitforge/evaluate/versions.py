"""One version of each checkpoint in RUN/eval/*.jsonl. Before an evaluation, the rows of each
evaluated checkpoint that were made for another version of it (its weights retrained or changed,
or the settings its rows depend on changed) are moved to RUN/eval/superseded/<file>.jsonl, so
the steps find them not done and evaluate the checkpoint again; its unchanged rows stay, so an
unchanged checkpoint makes no model call.

Rows from before identities (no `identity`) cannot be told from a changed checkpoint's: they are
set aside the same way, so a run made before this is re-evaluated once (answers already in the
LLM cache are not paid again). Rows merged from Inspect logs (detail.source "inspect") were made
outside traitforge's evaluation and are left where they are."""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from typing import Any

from traitforge.errors import InputError
from traitforge.jsonl import append_jsonl, iter_jsonl_dicts, write_jsonl
from traitforge.runstore import RunStore

log = logging.getLogger("traitforge.evaluate")

SUPERSEDED = "superseded"


def _is_row(d: dict[str, Any]) -> bool:
    return "checkpoint" in d and "eval" in d and "item_id" in d


def _stale(d: dict[str, Any], identities: dict[str, str]) -> bool:
    ck = d.get("checkpoint")
    if ck not in identities or (d.get("detail") or {}).get("source") == "inspect":
        return False
    return d.get("identity") != identities[ck]


def set_aside_stale(store: RunStore, identities: dict[str, str]) -> dict[str, int]:
    """Move the rows of `identities`' checkpoints made for another version of them to
    RUN/eval/superseded/. Returns rows set aside per checkpoint (logged)."""
    moved: dict[str, int] = defaultdict(int)
    folder = store.root / "eval"
    if not folder.is_dir():
        return {}
    for path in sorted(folder.glob("*.jsonl")):
        rows = list(iter_jsonl_dicts(path))
        stale = [d for d in rows if _is_row(d) and _stale(d, identities)]
        if not stale:
            continue
        # Kept first, then dropped from the file: a kill in between leaves a row in both places,
        # never in neither (a row already kept is not kept twice).
        aside = store.path("eval", SUPERSEDED, path.name)
        kept = {json.dumps(d, sort_keys=True) for d in iter_jsonl_dicts(aside)}
        append_jsonl(aside, [d for d in stale if json.dumps(d, sort_keys=True) not in kept])
        write_jsonl(path, [d for d in rows if not (_is_row(d) and _stale(d, identities))])
        for d in stale:
            moved[d["checkpoint"]] += 1
    for ck, n in sorted(moved.items()):
        log.warning("evaluate: %s changed since its rows were made (or they predate checkpoint identities): "
                    "%d rows set aside in %s, evaluating it again", ck, n, folder / SUPERSEDED)
    return dict(moved)


def check_one_version(store: RunStore, checkpoints: list[str]) -> dict[str, str | None]:
    """checkpoint -> the one identity of its rows in RUN/eval/*.jsonl (None: its rows are all from
    before identities or from Inspect logs; absent: it has none). Raises one line when a
    checkpoint's rows come from two versions of it, naming the checkpoint and the evals."""
    first: dict[str, tuple[str, str]] = {}  # checkpoint -> (identity, the eval it was first seen in)
    wanted = set(checkpoints)
    out: dict[str, str | None] = {}
    folder = store.root / "eval"
    for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        for d in iter_jsonl_dicts(path):
            ck, ident = d.get("checkpoint"), d.get("identity")
            if not _is_row(d) or ck not in wanted:
                continue
            out.setdefault(ck, None)
            if not ident:
                continue
            seen, ev = first.setdefault(ck, (ident, d["eval"]))
            if seen != ident:
                evs = f"eval '{ev}'" if ev == d["eval"] else f"evals '{ev}' and '{d['eval']}'"
                raise InputError(f"{path}: checkpoint '{ck}' has rows of two versions ({seen}, {ident}) in {evs}; "
                                 "run the evaluation again to re-evaluate it")
            out[ck] = ident
    return out
