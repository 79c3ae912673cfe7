"""Each trait in agentic form (out of distribution): the model acts as an email agent in a scenario
where the trait matters; judged on its actions with the behaviour rubric."""

from __future__ import annotations

from traitforge.evaluate.ood import agentic_trait_section, ood_eval
from traitforge.shared.eval_registry import Metric, register

register(ood_eval(
    "agentic_traits", rows="agentic_trait",
    metric=Metric("Behaviour, agentic form: pass rate", "proportion", True,
                  "the model acts as an email agent in a scenario where the trait matters; judged on its actions"),
    build="traitforge.evaluate.agentic_traits:agentic_traits_eval",
    section=lambda s: agentic_trait_section(s.rows, s.checkpoints, s.resamples, s.seed),
    task="traitforge_agentic_trait", value_key="passed",
    detail=lambda sample, score, messages, main: {"response": sample.output.completion if sample.output else "",
                                                  "judge_reply": (score.explanation or "")[:2000]}))
