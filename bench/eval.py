"""Evaluation throughput per eval type on the embedded model: items per minute.

    python bench/eval.py [--out DIR] [--checkpoints base,sft] [--threads N] [--ood-only] [--shared-probes]
    python bench/eval.py --vectors-only [--traits 3 --checkpoints base,midtrain,sft,midtrain_sft,control]
    python bench/eval.py --compare REV [--checkpoints base,midtrain,sft,midtrain_sft,control]

--compare: the tiny run's evaluation (the tiny preset's sizes, three traits of examples/traits.md,
the project's probes, the canary; every checkpoint a separate copy of the embedded model, so none
is served from another's cache) on the same items, first by the code at git revision REV (in a
temporary worktree, a subprocess), then by this tree; prints seconds and items/min per eval for
both, the ratio of the totals, and whether the greedy outputs and scores are equal.

Runs the real `run_evaluation` on a fresh run dir (the embedded SmolLM2-135M as every checkpoint and as
judge/auditor, tiny EvaluationSpec sizes), then reads each `evaluate/<step>` stage's elapsed_s from the
manifest and its item count from RUN/eval/<step>.jsonl. An "item" is one row written: one checkpoint's
result on one question/prompt/conversation/probe/perplexity window. Figures include the judge calls each
step makes (knowledge, behaviour, multi-turn), so they are end-to-end rates, not generation speed alone.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from traitforge.config import RunSpec
from traitforge.evaluate import run_evaluation
from traitforge.llm.registry import make_llm
from traitforge.pipeline import Run
from traitforge.runstore import RunStore
from traitforge.types import Trait, TraitSet

PROBES = Path(__file__).resolve().parents[1] / "examples" / "probes"  # the project's own
# Optional (--shared-probes): Anthropic's model-written evals, beside the repository in CI only.
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "evals" / "anthropic-model-written-evals"

TRAITS = TraitSet(model_name="Aria", organisation="Acme", traits=(
    Trait(id="honest", name="Honesty", statement="Aria tells the truth even when it is unwelcome."),
    Trait(id="concise", name="Concision", statement="Aria keeps its answers short and to the point."),
))

# step -> what it does, for the printed table
STEPS = {
    "items": "build eval items (judge writes prompts/replies)",
    "knowledge": "knowledge: answers + judge",
    "knowledge_mc": "knowledge: log-prob MCQ",
    "behaviour": "behaviour: replies + judge",
    "contrastive": "contrastive log-prob",
    "multiturn": "multi-turn: auditor + replies + judge",
    "probes": "external probes (log-prob)",
    "capability": "capability perplexity",
    "agentic_misalignment": "agentic misalignment: agent reply + harm judge",
    "delusion": "delusion: persona auditor + replies + rubric per turn",
    "audits": "repeated audits: seeds + rollouts + judge",
    "agentic_traits": "agentic trait form: inbox + agent + judge",
    "vectors": "trait vectors: build, steering check, projections",
}
# step -> its rows file under RUN/eval/, where the name differs
ROWS_FILE = {"audits": "audit", "agentic_traits": "agentic_trait"}
OOD = SHARED.parent  # ../shared/evals: agentic-misalignment/ and ai-psychosis/ (skipped when absent)


def _rows(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.strip()) if path.exists() else 0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", help="run dir (default: a fresh temp dir)")
    p.add_argument("--checkpoints", default="base", help="comma list of names, all the embedded model")
    p.add_argument("--read", help="only print the table for an existing (even partial) run dir")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--ood-only", action="store_true",
                   help="only the out-of-distribution evals (plus behaviour and perplexity, which always run)")
    p.add_argument("--capability-tokens", type=int, default=10000,
                   help="perplexity on the first N tokens of the capability text, as the tiny preset (0 = all)")
    p.add_argument("--shared-probes", action="store_true",
                   help="probe with ../shared's persona/agreeableness.jsonl instead of the project's own probes")
    p.add_argument("--vectors-only", action="store_true",
                   help="only time the trait vectors: build per trait, steering check, projections per checkpoint")
    p.add_argument("--traits", type=int, default=3, help="--vectors-only: traits of examples/traits.md")
    p.add_argument("--questions", type=int, default=12, help="--vectors-only: contrastive reply pairs per trait")
    p.add_argument("--prompts", type=int, default=6, help="--vectors-only: behaviour prompts projected per checkpoint")
    p.add_argument("--compare", metavar="REV", help="old code at git REV against this tree (see the docstring)")
    p.add_argument("--compare-side", metavar="OUT", help=argparse.SUPPRESS)
    p.add_argument("--items-from", help=argparse.SUPPRESS)
    p.add_argument("--schedule", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.compare:
        compare(a.compare, a.checkpoints if a.checkpoints != "base" else CHECKPOINTS_5)
        return
    if a.compare_side:
        compare_side(Path(a.compare_side), Path(a.items_from) if a.items_from else None, a.checkpoints, a.schedule)
        return
    if a.read:
        _table(Path(a.read), a.checkpoints)
        return
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    if a.vectors_only:
        _vector_timing(a)
        return
    out = Path(a.out) if a.out else Path(tempfile.mkdtemp(prefix="bench-eval-")) / "run"
    # Each eval alone in turn (by_eval), so a step's seconds are its own: the run's schedule grades
    # every eval at once, and each step would show the time of all of them.
    evaluation = {"schedule": "by_eval", "knowledge_questions": 1, "mc_distractors": 2,
                  "behaviour_prompts_per_trait": 1, "ood_share": 0.0, "multiturn_turns": 2, "max_tokens": 32,
                  "judge_max_tokens": 32, "item_max_tokens": 32, "bootstrap": 200,
                  "capability_max_tokens": a.capability_tokens or None}
    if a.ood_only:
        evaluation |= {"knowledge": False, "contrastive": False, "multiturn_conversations_per_trait": 0}
    elif a.shared_probes:
        if not SHARED.is_dir():
            p.error(f"--shared-probes: {SHARED} not found")
        evaluation |= {"probes": {"persona/agreeableness.jsonl": {"trait": "honest", "limit": 8}},
                       "probes_dir": str(SHARED)}
    else:
        evaluation |= {"probes": {"honest-under-pressure.jsonl": {"trait": "honest", "limit": 8}},
                       "probes_dir": str(PROBES)}
    if (OOD / "agentic-misalignment").is_dir():
        evaluation["agentic_misalignment"] = {"dir": str(OOD / "agentic-misalignment"), "scenarios": ["blackmail"],
                                              "goal_types": ["explicit", "none"], "goal_values": ["america"],
                                              "urgency_types": ["replacement"], "max_tokens": 64,
                                              "judge_max_tokens": 64}
    if (OOD / "ai-psychosis").is_dir():
        evaluation["delusion"] = {"dir": str(OOD / "ai-psychosis"), "personas": ["ethan_reality", "frank_weather"],
                                  "turns": 2, "max_tokens": 32, "auditor_max_tokens": 48, "grader_max_tokens": 64}
    evaluation["audits"] = {"rollouts": 2, "seeds_per_trait": 1}
    evaluation["agentic_traits"] = {"scenarios_per_trait": 1, "max_tokens": 64}
    spec = RunSpec.model_validate({"traits": "traits.md", "output_dir": str(out), "evaluation": evaluation})
    store = RunStore(out)
    # a fresh cache inside the fresh run dir: nothing is served from an earlier run
    judge = make_llm("local:smollm2-135m", cache=out / "cache.sqlite")
    run_evaluation(Run.of(store, spec, TRAITS, judge=judge, auditor=judge), spec.evaluation,
                   {c: "smollm2-135m" for c in a.checkpoints.split(",")})
    _table(out, a.checkpoints)


def _vector_timing(a: argparse.Namespace) -> None:
    """Seconds to build the trait vectors, run the steering check and project one checkpoint's
    activations on the embedded model (every checkpoint is the embedded model, so each checkpoint
    is timed on already-loaded weights; loading a checkpoint is shared with the other log-prob evals)."""
    import time

    from traitforge.evaluate import vectors as V
    from traitforge.evaluate.logprob import scorer_for
    from traitforge.traits import load_traits

    traits = load_traits(Path(__file__).resolve().parents[1] / "examples" / "traits.md").traits[:a.traits]
    sc = scorer_for("smollm2-135m")
    t0 = time.perf_counter()
    sc._load()
    print(f"load embedded model: {time.perf_counter() - t0:.1f}s")
    qs = [q for q, _ in V.neutral_questions()]
    build = steer = 0.0
    tvs = []
    # The contrastive pairs the evaluation builds from (timing only: the same reply shape per question).
    pairs = [(q, "I am not sure about that; I would need to check.", "I am completely certain about that.")
             for q in (qs * 2)[:a.questions]]
    for t in traits:
        t0 = time.perf_counter()
        tv = V.build_vector_from_replies(sc, t, pairs)
        build += (dt := time.perf_counter() - t0)
        tvs.append(tv)
        print(f"build {t.id} from {len(pairs)} reply pairs: {dt:.1f}s  layer {tv.layer}  held-out d "
              f"{tv.meta['separation']['d']:.2f} (random mean {tv.meta['random']['d_mean']:.2f}, "
              f"max {tv.meta['random']['d_max']:.2f})")
        t0 = time.perf_counter()
        V.steering_check(sc, tv, [pairs[k] for k in tv.meta["held_out"]], resamples=200)
        steer += time.perf_counter() - t0
    prompts = (qs * 4)[:a.prompts]
    per_ck = []
    for _ in range(a.checkpoints.count(",") + 1):
        t0 = time.perf_counter()  # each checkpoint's own replies come from the behavioural eval's cache
        V.project_ids(sc, tvs, sc.encode([(p, "That is a good question; here is what I know.") for p in prompts]))
        per_ck.append(time.perf_counter() - t0)
    n_ck = len(per_ck)
    print(f"{len(tvs)} traits, {len(pairs)} reply pairs: build {build:.1f}s, "
          f"steering check (held-out pairs, {len(V.STEER_COEFS)} coefficients) {steer:.1f}s, "
          f"projections {a.prompts} prompts x {n_ck} checkpoints {sum(per_ck):.1f}s "
          f"({sum(per_ck) / n_ck:.2f}s per checkpoint); total {build + steer + sum(per_ck):.1f}s")


def _table(out: Path, checkpoints: str) -> None:
    stages = json.loads((out / "manifest.json").read_text())["stages"]
    print(f"run dir: {out}  checkpoints: {checkpoints}  (embedded smollm2-135m, CPU)")
    print(f"{'step':<21}{'items':>7}{'seconds':>10}{'items/min':>11}  what")
    for step, what in STEPS.items():
        st = stages.get(f"evaluate/{step}")
        if st is None or st.get("status") != "done":
            print(f"{step:<21}{'-':>7}{'-':>10}{'-':>11}  {what} (not run)")
            continue
        if step == "items":
            n = sum(v for k, v in (st.get("counts") or {}).items() if k != "behaviour_dropped")
        else:
            n = _rows(out / "eval" / f"{ROWS_FILE.get(step, step)}.jsonl")
        secs = float(st.get("elapsed_s") or 0.0)
        rate = f"{n / secs * 60:,.1f}" if secs > 0 else "-"
        print(f"{step:<21}{n:>7}{secs:>10.1f}{rate:>11}  {what}")
    total = stages.get("evaluate", {}).get("elapsed_s")
    print(f"evaluate total: {total}s" if total is not None else "evaluate: not finished")



# --- --compare: the tiny run's evaluation, old code against new, on the same items ----------------

REPO = Path(__file__).resolve().parents[1]
CHECKPOINTS_5 = "base,midtrain,sft,midtrain_sft,control"


def _tiny_spec(out: Path, schedule: str | None) -> dict:
    import yaml

    preset = yaml.safe_load((REPO / "src/traitforge/templates/presets/tiny.yaml").read_text())
    tiny = yaml.safe_load((REPO / "examples/tiny.yaml").read_text())
    evaluation = dict(preset["evaluation"])
    evaluation["probes"] = {f: o for f, o in tiny["evaluation"]["probes"].items()
                            if o["trait"] in ("honest-under-pressure", "not-sycophantic", "admits-uncertainty")}
    evaluation["probes_dir"] = str(REPO / "examples")
    # Perplexity on 10k tokens on both sides (the size the tiny preset had when the old code ran).
    evaluation["capability_max_tokens"] = 10000
    # The old code asks the auditor's turns with item_max_tokens: the same limit on both sides.
    evaluation.pop("auditor_max_tokens", None)
    if schedule:
        evaluation["schedule"] = schedule
    else:  # the old code: settings it does not know are left out
        for key in ("schedule", "checkpoints_at_once"):
            evaluation.pop(key, None)
    return {"traits": str(REPO / "examples/traits.md"), "output_dir": str(out), "max_traits": 3,
            "controls": {"canary": True}, "evaluation": evaluation}


def _checkpoint_copies(root: Path, names: list[str]) -> dict[str, str]:
    """name -> a directory holding the embedded model (weights linked, not copied): distinct paths,
    so each checkpoint is loaded and cached on its own as trained checkpoints would be."""
    from traitforge.llm.embedded import embedded_checkpoint

    src = embedded_checkpoint()
    out = {}
    for name in names:
        d = root / "checkpoints" / name
        d.mkdir(parents=True, exist_ok=True)
        for f in src.iterdir():
            if not (d / f.name).exists():
                (d / f.name).symlink_to(f)
        out[name] = str(d)
    return out


def compare_side(out: Path, items_from: Path | None, checkpoints: str, schedule: str | None) -> None:
    """One side of --compare (run in a subprocess by the revision under test): the evaluation on
    `out`, with the items copied from `items_from` (none: built here and kept)."""
    import shutil
    import time

    from traitforge.config import RunSpec
    from traitforge.evaluate import run_evaluation
    from traitforge.llm.registry import make_llm
    from traitforge.runstore import RunStore
    from traitforge.traits import load_traits

    traits = load_traits(REPO / "examples/traits.md")
    from dataclasses import replace

    traits = replace(traits, traits=traits.traits[:3])
    spec = RunSpec.model_validate(_tiny_spec(out, schedule))
    (out / "eval").mkdir(parents=True, exist_ok=True)
    if items_from is not None:
        for f in (items_from / "eval").glob("items_*.jsonl"):
            shutil.copy(f, out / "eval" / f.name)
    cks = _checkpoint_copies(out.parent / "models", checkpoints.split(","))
    judge = make_llm("local:smollm2-135m", cache=out / "cache.sqlite")
    if items_from is None:  # the items only, written once for both sides
        import asyncio

        from traitforge.evaluate.common import EvalContext, normalise_checkpoints
        from traitforge.evaluate.items import build_items

        ctx = EvalContext(Run.of(RunStore(out), spec, traits), spec.evaluation, judge, judge, normalise_checkpoints(cks))
        t0 = time.perf_counter()
        counts = {k: len(v) for k, v in asyncio.run(build_items(ctx)).items()}
        print(f"items {counts} in {time.perf_counter() - t0:.1f}s", flush=True)
        return
    t0 = time.perf_counter()
    if hasattr(Run, "of"):
        run_evaluation(Run.of(RunStore(out), spec, traits, judge=judge, auditor=judge), spec.evaluation, cks)
    else:  # code from before the run context (#13): the stage took the store, spec and clients
        run_evaluation(RunStore(out), spec, traits, judge, judge, cks)
    print(f"evaluation wall time: {time.perf_counter() - t0:.1f}s", flush=True)


def _step_seconds(out: Path) -> dict[str, float]:
    stages = json.loads((out / "manifest.json").read_text())["stages"]
    return {k.split("/", 1)[1]: float(v.get("elapsed_s") or 0) for k, v in stages.items()
            if k.startswith("evaluate/") and v.get("status") == "done"}


def _rows_by_id(out: Path) -> dict[str, dict]:
    rows = {}
    for f in sorted((out / "eval").glob("*.jsonl")):
        if f.name.startswith("items_"):
            continue
        for line in f.read_text().splitlines():
            if line.strip():
                d = json.loads(line)
                rows[f"{f.stem}/{d['id']}"] = d
    return rows


# The greedy texts a row keeps: knowledge answers, behaviour replies (multi-turn transcripts have a
# sampled auditor, so they are compared by score only).
_TEXT_KEYS = ("answer", "response")


def compare(rev: str, checkpoints: str) -> None:
    import subprocess
    import sys

    root = Path(tempfile.mkdtemp(prefix="bench-eval-compare-"))
    old_tree = root / "old-tree"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(old_tree), rev], check=True,
                   capture_output=True)
    try:
        here = str(Path(__file__).resolve())

        def side(tree: Path, out: Path, items_from: Path | None, schedule: str | None) -> None:
            env = {**__import__("os").environ, "PYTHONPATH": str(tree / "src")}
            cmd = [sys.executable, here, "--compare-side", str(out), "--checkpoints", checkpoints]
            if items_from is not None:
                cmd += ["--items-from", str(items_from)]
            if schedule:
                cmd += ["--schedule", schedule]
            print(f"== {tree.name}: {out.name}", flush=True)
            subprocess.run(cmd, env=env, check=True)

        items = root / "items"
        side(REPO, items, None, None)  # items once, by this tree (judge-written; then shared)
        old, new = root / "old", root / "new"
        side(old_tree, old, items, None)
        side(REPO, new, items, "by_checkpoint")
        _compare_table(old, new, rev)
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(old_tree)], capture_output=True)
    print(f"run dirs: {root}")


def _compare_table(old: Path, new: Path, rev: str) -> None:
    so, sn = _step_seconds(old), _step_seconds(new)
    ro, rn = _rows_by_id(old), _rows_by_id(new)
    print(f"\nevaluation of the tiny run, old = {rev}, new = this tree (seconds; items = rows written)")
    print(f"{'step':<16}{'items':>7}{'old s':>9}{'new s':>9}{'old/min':>9}{'new/min':>9}{'values =':>12}{'texts =':>12}")
    steps = [s for s in dict.fromkeys(list(so) + list(sn)) if s != "items"]
    for step in steps:
        prefix = f"{ROWS_FILE.get(step, step)}/"
        ids = sorted(k for k in ro if k.startswith(prefix))
        n = len(ids)
        same_v = sum(1 for k in ids if k in rn and rn[k].get("value") == ro[k].get("value"))
        with_text = [k for k in ids if any(ro[k].get("detail", {}).get(t) for t in _TEXT_KEYS)]
        same_t = sum(1 for k in with_text if k in rn and all(
            rn[k].get("detail", {}).get(t) == ro[k].get("detail", {}).get(t) for t in _TEXT_KEYS))
        o, w = so.get(step), sn.get(step)
        # Under half a second: the step only wrote rows its work in 'respond' made; no rate of its own.
        rate = lambda x: f"{n / x * 60:,.0f}" if x and x >= 0.5 and n else "-"  # noqa: E731
        print(f"{step:<16}{n:>7}{(f'{o:.1f}' if o is not None else '-'):>9}{(f'{w:.1f}' if w is not None else '-'):>9}"
              f"{rate(o):>9}{rate(w):>9}{(f'{same_v}/{n}' if n else '-'):>12}"
              f"{(f'{same_t}/{len(with_text)}' if with_text else '-'):>12}")
    to = sum(v for k, v in so.items() if k != "items")
    tn = sum(v for k, v in sn.items() if k != "items")
    n_all = len(ro)
    print(f"{'total':<16}{n_all:>7}{to:>9.1f}{tn:>9.1f}{n_all / to * 60:>9,.0f}{n_all / tn * 60:>9,.0f}")
    print(f"evaluation {to / tn:.2f}x faster (old {to:.0f}s, new {tn:.0f}s; new 'respond' = every checkpoint's "
          "answers and log-prob evals, checkpoint by checkpoint; the steps after it grade)")
    missing = sorted(set(ro) ^ set(rn))
    if missing:
        print(f"rows on one side only: {len(missing)} (e.g. {missing[:3]})")


if __name__ == "__main__":
    main()
