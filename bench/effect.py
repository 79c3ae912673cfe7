"""Effectiveness benchmark: what the tiny run does to the embedded model.

Runs (or resumes) `traitforge run examples/tiny.yaml --preset tiny`, then prints, from base to each
checkpoint, the judge-free measures with 95% CIs: (a) the log-prob knowledge multiple choice,
(b) the contrastive behaviour probe, (c) the external model-written-eval probes mapped to the
example traits, and the capability cost (perplexity on held-out text). Paired differences vs base
are on the same items. The figures are what they are: nothing here asserts that they rise.

    python bench/effect.py [--spec examples/tiny.yaml] [--preset tiny] [--per-trait]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
JUDGE_FREE = ("knowledge_mc", "contrastive")


def fmt(e: dict | None, pct: bool) -> str:
    if not e or e.get("value") is None:
        return "-"
    v, lo, hi = e["value"], e.get("ci_low"), e.get("ci_high")
    scale = 100 if pct else 1
    ci = f" [{lo * scale:.1f}, {hi * scale:.1f}]" if lo is not None and hi is not None else ""
    return f"{v * scale:.1f}{ci} n={e.get('n', 0)}"


def table(results: dict, per_trait: bool) -> str:
    cks = results["checkpoints"]
    evals = [e for e in JUDGE_FREE if e in results["evals"]]
    evals += sorted(e for e in results["evals"] if e.startswith("probe:"))
    evals += ["perplexity"] if "perplexity" in results["evals"] else []
    scopes = ["all"] + ([t["id"] for t in results["traits"]] if per_trait else [])
    lines = []
    header = f"{'measure':<46}" + "".join(f"{ck:>30}" for ck in cks)
    for scope in scopes:
        lines += ["", f"scope: {scope}", header, "-" * len(header)]
        for ev in evals:
            pct = results["evals"][ev]["kind"] != "ppl"
            row = f"{results['evals'][ev]['label'][:45]:<46}"
            row += "".join(f"{fmt(results['results'].get(ck, {}).get(scope, {}).get(ev), pct):>30}" for ck in cks)
            lines.append(row)
            diffs = [results["paired_vs_base"].get(ck, {}).get(scope, {}).get(ev) for ck in cks]
            if any(diffs):
                drow = f"{'   change vs base (paired)':<46}"
                drow += "".join(f"{fmt(d, pct) if d else '':>30}" for d in diffs)
                lines.append(drow)
    return "\n".join(lines)


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

    lines = ["", "trait vectors: projection shift at the last prompt token (paired over the behaviour prompts)"]
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
    ap.add_argument("--per-trait", action="store_true")
    args = ap.parse_args()

    from traitforge.pipeline import open_run, run_all

    t0 = time.perf_counter()
    run = open_run(args.spec, args.preset)
    run_all(run, log=lambda m: print(m, file=sys.stderr))
    elapsed = time.perf_counter() - t0
    results = json.loads((run.store.root / "results.json").read_text(encoding="utf-8"))
    print(f"run: {run.store.root}   wall time this invocation: {elapsed / 60:.1f} min "
          "(stages already done are skipped)")
    totals: dict[str, float] = {}
    for k, v in results["stages"].items():
        if v.get("elapsed_s") is not None and "/" not in k and k not in ("curate", "evaluate"):
            group = k.split(".")[0]  # documents.claims -> documents; curate.dedup -> curate
            totals[group] = totals.get(group, 0.0) + v["elapsed_s"]
    print("stage times as recorded by the run (s): " + ", ".join(f"{k}={t:.0f}" for k, t in totals.items()))
    print("values in % (perplexity as is), 95% CI in brackets, n = items scored")
    print(table(results, args.per_trait))
    print(vector_table(results))


if __name__ == "__main__":
    main()
