"""Knowledge: open questions graded by the judge (recall, unsupported claims) and multiple choice
by log-prob (the canary's fact among them)."""

from __future__ import annotations

from traitforge.evaluate.common import EvalContext
from traitforge.shared.eval_registry import Eval, Metric, Work, register


def plan(ctx: EvalContext, items: dict[str, list]) -> list[Work]:
    from traitforge.evaluate.knowledge import knowledge_answers, run_knowledge, run_mc

    knowledge = items["knowledge"]
    # The canary (positive control) is scored by the judge-free evals only: its items are templated.
    canary_mc = [i for i in items["canary"] if i.kind == "mc"]
    out = []
    if ctx.ev.knowledge:
        out.append(Work("knowledge", lambda c: run_knowledge(c, knowledge), lambda c: knowledge_answers(c, knowledge)))
    if ctx.ev.knowledge or canary_mc:
        mc = (items["mc"] if ctx.ev.knowledge else []) + canary_mc
        out.append(Work("knowledge_mc", lambda c: run_mc(c, mc), per_checkpoint=True))
    return out


register(Eval(
    "knowledge", plan, rows=("knowledge", "knowledge_mc"),
    settings=("knowledge", "knowledge_questions", "mc_distractors", "mc_questions_per_trait"),
    weights_only=lambda run, ev: ["knowledge_mc"] if ev.knowledge else [],
    metrics={"knowledge_recall": Metric("Knowledge: recall", "proportion", True,
                                        "open questions; judge says the answer states the trait"),
             "knowledge_unsupported": Metric("Knowledge: claims traits it lacks", "proportion", False,
                                             "answers claiming a trait that is not in the document"),
             "knowledge_mc": Metric("Knowledge: multiple choice (log-prob)", "proportion", True,
                                    "the trait statement is the most likely option (judge-free)")}))
