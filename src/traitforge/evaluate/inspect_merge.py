"""Inspect's scores into results.json: the samples of traitforge's Inspect tasks (inspect_tasks.py)
become result rows in RUN/eval/<eval>.jsonl with the same ids `traitforge eval` uses (rows it
already has are kept, not doubled), then results.json is rebuilt. A model given to Inspect with
--model is reported as the checkpoint "inspect-<model>"."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from traitforge.errors import InputError
from traitforge.evaluate.common import ItemResult, eval_path, result_id
from traitforge.steps import done_keys
from traitforge.jsonl import append_jsonl
from traitforge.runstore import RunStore
from traitforge.types import TraitSet

def _num(v: Any) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def checkpoint_of(log: Any) -> str:
    ck = (log.eval.metadata or {}).get("checkpoint")
    if ck and ck != "inspect --model":
        return str(ck)
    return "inspect-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", str(log.eval.model)).strip("-")


def rows_from_log(log: Any) -> list[ItemResult]:
    """One row per scored sample of a traitforge Inspect task (other tasks give none): the eval's
    registration (evaluate/registry.py) names its rows, its score's main value and its own detail."""
    from traitforge.shared.eval_registry import inspect_tasks

    name = str(log.eval.task).split("/")[-1]
    spec = inspect_tasks().get(name)
    if spec is None:
        return []
    ev, ck = spec.rows, checkpoint_of(log)
    out = []
    for s in log.samples or []:
        if not s.scores:
            continue
        score = next(iter(s.scores.values()))
        value = score.value if isinstance(score.value, dict) else {}
        md = dict(score.metadata or {})
        messages = [{"role": m.role, "content": m.text} for m in s.messages if m.role in ("user", "assistant")]
        item = str(s.id)
        detail: dict[str, Any] = {**md, "messages": messages, "source": "inspect"}
        trait_id = (s.metadata or {}).get("trait_id", "")
        main = _num(value.get(spec.value_key))
        if spec.detail is not None:
            detail.update(spec.detail(s, score, messages, main))
        ood = bool((s.metadata or {}).get("ood", False))
        reason = "" if main is not None else str(md.get("reason") or "") or "unscored in Inspect"
        out.append(ItemResult(id=result_id(ev, ck, item), eval=ev, checkpoint=ck, item_id=item, trait_id=trait_id,
                              ood=ood, value=main, reason=reason, detail=detail))
    return out


def merge_inspect_logs(store: RunStore, traits: TraitSet, logs: list[Path], *, bootstrap_resamples: int = 1000,
                       seed: int = 0) -> dict[str, int]:
    """Rows from the Inspect logs into the run; results.json rebuilt with any new checkpoints.
    Returns rows added per eval."""
    from inspect_ai.log import read_eval_log

    from traitforge.evaluate.results import build_results, write_results

    added: dict[str, int] = {}
    new_cks: list[str] = []
    for path in logs:
        try:
            log = read_eval_log(str(path))
        except Exception as e:  # noqa: BLE001 - any unreadable log is one clear line
            raise InputError(f"{path}: not a readable Inspect log: {str(e).splitlines()[0] if str(e) else e}") from None
        for r in rows_from_log(log):
            path_ev = eval_path(store, r.eval)
            if r.id in done_keys(path_ev):
                continue
            append_jsonl(path_ev, [r])
            added[r.eval] = added.get(r.eval, 0) + 1
            if r.checkpoint not in new_cks:
                new_cks.append(r.checkpoint)
    old = json.loads(store.path("results.json").read_text()) if store.path("results.json").exists() else {}
    cks = list(old.get("checkpoints", [])) + [c for c in new_cks if c not in old.get("checkpoints", [])]
    results = build_results(store, traits, cks, bootstrap_resamples=bootstrap_resamples, seed=seed,
                            notes=old.get("notes"), not_applicable=old.get("not_applicable"))
    write_results(store, results)
    return added
