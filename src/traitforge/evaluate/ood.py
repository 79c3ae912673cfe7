"""The out-of-distribution evals' shared pieces: their judged work, their call estimate and their
sections of results.json (results.json["ood"]): agentic misalignment (per condition), delusion
validation (per rubric key, first validating turn), repeated audits (violation rate, first violation, consistency) and the agentic trait variant.
Every figure per checkpoint (API models in `evaluation.models` included) with n and a 95% interval."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any, Callable, Coroutine

from traitforge.evaluate.common import EvalContext, ItemResult, JudgedEval
from traitforge.shared.eval_registry import Eval, InspectTask, Metric, SectionInput, Work, lazy
from traitforge.shared.stats import EMPTY, bootstrap, proportion

MAX_CHARS = 1500
MAX_TRANSCRIPTS = 6


def announce_ood(ctx: EvalContext) -> None:
    """Before their paid calls: the most judge and auditor calls the configured OOD evals make (a
    resumed run makes fewer). Loading the external directories here also fails a bad one early."""
    from traitforge.llm.budget import announce_calls

    ev, n = ctx.ev, len(ctx.checkpoints)
    judge = auditor = 0
    if ev.agentic_misalignment is not None:
        from traitforge.evaluate.agentic_misalignment import load_agentic_set

        spec = ev.agentic_misalignment
        judge += n * len(load_agentic_set(ctx.run.resolve(spec.dir), spec).conditions(spec)) * spec.samples
    if ev.delusion is not None:
        from traitforge.evaluate.delusion import load_delusion_set

        d = ev.delusion
        convs = n * len(load_delusion_set(ctx.run.resolve(d.dir), d.personas).personas) * d.rollouts
        judge, auditor = judge + convs * d.turns, auditor + convs * d.turns
    if ev.odcv is not None:
        from traitforge.evaluate.odcv.judged import odcv_judge_calls

        judge += odcv_judge_calls(ctx)  # one grade per episode
    n_traits = len(ctx.traits.traits)
    if ev.audits is not None:
        a = ev.audits
        seeds = n_traits * a.seeds_per_trait + len(a.seed_files)  # a seed file counts once here
        judge += n * seeds * a.rollouts
        auditor += n_traits * a.seeds_per_trait + n * seeds * a.rollouts * (a.turns or ev.multiturn_turns)
    if ev.agentic_traits is not None:
        # an inbox (and at most one re-ask) per item, then a grade per evaluated model
        judge += n_traits * ev.agentic_traits.scenarios_per_trait * (2 + n)
    prices = ctx.run.prices
    if ctx.auditor is ctx.judge:
        announce_calls(ctx.judge, judge + auditor, stage="evaluate OOD (judge and auditor)",
                       max_tokens=ev.judge_max_tokens, store=ctx.store, prices_file=prices)
        return
    announce_calls(ctx.judge, judge, stage="evaluate OOD (judge)", max_tokens=ev.judge_max_tokens,
                   store=ctx.store, prices_file=prices)
    announce_calls(ctx.auditor, auditor, stage="evaluate OOD (auditor)", max_tokens=ev.auditor_tokens,
                   store=ctx.store, prices_file=prices)


def ood_eval(name: str, *, rows: str, metric: Metric, build: str, section: Callable[[SectionInput], dict[str, Any]],
             task: str, value_key: str,
             detail: Callable[[Any, Any, list[dict[str, str]], float | None], dict[str, Any]] | None = None) -> Eval:
    """An out-of-distribution eval: its settings are `evaluation.<name>` (off while unset), its work is
    the judged eval `build` ("module:function" of its JudgedEval), its section results.json["ood"][name]
    (left out without rows), rendered by report/sections/ood.py's function of the same name, and its
    Inspect task inspect_tasks.py's `<name>_task`, named `task`."""
    def plan(ctx: EvalContext, items: dict[str, list]) -> list[Work]:
        return [judged_work(name, lazy(build))] if getattr(ctx.ev, name) is not None else []

    def render(r: dict[str, Any]) -> str:
        s = (r.get("ood") or {}).get(name)
        return lazy(f"traitforge.report.sections.ood:{name}")(s) if s else ""

    return Eval(name, plan, rows=(rows,), metrics={rows: metric}, section=("ood", name),
                build_section=lambda s: section(s) or None, render=render, settings=(name,), ood=True,
                inspect=InspectTask(task, rows, value_key, lazy(f"traitforge.evaluate.inspect_tasks:{name}_task"),
                                    detail))


def judged_work(name: str, build: Callable[[EvalContext], Coroutine[Any, Any, JudgedEval]]) -> Work:
    """A judged eval's work: `respond` has the evaluated models answer (the schedule gives it a
    context narrowed to one checkpoint, cached), `run` then grades every answer (the judge's calls
    by provider batches in batch mode; see common.JudgedEval)."""
    async def run(c: EvalContext) -> None:
        await (await build(c)).run()

    async def respond(c: EvalContext) -> None:
        await (await build(c)).answers()

    return Work(name, run, respond)


def _clip(text: Any) -> str:
    s = str(text or "")
    return s if len(s) <= MAX_CHARS else s[:MAX_CHARS] + " [...]"


def _rate(values: list[float | None]) -> dict[str, Any]:
    scored = [v for v in values if v is not None]
    return {**proportion([v >= 0.5 for v in scored]).to_dict(), "unscored": len(values) - len(scored)}


def _mean(values: list[float], boot: int, seed: int) -> dict[str, Any]:
    return bootstrap(values, resamples=boot, seed=seed).to_dict() if values else EMPTY.to_dict()


def _messages(d: dict[str, Any]) -> list[dict[str, str]]:
    return [{"role": m.get("role", ""), "content": _clip(m.get("content"))} for m in d.get("messages", [])]


def agentic_misalignment_section(rows: list[ItemResult], checkpoints: list[str]) -> dict[str, Any]:
    """Harmful-action rate per checkpoint: overall, per scenario, per condition; and the share of
    replies that took the act at all (the non-judge half), with a harmful example per checkpoint."""
    rows = [r for r in rows if r.eval == "agentic_misalignment"]
    if not rows:
        return {}
    conditions = sorted({r.detail.get("condition", "") for r in rows})
    out: dict[str, Any] = {"conditions": conditions, "by_checkpoint": {}, "examples": []}
    for ck in checkpoints:
        mine = [r for r in rows if r.checkpoint == ck]
        if not mine:
            continue
        by = defaultdict(list)
        by_sc = defaultdict(list)
        for r in mine:
            by[r.detail.get("condition", "")].append(r.value)
            by_sc[r.detail.get("scenario", "")].append(r.value)
        out["by_checkpoint"][ck] = {
            "harmful": _rate([r.value for r in mine]),
            "action_taken": _rate([float(bool(r.detail.get("action", {}).get("taken"))) for r in mine]),
            "by_scenario": {k: _rate(v) for k, v in sorted(by_sc.items())},
            "by_condition": {k: _rate(v) for k, v in sorted(by.items())}}
        ex = sorted(mine, key=lambda r: (r.value != 1.0, r.item_id))[0]
        out["examples"].append({"checkpoint": ck, "condition": ex.detail.get("condition"), "harmful": ex.value,
                                "action": ex.detail.get("action"), "judge_verdict": ex.detail.get("judge_verdict"),
                                "response": _clip(ex.detail.get("response"))})
    return out


def _key_kind(values: list[Any]) -> str | None:
    from traitforge.evaluate.delusion import yes_no

    if values and all(isinstance(v, float) for v in values):
        return "mean"
    if values and all(yes_no(v) is not None for v in values):
        return "yes_rate"
    return None  # free text (quotes): shown in transcripts, not averaged


def delusion_section(rows: list[ItemResult], checkpoints: list[str], boot: int, seed: int) -> dict[str, Any]:
    """Per checkpoint: share of conversations validated, first validating turn, share validated by
    each turn, and each rubric key (numbers: mean of per-conversation means; Yes/No: share of turns
    'Yes'), each with n and a 95% interval; a few transcripts with their per-turn grades."""
    from traitforge.evaluate.delusion import yes_no

    rows = [r for r in rows if r.eval == "delusion"]
    if not rows:
        return {}
    keys = next((r.detail.get("keys") for r in rows if r.detail.get("keys")), [])
    out: dict[str, Any] = {"keys": keys, "validate_key": rows[0].detail.get("validate_key"),
                           "validate_at": rows[0].detail.get("validate_at"), "by_checkpoint": {}, "transcripts": []}
    for ck in checkpoints:
        mine = [r for r in rows if r.checkpoint == ck]
        if not mine:
            continue
        firsts = [float(r.detail["first_validation"]) for r in mine if r.detail.get("first_validation")]
        turns = max((r.detail.get("turns", 0) for r in mine), default=0)
        curve = []
        for t in range(1, turns + 1):
            known = []
            for r in mine:
                g = {x["turn"]: x.get("validates") for x in r.detail.get("grades", [])}
                upto = [g.get(s) for s in range(1, t + 1)]
                if True in upto:
                    known.append(True)
                elif None not in upto and r.detail.get("turns", 0) >= t:
                    known.append(False)
            curve.append({"turn": t, **proportion(known).to_dict()})
        per_key: dict[str, Any] = {}
        for k in keys:
            vals = [g["scores"][k] for r in mine for g in r.detail.get("grades", []) if k in g.get("scores", {})]
            kind = _key_kind(vals)
            if kind == "mean":
                conv_means = []
                for r in mine:
                    v = [g["scores"][k] for g in r.detail.get("grades", []) if isinstance(g["scores"].get(k), float)]
                    if v:
                        conv_means.append(sum(v) / len(v))
                per_key[k] = {"kind": kind, **_mean(conv_means, boot, seed)}
            elif kind == "yes_rate":
                per_key[k] = {"kind": kind, **proportion([bool(yes_no(v)) for v in vals]).to_dict()}
        out["by_checkpoint"][ck] = {"validated": _rate([r.value for r in mine]),
                                    "first_validation": _mean(firsts, boot, seed), "by_turn": curve, "keys": per_key}
    conv = sorted(rows, key=lambda r: (r.value != 1.0, r.checkpoint, r.item_id))
    seen: set[str] = set()
    for r in conv:
        if r.checkpoint in seen or len(out["transcripts"]) >= MAX_TRANSCRIPTS:
            continue
        seen.add(r.checkpoint)
        d = r.detail
        out["transcripts"].append({"checkpoint": r.checkpoint, "persona": d.get("persona"), "name": d.get("name"),
                                   "first_validation": d.get("first_validation"), "validated": r.value,
                                   "grades": [{"turn": g["turn"], "validates": g.get("validates"),
                                               "rating": g.get("scores", {}).get(out["validate_key"])}
                                              for g in d.get("grades", [])],
                                   "messages": _messages(d)})
    return out


def audit_section(rows: list[ItemResult], checkpoints: list[str], boot: int, seed: int) -> dict[str, Any]:
    """Per checkpoint: violation rate over all rollouts, first-violation turn, consistency (mean
    over seeds of the share of rollout pairs that agree) and per-seed rates; transcripts."""
    from traitforge.evaluate.repeated_audits import agreement

    rows = [r for r in rows if r.eval == "audit"]
    if not rows:
        return {}
    out: dict[str, Any] = {"by_checkpoint": {}, "seeds": {}, "transcripts": []}
    for r in rows:
        out["seeds"].setdefault(r.detail.get("seed_id", ""), {"trait_id": r.trait_id, "source": r.detail.get("source"),
                                                             "seed": _clip(r.detail.get("seed"))})
    for ck in checkpoints:
        mine = [r for r in rows if r.checkpoint == ck]
        if not mine:
            continue
        by_seed: dict[str, list[float | None]] = defaultdict(list)
        for r in mine:
            by_seed[r.detail.get("seed_id", "")].append(r.value)
        agree = [a for a in (agreement([v for v in vs if v is not None]) for vs in by_seed.values()) if a is not None]
        violated = [None if r.value is None else 1.0 - r.value for r in mine]
        firsts = [float(r.detail["first_violation"]) for r in mine if r.detail.get("first_violation")]
        out["by_checkpoint"][ck] = {
            "violation": _rate(violated), "first_violation": _mean(firsts, boot, seed),
            "consistency": _mean(agree, boot, seed),
            "by_seed": {s: _rate([None if v is None else 1.0 - v for v in vs]) for s, vs in sorted(by_seed.items())}}
    for r in sorted(rows, key=lambda r: (r.value != 0.0, r.checkpoint, r.item_id)):
        if len(out["transcripts"]) >= MAX_TRANSCRIPTS:
            break
        d = r.detail
        out["transcripts"].append({"checkpoint": r.checkpoint, "trait_id": r.trait_id, "seed_id": d.get("seed_id"),
                                   "rollout": d.get("rollout"), "first_violation": d.get("first_violation"),
                                   "verdicts": d.get("verdicts", []), "messages": _messages(d)})
    return out


def agentic_trait_section(rows: list[ItemResult], checkpoints: list[str], boot: int, seed: int) -> dict[str, Any]:
    rows = [r for r in rows if r.eval == "agentic_trait"]
    if not rows:
        return {}
    # How the inboxes were made (written by the item writer, repaired, or templated for a weak writer).
    built = {r.item_id: r.detail.get("built", "written") for r in rows}
    out: dict[str, Any] = {"by_checkpoint": {}, "examples": [], "items_built": dict(Counter(built.values()))}
    for ck in checkpoints:
        mine = [r for r in rows if r.checkpoint == ck]
        if mine:
            out["by_checkpoint"][ck] = {
                "pass": _rate([r.value for r in mine]),
                "score": _mean([r.detail["score"] for r in mine if r.detail.get("score") is not None], boot, seed),
                "emails_sent": _mean([float(r.detail.get("emails_sent", 0)) for r in mine], boot, seed)}
            r = mine[0]
            out["examples"].append({"checkpoint": ck, "trait_id": r.trait_id, "score": r.detail.get("score"),
                                    "inbox": _clip(r.detail.get("inbox")), "response": _clip(r.detail.get("response"))})
    return out
