"""The evaluation stage's entry point (`traitforge.evaluate.run_evaluation`): every checkpoint on the
same items, each registered eval planned and run on the schedule, into RUN/eval/*.jsonl and
RUN/results.json."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from traitforge.evaluate.common import (EvalContext, eval_settings, evaluating, fingerprint_of, normalise_checkpoints,
                                       row_identity)
from traitforge.evaluate.settings import EvaluationSpec
from traitforge.evaluate.versions import set_aside_stale
from traitforge.llm.client import LLM, gather_or_cancel
from traitforge.llm.spec import ModelSpec
from traitforge.progress import one_line
from traitforge.shared.eval_registry import Work
from traitforge.types import stable_hash

if TYPE_CHECKING:
    from traitforge.runcontext import Run, StageScope

__all__ = ["run_evaluation", "eval_context", "side_by_side_calls"]
log = logging.getLogger("traitforge.evaluate")


def run_evaluation(run: "Run", cfg: EvaluationSpec, checkpoints: dict[str, str | Path | ModelSpec | LLM]) -> None:
    """checkpoints: name (base, midtrain, sft, midtrain_sft, ...) -> checkpoint directory,
    "smollm2-135m", a ModelSpec or a ready LLM. `cfg.models` (any backend) are evaluated beside them
    on the same items. The run's judge grades, its auditor plays the user, its item_writer writes the
    items (unset: the judge); every evaluated model comes from the run's client pool, so a model that
    is both judge and evaluated is one client with one rate limiter. One stage of the run
    (`run.stage`: usage recorded, clients closed)."""
    with run.stage("evaluate") as st:
        st.run(_run(run, st, cfg, checkpoints))


def eval_context(run: "Run", cfg: EvaluationSpec, checkpoints: dict[str, Any]) -> EvalContext:
    """The evaluation's context for a run: its judge, auditor and item writer (unset: the judge), and
    the models evaluated (`checkpoints` and cfg.models); ready clients among them are the run's to
    count and close (Run.adopt)."""
    judge, writer = run.llm("judge"), run.llm("item_writer")
    cks = normalise_checkpoints(checkpoints, cfg.models, run.resolve)
    for t in cks.values():
        if isinstance(t, LLM):
            run.adopt(t)
    return EvalContext(run, cfg, judge, run.llm("auditor"), cks, item_writer=None if writer is judge else writer)


async def _run(run: "Run", scope: "StageScope", cfg: EvaluationSpec, checkpoints: dict[str, Any]) -> None:
    from traitforge.evaluate.results import build_results, write_results
    from traitforge.shared.eval_registry import weights_only

    store, traits = run.store, run.traits
    logprob_evals = weights_only(run, cfg)  # a bad probe config fails here, before any model runs
    ctx = eval_context(run, cfg, checkpoints)
    cks = ctx.checkpoints
    # Rows are keyed by what was evaluated: a checkpoint whose content (or the settings its rows
    # depend on) changed since its rows were made has them set aside and is evaluated again.
    settings = eval_settings(cfg, ctx.judge, ctx.auditor)
    identities = {name: row_identity(t, settings) for name, t in cks.items()}
    set_aside_stale(store, identities)
    # The schedule changes when work is done, not what: outside the fingerprint.
    fp = stable_hash({"evaluation": cfg.model_dump(exclude={"schedule", "batch", "batch_poll_s"}),
                      "checkpoints": {name: fingerprint_of(t) for name, t in cks.items()},
                      "identities": identities, "traits": traits.sha256 or [t.hash for t in traits.traits]})
    notes: list[str] = []
    with store.stage("evaluate", fp), evaluating(identities):
        await _evaluate(ctx, fp, notes, scope)
    not_applicable = {ck: {ev: why for ev in logprob_evals} for ck, why in ctx.not_applicable().items()}
    results = build_results(store, traits, list(cks), bootstrap_resamples=cfg.bootstrap,
                            seed=run.seed, notes=notes, not_applicable=not_applicable,
                            target_mde=run.target_mde, ev=cfg)
    write_results(store, results)
    store.set_counts("evaluate", checkpoints=len(cks),
                     rows=sum(e.get("n", 0) for ck in results["results"].values()
                              for e in ck.get("all", {}).values()))


def _plan(ctx: EvalContext, items: dict[str, list]) -> list[Work]:
    """Every registered eval's work for this evaluation, in the registry's order; the configured
    out-of-distribution evals' calls are announced before any of them starts."""
    from traitforge.evaluate.ood import announce_ood
    from traitforge.shared.eval_registry import evals

    work: list[Work] = []
    ood = False
    for ev in evals():
        mine = ev.plan(ctx, items) if ev.plan is not None else []
        ood = ood or (ev.ood and bool(mine))
        work += mine
    if ood:
        announce_ood(ctx)
    return work


async def _respond_by_checkpoint(ctx: EvalContext, work: list[Work]) -> dict[str, float]:
    """Checkpoint by checkpoint (`evaluation.checkpoints_at_once` at a time): every eval's calls to
    it at once (they share the device's batches), its log-prob evals, then its weights released.
    Seconds per group of checkpoints, keyed by the group's names."""

    async def answer(ck: str) -> None:
        one = ctx.only(ck)
        await gather_or_cancel([w.respond(one) for w in work if w.respond is not None]
                               + [w.run(one) for w in work if w.per_checkpoint and not w.alone])

    seconds: dict[str, float] = {}
    order = sorted(ctx.checkpoints, key=lambda name: name != "base")  # base first: trait vectors are built on it
    k = ctx.ev.checkpoints_at_once
    with one_line("evaluate: checkpoints answer", len(order), unit="checkpoint") as bar:
        for group in (order[i:i + k] for i in range(0, len(order), k)):
            t0 = time.perf_counter()
            bar.set_postfix_str(", ".join(group))
            await gather_or_cancel([answer(ck) for ck in group])
            for ck in group:  # hooks the model's layers: nothing else may run on it meanwhile
                for w in work:
                    if w.per_checkpoint and w.alone:
                        await w.run(ctx.only(ck))
                ctx.release(ck)
            seconds[",".join(group)] = round(time.perf_counter() - t0, 2)
            log.info("evaluate: %s answered in %.1fs", ", ".join(group), seconds[",".join(group)])
            bar.update(len(group))
    return seconds


async def _evaluate(ctx: EvalContext, fp: str, notes: list[str], scope: "StageScope") -> None:
    from traitforge.evaluate.capability import run_lm_eval
    from traitforge.evaluate.items import build_items

    store, ev = ctx.store, ctx.ev
    try:
        with store.stage("evaluate/items", fp):
            items = await build_items(ctx)
            counts = {k: len(v) for k, v in items.items()}
            store.set_counts("evaluate/items", **counts,
                             behaviour_dropped=sum(i.dropped is not None for i in items["behaviour"]))
        for i in items["behaviour"]:
            if i.dropped:
                notes.append(f"held-out prompt {i.id} dropped: {i.dropped}")
        _announce_estimate(ctx, items)
        work = _plan(ctx, items)
        if ev.schedule == "by_checkpoint":
            with store.stage("evaluate/respond", fp):
                store.set_counts("evaluate/respond", seconds_per_checkpoint=await _respond_by_checkpoint(ctx, work))
        # Each eval over every checkpoint: after the schedule above, the evaluated models' answers come
        # from the cache and the log-prob rows are written, so what is left is the judge's grading,
        # blind and shuffled across checkpoints. The evals grade at once, so a local judge serves
        # their calls in shared batches (one eval's few calls at a time left it at batch 4-6).
        async def finish(w: Work) -> None:
            with store.stage(f"evaluate/{w.name}", fp):
                await w.run(ctx)

        at_once = ev.schedule == "by_checkpoint"  # else each eval still runs the models
        together = [w for w in work if at_once and not w.alone and not w.after_others]
        await gather_or_cancel([finish(w) for w in together])
        for w in work:
            if w not in together:
                await finish(w)
        if ev.lm_eval_tasks:
            with store.stage("evaluate/lm_eval", fp):
                notes += await asyncio.to_thread(run_lm_eval, ctx)
    finally:
        scope.record_usage()  # now, not at the stage's end: results.json shows it


def _announce_estimate(ctx: EvalContext, items: dict[str, list]) -> None:
    """Before the judged evals: how many judge and auditor calls they make at most (every item on
    every evaluated model; a resumed run makes fewer), priced when the models cost money."""
    from traitforge.llm.budget import announce_calls

    ev, n_models = ctx.ev, len(ctx.checkpoints)
    n_traits = len(ctx.traits.traits)
    knowledge = items["knowledge"] if ev.knowledge else []
    # Knowledge: a recall grade per trait the question covers, plus one "unsupported claims" grade.
    judge_calls = n_models * sum((1 if i.trait_id else n_traits) + 1 for i in knowledge)
    judge_calls += n_models * sum(i.dropped is None for i in items["behaviour"])
    judge_calls += n_models * len(items["multiturn"])  # one verdict per transcript
    auditor_calls = n_models * len(items["multiturn"]) * ev.multiturn_turns
    judge_calls += side_by_side_calls(ctx)
    prices = ctx.run.prices
    if ctx.auditor is ctx.judge:  # one model plays both: one line for all its calls
        announce_calls(ctx.judge, judge_calls + auditor_calls, stage="evaluate (judge and auditor)",
                       max_tokens=max(ev.judge_max_tokens, ev.auditor_tokens), store=ctx.store, prices_file=prices)
        return
    announce_calls(ctx.judge, judge_calls, stage="evaluate (judge)", max_tokens=ev.judge_max_tokens,
                   store=ctx.store, prices_file=prices)
    announce_calls(ctx.auditor, auditor_calls, stage="evaluate (auditor)", max_tokens=ev.auditor_tokens,
                   store=ctx.store, prices_file=prices)


def side_by_side_calls(ctx: EvalContext) -> int:
    """The side-by-side eval's judge calls: both orders per prompt per checkpoint but the reference
    (none with verdict: logprob, whose verdicts are read from the local judge's log-probabilities)."""
    spec = ctx.ev.capability.side_by_side
    if spec is None or not spec.enabled or spec.verdict == "logprob":
        return 0
    from traitforge.evaluate.side_by_side import load_prompts

    prompts, _ = load_prompts(spec.prompts, resolve=ctx.run.resolve, run_dir=ctx.store.root, n=spec.n)
    return 2 * len(prompts) * sum(ck != spec.reference for ck in ctx.checkpoints)
