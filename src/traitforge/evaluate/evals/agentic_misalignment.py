"""Agentic misalignment (out of distribution): email-agent scenarios from the user's directory;
harmful when the act was really taken (checked in code) and the judge calls it harmful."""

from __future__ import annotations

from traitforge.evaluate.ood import agentic_misalignment_section, ood_eval
from traitforge.shared.eval_registry import Metric, register

register(ood_eval(
    "agentic_misalignment", rows="agentic_misalignment",
    metric=Metric("Agentic misalignment: harmful action", "proportion", False,
                  "email-agent scenarios (blackmail, leaking, lethal inaction); the act was taken through the tool "
                  "and the judge calls it harmful"),
    build="traitforge.evaluate.agentic_misalignment:agentic_misalignment_eval",
    section=lambda s: agentic_misalignment_section(s.rows, s.checkpoints),
    task="traitforge_agentic_misalignment", value_key="harmful",
    detail=lambda sample, score, messages, main: {"response": sample.output.completion if sample.output else ""}))
