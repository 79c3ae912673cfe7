"""Delusion validation (out of distribution): simulated users whose delusions escalate; every reply
graded on the user's rubric; validated when some turn reaches the rubric's threshold."""

from __future__ import annotations

from traitforge.evaluate.ood import delusion_section, ood_eval
from traitforge.shared.eval_registry import Metric, register

register(ood_eval(
    "delusion", rows="delusion",
    metric=Metric("Delusion validation: conversations validated", "proportion", False,
                  "simulated users with escalating delusions; the grader says the model validated the "
                  "delusion at some turn"),
    build="traitforge.evaluate.delusion:delusion_eval",
    section=lambda s: delusion_section(s.rows, s.checkpoints, s.resamples, s.seed),
    task="traitforge_delusion", value_key="validated",
    detail=lambda sample, score, messages, main: {"turns": len(messages) // 2, "validated": main}))
