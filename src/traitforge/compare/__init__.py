"""`traitforge compare RUN_OR_ARM...`: arms side by side on the same items. Reads only each run's
per-item eval rows (RUN/eval/*.jsonl) and results.json; writes compare.json and compare.html.

Each arm is paired with the reference arm (default the first, the base) item by item: items only one
of them evaluated are left out of the pair and counted; an eval on which the two share no item at all
is refused in one line naming it."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from traitforge.closing import beats_control
from traitforge.compare.paired import excludes_zero, holm, paired
from traitforge.errors import InputError, TraitforgeError
from traitforge.jsonl import iter_jsonl_dicts, write_json_atomic

NOT_ROWS = ("items_", "arms_user_turns")
ADJUSTMENT = "Holm"


def arm_name(root: Path) -> str:
    m = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    return (m.get("arm") or {}).get("name") or root.name


def expand(targets: list[Path]) -> list[Path]:
    """Run directories; a base run with arms stands for all its arms."""
    out: list[Path] = []
    for t in targets:
        if not (t / "manifest.json").is_file():
            raise InputError(f"{t}: not a run directory (no manifest.json)")
        arms = json.loads((t / "manifest.json").read_text(encoding="utf-8")).get("arms") or {}
        for p in ([Path(r) for r in arms.values()] if arms and len(targets) == 1 else [t]):
            if p.resolve() not in [o.resolve() for o in out]:
                out.append(p)
    if len(out) < 2:
        raise InputError(f"{targets[0]}: compare needs two runs or arms (a run with variants stands for its arms)")
    return out


def item_values(root: Path) -> dict[tuple[str, str, str], dict[str, float]]:
    """(eval, checkpoint, trait) -> item id -> value, from RUN/eval/*.jsonl (unscored rows left out);
    trait "all" pools the traits (the canary kept apart, as in the report)."""
    out: dict[tuple[str, str, str], dict[str, float]] = defaultdict(dict)
    for f in sorted((root / "eval").glob("*.jsonl")):
        if f.name.startswith(NOT_ROWS):
            continue
        for r in iter_jsonl_dicts(f):
            if r.get("value") is None or not r.get("eval") or not r.get("item_id"):
                continue
            ev, ck, tr = str(r["eval"]), str(r.get("checkpoint", "")), str(r.get("trait_id", ""))
            out[(ev, ck, tr)][str(r["item_id"])] = float(r["value"])
            if tr != "canary":
                out[(ev, ck, "all")][str(r["item_id"])] = float(r["value"])
    return out


def _verdicts(root: Path) -> dict[str, Any]:
    """The canary's and the control's verdicts from the arm's results.json."""
    p = root / "results.json"
    if not p.is_file():
        return {"canary": None, "beats_control": [], "seed_spread": {}, "scaling": {}}
    res = json.loads(p.read_text(encoding="utf-8"))
    canary = res.get("canary") or {}
    beats = [{"checkpoint": ck, "trait": tr, "eval": ev, "diff": d.get("value"), "ci_low": d.get("ci_low"),
              "ci_high": d.get("ci_high")} for ck, tr, ev, d in beats_control(res)]
    return {"canary": canary.get("training_took"), "beats_control": beats, "seed_spread": res.get("seed_spread") or {},
            "scaling": res.get("scaling") or {}}


def compare_runs(targets: list[Path], reference: str | None = None, out_dir: Path | None = None,
                 resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    roots = expand(targets)
    names = []
    for r in roots:
        n = arm_name(r)
        names.append(n if n not in names else f"{n}#{len(names)}")
    if reference is not None and reference not in names:
        raise InputError(f"--reference {reference!r}: not one of the arms ({', '.join(names)})")
    ref = reference or names[0]
    values = {n: item_values(r) for n, r in zip(names, roots)}
    comparisons: list[dict[str, Any]] = []
    for n in names:
        if n == ref:
            continue
        per_eval: dict[str, tuple[set, set]] = defaultdict(lambda: (set(), set()))
        for (ev, _, _), items in values[n].items():
            per_eval[ev][0].update(items)
        for (ev, _, _), items in values[ref].items():
            per_eval[ev][1].update(items)
        for ev, (a, b) in per_eval.items():
            if a and b and not a & b:
                raise TraitforgeError(f"eval '{ev}': arms '{n}' and '{ref}' evaluated no item in common; "
                                      "build the arms' items once (traitforge run SPEC with variants) to compare them")
        for key in sorted(set(values[n]) & set(values[ref])):
            ev, ck, tr = key
            d = paired(values[n][key], values[ref][key], resamples=resamples, seed=seed)
            if d["n"] == 0:
                continue
            comparisons.append({"arm": n, "reference": ref, "eval": ev, "checkpoint": ck, "trait": tr, **d,
                                "arm_mean": _mean(values[n][key]), "reference_mean": _mean(values[ref][key])})
    for c, p in zip(comparisons, holm([c["p"] for c in comparisons])):
        c["p_holm"] = p
        c["differs"] = p is not None and p < 0.05 and excludes_zero(c)
        c["underpowered"] = not excludes_zero(c) and (c["mde"] is None or abs(c["diff"] or 0) < c["mde"])
    data = {"reference": ref, "arms": {n: {"root": str(r), **_verdicts(r)} for n, r in zip(names, roots)},
            "comparisons": comparisons, "adjustment": ADJUSTMENT, "n_comparisons": len(comparisons),
            "left_out_items": sum(c["left_out"] for c in comparisons)}
    out_dir = out_dir or roots[0]
    write_json_atomic(out_dir / "compare.json", data)
    from traitforge.compare.page import render

    (out_dir / "compare.html").write_text(render(data), encoding="utf-8")
    data["paths"] = {"json": str(out_dir / "compare.json"), "html": str(out_dir / "compare.html")}
    return data


def _mean(d: dict[str, float]) -> float | None:
    return sum(d.values()) / len(d) if d else None
