"""Intermediate rows of the generation stage (the records shared with later stages are in
traitforge.types)."""

from __future__ import annotations

from typing import Literal

from traitforge.steps import Skipped  # noqa: F401  (generated/skipped.jsonl: written by the step engine)
from traitforge.shared.dpo_pairs import DPOPair  # noqa: F401  (generated/dpo_pairs.jsonl)
from traitforge.types import Record


class UserPrompt(Record):
    """A user's opening message for a scenario (prompts.jsonl, prompts_critiqued.jsonl)."""

    id: str
    scenario_id: str
    trait_id: str
    text: str
    critique: str = ""  # keep | revised | unparsed | revise-unusable ("" before critique)
    revised: bool = False


class Probe(Record):
    """What the generator says with no system prompt, and whether the prompt was made harder."""

    id: str  # the prompt's id
    scenario_id: str
    trait_id: str
    prompt: str  # final prompt text (hardened if the default already showed the trait)
    default_response: str
    verdict: Literal["shows", "generic", "missing"]  # an unparsed verdict drops the prompt
    hardened: bool = False


class Refinement(Record):
    """The refiner's rewrite of a draft's first answer (refined.jsonl). `problems` says why it
    was not used ("" = used), in which case the chat keeps the draft."""

    id: str  # the chat's id
    trait_id: str
    text: str
    problems: str = ""
    unchanged: bool = False  # the refiner took its keep exit: text is the draft, byte for byte

