"""Contrastive preference: does the checkpoint find the trait-consistent reply more likely than the
violating one (log-prob, judge-free; the canary's opener among the pairs)."""

from __future__ import annotations

from traitforge.evaluate.common import EvalContext
from traitforge.shared.eval_registry import Eval, Metric, Work, register


def plan(ctx: EvalContext, items: dict[str, list]) -> list[Work]:
    from traitforge.evaluate.behaviour import run_contrastive

    canary_pairs = [i for i in items["canary"] if i.kind == "behaviour"]
    if not (ctx.ev.contrastive or canary_pairs):
        return []
    pairs = (items["behaviour"] if ctx.ev.contrastive else []) + canary_pairs
    return [Work("contrastive", lambda c: run_contrastive(c, pairs), per_checkpoint=True)]


register(Eval(
    "contrastive", plan, rows=("contrastive",), settings=("contrastive",),
    weights_only=lambda run, ev: ["contrastive"] if ev.contrastive else [],
    metrics={"contrastive": Metric("Contrastive preference (log-prob)", "proportion", True,
                                   "share of held-out prompts where the checkpoint finds the trait-consistent reply "
                                   "more likely than the violating one (judge-free)")}))
