"""Effectiveness benchmark: does training move the embedded model, and do the traits move it beyond
what any training on as much data does?

Two parts, both printed with 95% CIs and each figure's n and minimum detectable effect (MDE):

1. The canary dose-response (no LLM anywhere): the positive control's templated documents and chats
   alone, trained at three data sizes (x1, x4, x16 documents: 10, 40 and 160) with `--seeds` seeds
   each, then scored by the judge-free canary evals: the knowledge multiple choice on the midtrained
   checkpoints and the contrastive opener preference on the SFT ones. A shift whose CI excludes zero
   shows the training takes; the table shows how it grows with data.
2. The tiny run with its controls (`traitforge run examples/tiny.yaml --preset tiny`, resumed if
   done): the canary first, then the real traits, each checkpoint against base and against the
   `control` arm (trained on as much trait-free data), on the judge-free measures, the project's
   probes and perplexity.

    python bench/effect.py [--seeds 3] [--skip-dose] [--skip-run] [--per-trait]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
JUDGE_FREE = ("knowledge_mc", "contrastive")
FRACTIONS = (1 / 16, 1 / 4)  # with 160 canary documents: 10, 40 (and 160)


def fmt(e: dict | None, pct: bool = True) -> str:
    if not e or e.get("value") is None:
        return "-"
    v, lo, hi = e["value"], e.get("ci_low"), e.get("ci_high")
    scale = 100 if pct else 1
    ci = f" [{lo * scale:+.0f},{hi * scale:+.0f}]" if lo is not None and hi is not None else ""
    return f"{v * scale:.1f}{ci}"


def fmt_diff(e: dict | None, pct: bool = True) -> str:
    if not e or e.get("value") is None:
        return "-"
    scale = 100 if pct else 1
    lo, hi = e.get("ci_low"), e.get("ci_high")
    sig = "*" if lo is not None and (lo > 0 or hi < 0) else " "
    ci = f" [{lo * scale:+.1f},{hi * scale:+.1f}]" if lo is not None else ""
    return f"{e['value'] * scale:+.1f}{ci}{sig}"


# --- part 1: the canary dose-response ---------------------------------------------------------


def dose_response(seeds: int, out_dir: Path) -> dict:
    """Train the canary alone at three data sizes and `seeds` seeds; score the judge-free canary evals."""
    from traitforge.controls.canary import load_canary
    from traitforge.evaluate.common import EvalContext, normalise_checkpoints
    from traitforge.evaluate.items import canary_items
    from traitforge.evaluate.behaviour import run_contrastive
    from traitforge.evaluate.knowledge import run_mc
    from traitforge.evaluate.results import build_results, write_results
    from traitforge.jsonl import write_jsonl
    from traitforge.pipeline import open_run
    from traitforge.train import run_training
    from traitforge.train.run import variant_names

    spec_path = out_dir / "spec.yaml"
    out_dir.mkdir(parents=True, exist_ok=True)
    spec_path.write_text(json.dumps({
        "name": "canary-dose", "traits": str(ROOT / "examples" / "traits.md"), "output_dir": str(out_dir / "run"),
        "controls": {"canary": True, "canary_documents": 160, "canary_chats": 48},
        "training": {"checkpoints": ["base", "midtrain", "sft"], "seeds": seeds, "fractions": list(FRACTIONS),
                     "save_steps": 20, "report_to": [],
                     "midtrain": {"max_steps": 40, "batch_size": 8, "max_length": 64},
                     "sft": {"max_steps": 24, "batch_size": 8, "max_length": 256}},
        "evaluation": {"bootstrap": 1000}}), encoding="utf-8")
    run = open_run(spec_path)
    canary = load_canary(run.traits)
    # The canary alone: its rows are the whole training data (no generator, no judge).
    write_jsonl(run.store.path("curated", "documents.jsonl"), canary.documents(160, run.spec.seed))
    write_jsonl(run.store.path("curated", "chats.jsonl"), canary.chats(48))
    t0 = time.perf_counter()
    run_training(run, run.spec.training)
    train_s = time.perf_counter() - t0
    names = ["base"] + variant_names(run.spec.training, ["midtrain", "sft"])
    cks = {n: (run.spec.models.base if n == "base" else str(run.store.root / "checkpoints" / n)) for n in names}
    ctx = EvalContext(run, run.spec.evaluation, None, None, normalise_checkpoints(cks))  # type: ignore[arg-type]

    async def score() -> None:
        items = canary_items(ctx)
        await run_mc(ctx, [i for i in items if i.kind == "mc"])
        await run_contrastive(ctx, [i for i in items if i.kind == "behaviour"])

    t0 = time.perf_counter()
    asyncio.run(score())
    eval_s = time.perf_counter() - t0
    results = build_results(run.store, run.traits, names, seed=run.spec.seed)
    write_results(run.store, results)
    results["bench_seconds"] = {"train": round(train_s), "evaluate": round(eval_s)}
    return results


def print_dose(results: dict, seeds: int) -> None:
    print("\n== 1. canary dose-response (templated canary data only; no LLM)")
    print(f"   training {results['bench_seconds']['train']} s, scoring {results['bench_seconds']['evaluate']} s; "
          "values in %, 95% CI in brackets, * = CI of the shift excludes 0")
    base = results["results"]["base"]["canary"]
    print(f"   base: knowledge MC {fmt(base.get('knowledge_mc'))} (n={base['knowledge_mc']['n']}), "
          f"contrastive {fmt(base.get('contrastive'))} (n={base['contrastive']['n']})")
    for ck, ev in (("midtrain", "knowledge_mc"), ("sft", "contrastive")):
        print(f"\n   {ck} -> canary {ev}: shift vs base (paired), per data size and seed")
        print(f"   {'data':<16}" + "".join(f"{'seed ' + str(s):>24}" for s in range(seeds)) + f"{'mean (sd) over seeds':>24}")
        for frac in (*FRACTIONS, 1.0):
            suffix = "" if frac == 1.0 else f".f{frac:g}"
            size = "x16 (160 docs)" if frac == 1 else f"x{round(frac * 16)} ({round(160 * frac)} docs)"
            if ck == "sft":
                size = f"{round(48 * frac)} chats" if frac < 1 else "48 chats"
            names = [ck + suffix] if frac < 1 else [ck] + [f"{ck}.s{k}" for k in range(1, seeds)]
            diffs = [results["paired_vs_base"].get(n, {}).get("canary", {}).get(ev) for n in names]
            vals = [d["value"] for d in diffs if d and d.get("value") is not None]
            spread = ""
            if len(vals) > 1:
                import statistics
                spread = f"{100 * statistics.mean(vals):+.1f} ({100 * statistics.stdev(vals):.1f})"
            print(f"   {size:<16}" + "".join(f"{fmt_diff(d):>24}" for d in diffs)
                  + " " * 24 * (seeds - len(diffs)) + f"{spread:>24}")
    verdicts = {ck: c["verdict"] for ck, c in (results.get("canary") or {}).get("checks", {}).items()}
    print(f"\n   canary verdicts: {verdicts}")


# --- part 2: the tiny run with its controls ---------------------------------------------------


def cell(e: dict | None) -> str:
    """value [CI] n=.. mde=.. (points)"""
    if not e:
        return "-"
    mde = f"{100 * e['mde']:.0f}" if e.get("mde") else "-"
    return f"{fmt(e)} n={e.get('n')} mde={mde}"


def print_run(results: dict, per_trait: bool) -> None:
    cks = results["checkpoints"]
    print(f"\n== 2. tiny run: {results['run']}   checkpoints: {', '.join(cks)}")
    canary = results.get("canary") or {}
    if canary:
        rows = canary.get("rows", {})
        print("   canary rows made -> reached training: " + ", ".join(
            f"{k} {v['made']} -> {v['reached_training']}" for k, v in rows.items()))
        for ck, c in canary.get("checks", {}).items():
            print(f"   canary {ck:<14} {c['eval']:<13} {fmt(c.get('value'))}  vs base {fmt_diff(c.get('vs_base'))}"
                  f"  -> {c['verdict']}: {c['message']}")
    evals = [e for e in JUDGE_FREE if e in results["evals"]]
    evals += sorted(e for e in results["evals"] if e.startswith("probe:"))
    scopes = (["canary"] if canary else []) + ["all"] + ([t["id"] for t in results["traits"]] if per_trait else [])
    for scope in scopes:
        print(f"\n   scope: {scope}")
        header = f"   {'measure':<34}" + "".join(f"{ck:>26}" for ck in cks)
        print(header)
        for ev in evals:
            row = [results["results"].get(ck, {}).get(scope, {}).get(ev) for ck in cks]
            if not any(row):
                continue
            print(f"   {results['evals'][ev]['label'][:33]:<34}" + "".join(f"{cell(e):>26}" for e in row))
            for label, table in (("  vs base (paired)", "paired_vs_base"), ("  vs control (paired)", "paired_vs_control")):
                diffs = [results.get(table, {}).get(ck, {}).get(scope, {}).get(ev) for ck in cks]
                if any(diffs):
                    print(f"   {label:<34}" + "".join(f"{fmt_diff(d):>26}" for d in diffs))
    ppl = {ck: results["results"].get(ck, {}).get("all", {}).get("perplexity") for ck in cks}
    if any(ppl.values()):
        print("\n   perplexity (tokens scored): " + ", ".join(
            f"{ck} {fmt(e, pct=False)} ({e.get('n')})" for ck, e in ppl.items() if e))
    power = results.get("power") or {}
    if power:
        print(f"\n   power: a share needs n >= {power['items_needed']} for an MDE of {100 * power['target_mde']:.0f} points; "
              f"{len(power['underpowered'])} figures fall short")


def vector_table(results: dict) -> str:
    """Projection shift on each trait vector per checkpoint (paired, vs base and vs control), the
    vectors' held-out separation and steering check, and the shift's correlation with the other
    judge-free measures (evaluate/vectors.py)."""
    v = results.get("vectors")
    if not v:
        return "\ntrait vectors: not in results.json (evaluation.vectors off)"
    if not v.get("available"):
        return f"\ntrait vectors: n/a ({v.get('reason')})"

    def f(e: dict | None) -> str:
        if not e or e.get("value") is None:
            return "-"
        ci = f" [{e['ci_low']:+.3f}, {e['ci_high']:+.3f}]" if e.get("ci_low") is not None else ""
        return f"{e['value']:+.3f}{ci}"

    lines = ["", "trait vectors: projection shift of each checkpoint's own replies (paired over the behaviour prompts)"]
    cks = [c for c in results["checkpoints"] if c != "base"]
    lines.append(f"{'trait':<26}{'layer':>6}{'d (rand max)':>16}{'steers':>8}" + "".join(f"{c:>30}" for c in cks))
    for tid, t in v.get("traits", {}).items():
        sep, rnd, st = t.get("separation") or {}, t.get("random") or {}, t.get("steering") or {}
        d = f"{sep.get('d') or 0:.2f} ({rnd.get('d_max') or 0:.2f})"
        steers = {True: "yes", False: "NO"}.get(st.get("reliable"), "-")
        row = f"{tid[:25]:<26}{t.get('layer'):>6}{d:>16}{steers:>8}"
        row += "".join(f"{f(v.get('shift_vs_base', {}).get(c, {}).get(tid)):>30}" for c in cks)
        lines.append(row)
        if v.get("shift_vs_control"):
            lines.append(f"{'   vs control':<56}" + "".join(
                f"{f(v['shift_vs_control'].get(c, {}).get(tid)):>30}" for c in cks))
    for ev, c in (v.get("correlation") or {}).items():
        lines.append(f"correlation of the shift with the change in {ev}: "
                     + (f"r={c['r']:+.2f} over {c['n']} cells" if c.get("r") is not None else f"- ({c.get('reason')})"))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--spec", default=str(ROOT / "examples" / "tiny.yaml"))
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--seeds", type=int, default=3, help="training seeds per data size in the dose-response")
    ap.add_argument("--dose-dir", default=str(ROOT / "runs" / "bench-canary"))
    ap.add_argument("--skip-dose", action="store_true")
    ap.add_argument("--skip-run", action="store_true")
    ap.add_argument("--per-trait", action="store_true")
    args = ap.parse_args()

    if not args.skip_dose:
        print_dose(dose_response(args.seeds, Path(args.dose_dir)), args.seeds)
    if not args.skip_run:
        from traitforge.pipeline import open_run, run_all

        t0 = time.perf_counter()
        run = open_run(args.spec, args.preset)
        run_all(run, log=lambda m: print(m, file=sys.stderr))
        results = json.loads((run.store.root / "results.json").read_text(encoding="utf-8"))
        print(f"\n(tiny run: {(time.perf_counter() - t0) / 60:.1f} min this invocation; finished stages are skipped)")
        print_run(results, args.per_trait)
        print(vector_table(results))


if __name__ == "__main__":
    main()
