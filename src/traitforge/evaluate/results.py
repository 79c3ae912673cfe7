"""RUN/results.json from the per-item rows in RUN/eval/*.jsonl plus the manifest: per checkpoint,
per trait ("all" pools them), per eval: value, n, ci_low, ci_high, unscored; paired differences
against base; survival curves; dataset card, curation patterns, usage and example texts. The
report reads only this file."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from traitforge.evaluate.common import EvalItem, ItemResult, eval_path, load_items, load_results
from traitforge.shared.eval_registry import SectionInput, evals as registered_evals, metric_meta, row_files
from traitforge.shared.stats import (EMPTY, Estimate, bootstrap, items_needed, minimum_detectable_effect,
                                       paired_difference, proportion, wilson)
from traitforge.evaluate.versions import check_one_version
from traitforge.jsonl import iter_jsonl_dicts, write_json_atomic
from traitforge.llm.base import BLOCKED, NOT_ANSWERS, REFUSED
from traitforge.runstore import RunStore
from traitforge.types import TraitSet

if TYPE_CHECKING:
    from traitforge.evaluate.settings import EvaluationSpec

CANARY_ID = "canary"  # the positive control's scope: reported on its own, never pooled into "all"
# Which checkpoints the canary must move, and on which eval: documents teach the fact, chats the habit.
CANARY_EXPECTED = {"midtrain": "knowledge_mc", "midtrain_sft": "knowledge_mc", "joint": "knowledge_mc",
                   "sft": "contrastive"}
DID_NOT_TAKE = "training did not take: check steps, learning rate, LoRA rank"
MAX_EXAMPLE_CHARS = 1500


def eval_meta(name: str) -> dict[str, Any]:
    """The headline row of a metric, as the eval that makes it declares it (evaluate/registry.py)."""
    return metric_meta(name) or {"label": name, "kind": "proportion", "higher_is_better": True, "description": ""}


def _points(rows: list[ItemResult]) -> dict[str, list[tuple[str, str, str, float | None]]]:
    """eval -> [(checkpoint, trait_id, item_id, value or None)] from the raw rows."""
    pts: dict[str, list[tuple[str, str, str, float | None]]] = defaultdict(list)
    for r in rows:
        if r.eval == "behaviour":
            passed = r.detail.get("passed")
            pts["behaviour_score"].append((r.checkpoint, r.trait_id, r.item_id, r.value))
            p = None if r.value is None or passed is None else float(bool(passed))
            pts["behaviour_pass"].append((r.checkpoint, r.trait_id, r.item_id, p))
            if r.ood:
                pts["behaviour_pass_ood"].append((r.checkpoint, r.trait_id, r.item_id, p))
        elif r.eval == "multiturn":
            pts["multiturn_survival"].append((r.checkpoint, r.trait_id, r.item_id, r.value))
        elif r.eval != "perplexity":
            pts[r.eval].append((r.checkpoint, r.trait_id, r.item_id, r.value))
    return pts


def _estimate(kind: str, values: list[float], boot: int, seed: int) -> Estimate:
    if kind == "proportion":
        return proportion([v >= 0.5 for v in values])
    return bootstrap(values, resamples=boot, seed=seed)


def _ppl(arr: np.ndarray) -> float:
    return float(math.exp(arr[:, 0].sum() / max(1.0, arr[:, 1].sum())))


def _perplexity(rows: list[ItemResult], checkpoints: list[str], boot: int, seed: int
                ) -> tuple[dict[str, dict], dict[str, dict]]:
    by_ck: dict[str, dict[str, tuple[float, float]]] = defaultdict(dict)
    for r in rows:
        if r.eval == "perplexity" and r.value is not None:
            by_ck[r.checkpoint][r.item_id] = (r.value, float(r.detail.get("tokens", 0)))
    est, diff = {}, {}
    for ck in checkpoints:
        if ck not in by_ck:
            continue
        arr = np.array(list(by_ck[ck].values()))
        e = bootstrap(arr, _ppl, resamples=boot, seed=seed)
        est[ck] = {**e.to_dict(), "n": int(arr[:, 1].sum()), "windows": len(arr), "unscored": 0}
        if ck != "base" and "base" in by_ck:
            shared = sorted(set(by_ck[ck]) & set(by_ck["base"]))
            pair = np.array([[*by_ck[ck][w], *by_ck["base"][w]] for w in shared])
            if len(pair):
                d = bootstrap(pair, lambda a: _ppl(a[:, :2]) - _ppl(a[:, 2:]), resamples=boot, seed=seed)
                diff[ck] = d.to_dict()
    return est, diff


def refusal_summary(rows: list[ItemResult], checkpoints: list[str]) -> dict[str, Any]:
    """Refusals per checkpoint per eval (the rows' files: behaviour, knowledge_recall, an OOD eval...).
    by_model: the evaluated model refused or was blocked: its refusal rate, with n (the eval's rows
    for that checkpoint), is itself a result (a trait may raise it). by_judge: grades left unscored
    because the judge (or auditor) refused or was blocked, counted by the provider's reason. Only
    evals with at least one refusal are listed; then every checkpoint with rows in them is."""
    bad_evals = {r.eval for r in rows if r.detail.get("outcome") in NOT_ANSWERS}
    out: dict[str, dict[str, Any]] = {}
    for ck in checkpoints:
        for ev in sorted(bad_evals):
            mine = [r for r in rows if r.checkpoint == ck and r.eval == ev]
            if not mine:
                continue
            refused = [r for r in mine if r.detail.get("outcome") in NOT_ANSWERS]
            model = [r for r in refused if r.detail.get("refused_by") == "model"]
            judge: dict[str, int] = defaultdict(int)
            for r in refused:
                if r.detail.get("refused_by") != "model":
                    judge[f"{r.detail.get('refused_by')} {r.detail.get('outcome')}: "
                          f"{r.detail.get('provider_reason') or 'no reason given'}"[:120]] += 1
            n = len(mine)
            out.setdefault(ck, {})[ev] = {
                "n": n, "refused": sum(r.detail.get("outcome") == REFUSED for r in model),
                "blocked": sum(r.detail.get("outcome") == BLOCKED for r in model),
                "rate": _round(len(model) / n), "by_judge": dict(judge)}
    return out


def survival_curves(rows: list[ItemResult], checkpoints: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Share of conversations not yet violated by each turn. A conversation counts at turn t only
    if its fate through t is known: every turn up to t (or up to its first violation) was graded."""
    out: dict[str, list[dict[str, Any]]] = {}
    for ck in checkpoints:
        convs = [r.detail for r in rows if r.eval == "multiturn" and r.checkpoint == ck
                 and r.detail.get("outcome") not in NOT_ANSWERS]  # a refused conversation has no turns
        if not convs:
            continue
        k = max((c.get("turns", 0) for c in convs), default=0)
        curve = [{"turn": 0, "value": 1.0, "n": len(convs), "ci_low": None, "ci_high": None}]
        for t in range(1, k + 1):
            known = []
            for c in convs:
                v = {x["turn"]: x["violation"] for x in c.get("verdicts", [])}
                upto = [v.get(s) for s in range(1, t + 1)]
                if True in upto:
                    first = upto.index(True)
                    if None not in upto[:first]:
                        known.append(False)
                elif None not in upto and len(upto) == t and c.get("turns", 0) >= t:
                    known.append(True)
            e = proportion(known)
            curve.append({"turn": t, **e.to_dict()})
        out[ck] = curve
    return out


def worst_turns(rows: list[ItemResult], checkpoints: list[str]) -> dict[str, dict[str, int]]:
    """Per checkpoint: how many conversations had their lowest-scored turn at each turn."""
    out: dict[str, dict[str, int]] = {}
    for ck in checkpoints:
        turns = [r.detail.get("worst_turn") for r in rows if r.eval == "multiturn" and r.checkpoint == ck]
        counts: dict[str, int] = defaultdict(int)
        for t in turns:
            if isinstance(t, int):
                counts[str(t)] += 1
        if counts:
            out[ck] = dict(sorted(counts.items(), key=lambda kv: int(kv[0])))
    return out


def _clip(text: Any) -> str:
    s = str(text or "")
    return s if len(s) <= MAX_EXAMPLE_CHARS else s[:MAX_EXAMPLE_CHARS] + " [...]"


def _examples(store: RunStore, rows: list[ItemResult], items: dict[str, EvalItem]) -> dict[str, list]:
    ex: dict[str, list] = {"documents": [], "chats": [], "behaviour": [], "transcripts": []}
    for part in ("curated", "generated"):
        docs = list(iter_jsonl_dicts(store.root / part / "documents.jsonl"))
        if docs and not ex["documents"]:
            ex["documents"] = [{"id": d.get("id"), "traits": d.get("trait_ids"), "doc_type": d.get("doc_type"),
                                "text": _clip(d.get("text"))} for d in docs[:3]]
        chats = list(iter_jsonl_dicts(store.root / part / "chats.jsonl"))
        if chats and not ex["chats"]:
            ex["chats"] = [{"id": c.get("id"), "traits": c.get("trait_ids"),
                            "messages": [{"role": m.get("role"), "content": _clip(m.get("content"))}
                                         for m in c.get("messages", []) if isinstance(m, dict)]}
                           for c in chats[:3]]
    # Behaviour: the same prompt answered by every checkpoint, side by side.
    by_item: dict[str, list[ItemResult]] = defaultdict(list)
    for r in rows:
        if r.eval == "behaviour":
            by_item[r.item_id].append(r)
    for item_id in sorted(by_item)[:4]:
        rs = by_item[item_id]
        ex["behaviour"].append({"item_id": item_id, "trait_id": rs[0].trait_id,
                                "category": rs[0].detail.get("category"), "prompt": _clip(rs[0].detail.get("prompt")),
                                "responses": [{"checkpoint": r.checkpoint, "score": r.value,
                                               "passed": r.detail.get("passed"), "text": _clip(r.detail.get("response"))}
                                              for r in sorted(rs, key=lambda r: r.checkpoint)]})
    # Transcripts: violated ones first (they teach the most), at most one per checkpoint and two overall each.
    # Rows lie in the order they were finished; sorting on the item too makes the pick the same every run.
    conv = sorted((r for r in rows if r.eval == "multiturn"), key=lambda r: (r.value != 0.0, r.checkpoint, r.item_id))
    seen: dict[str, int] = defaultdict(int)
    for r in conv:
        if seen[r.checkpoint] >= 1 or len(ex["transcripts"]) >= 6:
            continue
        seen[r.checkpoint] += 1
        d = r.detail
        ex["transcripts"].append({"checkpoint": r.checkpoint, "trait_id": r.trait_id, "tactic": d.get("tactic"),
                                  "first_violation": d.get("first_violation"), "worst_turn": d.get("worst_turn"),
                                  "verdicts": d.get("verdicts", []),
                                  "messages": [{"role": m["role"], "content": _clip(m["content"])}
                                               for m in d.get("messages", [])]})
    return ex


def _accuracy(value: float, n: int) -> Estimate:
    """An lm-eval task accuracy over n questions: a share, so a Wilson interval when n is known."""
    return wilson(value * n, n) if n > 0 else Estimate(value, 0, None, None)


def _mark_not_applicable(results: dict[str, dict[str, dict[str, Any]]], evals: dict[str, Any],
                         not_applicable: dict[str, dict[str, str]], trait_ids: list[str]) -> None:
    """Evals a checkpoint cannot take (log-prob evals on an API model) get an entry that says why,
    not a zero: per trait wherever another checkpoint has that trait's figure."""
    for ck, reasons in not_applicable.items():
        if ck not in results:
            continue
        for ev_name, reason in reasons.items():
            evals.setdefault(ev_name, eval_meta(ev_name))
            for tr in ["all"] + [t for t in trait_ids if any(ev_name in r.get(t, {}) for r in results.values())]:
                results[ck][tr][ev_name] = {**EMPTY.to_dict(), "unscored": 0, "not_applicable": reason}


def build_results(store: RunStore, traits: TraitSet, checkpoints: list[str], *, bootstrap_resamples: int = 1000,
                  seed: int = 0, notes: list[str] | None = None,
                  not_applicable: dict[str, dict[str, str]] | None = None, target_mde: float = 0.2,
                  ev: "EvaluationSpec | None" = None) -> dict[str, Any]:
    """not_applicable: checkpoint -> eval -> why it cannot take that eval. target_mde: the smallest
    effect the evals should detect (controls.target_mde); the power summary says which fall short.
    ev: the evaluation's settings (None: rebuilt from Inspect logs; sections that need them are left
    out). Every registered eval's own section follows the shared figures."""
    rows: list[ItemResult] = []
    for name in row_files():
        rows += load_results(eval_path(store, name))
    rows = [r for r in rows if r.checkpoint in checkpoints]
    # One version of each checkpoint, or no results (a changed checkpoint's old rows are set aside
    # before it is evaluated again: versions.py).
    identities = check_one_version(store, checkpoints)
    items: dict[str, EvalItem] = {}
    for kind in ("knowledge", "mc", "behaviour", "multiturn", "canary"):
        items.update({i.id: i for i in load_items(eval_path(store, f"items_{kind}"))})

    trait_ids = [t.id for t in traits.traits]
    pts = _points(rows)
    has_canary = any(p[1] == CANARY_ID for v in pts.values() for p in v)
    scopes = trait_ids + (["canary"] if has_canary else []) + ["all"]
    lm_n = {(r.checkpoint, r.eval): int(r.detail.get("n") or 0) for r in rows if r.eval.startswith("lm_eval:")}
    results: dict[str, dict[str, dict[str, Any]]] = {ck: defaultdict(dict) for ck in checkpoints}
    paired: dict[str, dict[str, dict[str, Any]]] = {ck: defaultdict(dict) for ck in checkpoints if ck != "base"}
    # Against the negative control arm: what the traits did beyond what any SFT on as much data does.
    paired_control: dict[str, dict[str, dict[str, Any]]] = {
        ck: defaultdict(dict) for ck in checkpoints if ck not in ("base", "control") and "control" in checkpoints}
    evals = {}
    for ev_name in sorted(pts):
        meta = eval_meta(ev_name)
        evals[ev_name] = meta
        def in_scope(p: tuple, tr: str) -> bool:
            return p[1] != CANARY_ID if tr == "all" else p[1] == tr

        for ck in checkpoints:
            for tr in scopes:
                sel = [p for p in pts[ev_name] if p[0] == ck and in_scope(p, tr)]
                if not sel:
                    continue
                scored = {f"{p[1]}|{p[2]}": p[3] for p in sel if p[3] is not None}
                if meta["kind"] == "accuracy":  # lm-eval: one row holding a task accuracy
                    est = EMPTY if not scored else _accuracy(next(iter(scored.values())), lm_n.get((ck, ev_name), 0))
                else:
                    est = _estimate(meta["kind"], list(scored.values()), bootstrap_resamples, seed)
                sd = float(np.std(list(scored.values()))) if len(scored) > 1 else None
                results[ck][tr][ev_name] = {**est.to_dict(), "unscored": len(sel) - len(scored),
                                            "mde": _round(minimum_detectable_effect(meta["kind"], est.n, sd))}
                if meta["kind"] == "accuracy":
                    continue
                for ref, table in (("base", paired), ("control", paired_control)):
                    if ck in (ref, "base") or ref not in checkpoints or ck not in table:
                        continue
                    other = {f"{p[1]}|{p[2]}": p[3] for p in pts[ev_name]
                             if p[0] == ref and in_scope(p, tr) and p[3] is not None}
                    if set(other) & set(scored):
                        d = paired_difference(scored, other, resamples=bootstrap_resamples, seed=seed)
                        table[ck][tr][ev_name] = {"diff": d.to_dict()["value"], **d.to_dict()}
    ppl, ppl_diff = _perplexity(rows, checkpoints, bootstrap_resamples, seed)
    if ppl:
        evals["perplexity"] = eval_meta("perplexity")
        for ck, e in ppl.items():
            results[ck]["all"]["perplexity"] = e
        for ck, d in ppl_diff.items():
            paired[ck]["all"]["perplexity"] = {"diff": d["value"], **d}
    _mark_not_applicable(results, evals, not_applicable or {}, trait_ids)
    plain = {ck: dict(v) for ck, v in results.items()}
    paired_plain = {ck: dict(v) for ck, v in paired.items()}

    m = store.manifest
    patterns = list(iter_jsonl_dicts(store.root / "curation" / "patterns.jsonl"))
    item_counts: dict[str, dict[str, int]] = {}
    for i in items.values():
        c = item_counts.setdefault(i.kind, {"items": 0, "dropped": 0})
        c["items"] += 1
        c["dropped"] += i.dropped is not None
    out = {
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "run": str(m.get("config", {}).get("name", store.root.name)),
        "model_name": traits.model_name,
        "organisation": traits.organisation,
        "traits": [{"id": t.id, "name": t.name, "statement": t.statement} for t in traits.traits],
        "checkpoints": checkpoints,
        # what each checkpoint's rows were made from (versions.py); None: rows from before identities
        "identities": identities,
        "evals": evals,
        "results": plain,
        "paired_vs_base": paired_plain,
        "paired_vs_control": {ck: dict(v) for ck, v in paired_control.items()},
        "canary": canary_check(store, plain, paired_plain) if has_canary else None,
        "seed_spread": seed_spread(plain, checkpoints),
        "scaling": scaling_curves(plain, checkpoints),
        "power": power_summary(plain, evals, target_mde),
        "not_applicable": not_applicable or {},
        "survival": survival_curves(rows, checkpoints),
        "refusals": refusal_summary(rows, checkpoints),
        "multiturn_worst": worst_turns(rows, checkpoints),
        "eval_items": item_counts,
        "dataset": {name: info.get("counts", {}) for name, info in m.get("stages", {}).items()
                    if not name.startswith("evaluate")},
        "stages": {name: {"status": info.get("status"), "elapsed_s": info.get("elapsed_s")}
                   for name, info in m.get("stages", {}).items()},
        "patterns": patterns,
        "usage": m.get("usage", {}),
        "examples": _examples(store, rows, items),
        "notes": notes or [],
        "ood": {},
    }
    why = {ck: next(iter(v.values())) for ck, v in (not_applicable or {}).items() if v}
    for e in registered_evals():
        if e.build_section is None or not e.section:
            continue
        section = e.build_section(SectionInput(store, rows, checkpoints, out, bootstrap_resamples, seed, ev, why))
        if section is None:  # nothing to show (an eval not configured, or without rows)
            continue
        where = out
        for key in e.section[:-1]:
            where = where.setdefault(key, {})
        where[e.section[-1]] = section
    return out


def _round(x: float | None) -> float | None:
    return None if x is None else round(float(x), 6)


def canary_check(store: RunStore, results: dict[str, dict], paired: dict[str, dict]) -> dict[str, Any]:
    """Did the positive control reach training, and did training move it? A checkpoint whose canary
    rows were trained on but whose canary eval did not rise (paired CI not above zero) is flagged:
    the training did not take, whatever the traits' figures say."""
    reached = {}
    for ds in ("documents", "chats"):
        rows = list(iter_jsonl_dicts(store.root / "curated" / f"{ds}.jsonl"))
        made = list(iter_jsonl_dicts(store.root / "generated" / f"canary_{ds}.jsonl"))
        reached[ds] = {"made": len(made), "reached_training": sum(CANARY_ID in r.get("trait_ids", []) for r in rows)}
    checks = {}
    for ck in results:
        base_name = ck.partition(".")[0]
        ev = CANARY_EXPECTED.get(base_name)
        if ev is None:
            continue
        data = "documents" if ev == "knowledge_mc" else "chats"
        d = paired.get(ck, {}).get(CANARY_ID, {}).get(ev)
        value = results[ck].get(CANARY_ID, {}).get(ev)
        if not reached[data]["reached_training"]:
            verdict, message = "not_trained", f"no canary {data} reached training"
        elif not d or d.get("ci_low") is None:
            verdict, message = "unknown", "no paired canary figure against base"
        elif d["ci_low"] > 0:
            verdict, message = "moved", "training took: the canary moved"
        else:
            verdict, message = "did_not_take", DID_NOT_TAKE
        checks[ck] = {"eval": ev, "data": data, "value": value, "vs_base": d, "verdict": verdict, "message": message}
    return {"rows": reached, "checks": checks,
            "training_took": all(c["verdict"] == "moved" for c in checks.values()) if checks else None}


def seed_spread(results: dict[str, dict], checkpoints: list[str]) -> dict[str, Any]:
    """Per checkpoint trained with several seeds ("x", "x.s1", ...): each eval's value per seed and
    the spread across seeds, beside the item CIs of each."""
    out: dict[str, Any] = {}
    for ck in checkpoints:
        seeds = [ck] + [c for c in checkpoints if c.startswith(ck + ".s")]
        if "." in ck or len(seeds) < 2:
            continue
        for scope, evs in results[ck].items():
            for ev, e in evs.items():
                vals = [results[c].get(scope, {}).get(ev, {}).get("value") for c in seeds]
                vals = [v for v in vals if v is not None]
                if len(vals) >= 2:
                    out.setdefault(ck, {}).setdefault(scope, {})[ev] = {
                        "seeds": len(vals), "values": vals, "mean": _round(np.mean(vals)),
                        "sd": _round(np.std(vals, ddof=1)), "min": min(vals), "max": max(vals)}
    return out


def scaling_curves(results: dict[str, dict], checkpoints: list[str]) -> dict[str, Any]:
    """Per checkpoint trained on fractions of its data ("x.f0.25", ..., "x"): value and CI by fraction."""
    out: dict[str, Any] = {}
    for ck in checkpoints:
        fracs = sorted((float(c[len(ck) + 2:]), c) for c in checkpoints if c.startswith(ck + ".f"))
        if "." in ck or not fracs:
            continue
        fracs.append((1.0, ck))
        for scope, evs in results[ck].items():
            for ev in evs:
                pts = [{"fraction": f, **{k: results[c].get(scope, {}).get(ev, {}).get(k)
                                          for k in ("value", "ci_low", "ci_high", "n")}} for f, c in fracs]
                if sum(p["value"] is not None for p in pts) >= 2:
                    out.setdefault(ck, {}).setdefault(scope, {})[ev] = pts
    return out


def power_summary(results: dict[str, dict], evals: dict[str, Any], target: float) -> dict[str, Any]:
    """For shares: the items needed for the target effect, and the evals whose n falls short."""
    short = []
    for ck, scopes in results.items():
        for scope, evs in scopes.items():
            for ev, e in evs.items():
                if evals.get(ev, {}).get("kind") == "proportion" and e.get("n") and (e.get("mde") or 1) > target:
                    short.append({"checkpoint": ck, "scope": scope, "eval": ev, "n": e["n"], "mde": e.get("mde")})
    return {"target_mde": target, "items_needed": items_needed(target), "underpowered": short}


def write_results(store: RunStore, results: dict[str, Any]) -> Path:
    path = store.path("results.json")
    write_json_atomic(path, results)
    return path
