"""The base of every run-spec section (one YAML mapping: unknown keys are errors naming the key), and
the few values several sections share. Below the stages: each stage's `settings` module builds its
section on this, and `config.RunSpec` composes them; nothing here imports a stage."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def model_spec(v: Any) -> Any:
    """A model given as a string ("provider:model") is the mapping {"model": it}: the `mode="before"`
    coercion of models.<role> and evaluation.models.<name>."""
    return {"model": v} if isinstance(v, str) else v


# The checkpoints training can build (train/run.py: RECIPES), base being the untrained model. Here, not
# in train/settings.py: the training section's `checkpoints`, the evaluation and the CLI all name them.
CHECKPOINTS = ("base", "midtrain", "sft", "midtrain_sft", "control", "joint", "sft_dpo", "midtrain_sft_dpo")
Checkpoint = Literal[CHECKPOINTS]  # type: ignore[valid-type]

# Defaults of one section's key that another section falls back to when it is built alone, outside a
# RunSpec (which hands it the spec's own value: RunSpec._wire_sections). Named once here, so that no
# stage's settings module imports another's.
DEFAULT_CHECKPOINTS = ("base", "midtrain", "sft", "midtrain_sft", "control")  # training.checkpoints
CHAT_MAX_TOKENS = 4000  # generation.chats.max_tokens
TEMPLATE_TRAITS = ("canary",)  # curation.template_traits
BOOTSTRAP = 1000  # evaluation.bootstrap
VECTOR_QUESTIONS = 12  # evaluation.vector_questions
VECTOR_PARAPHRASES = 4  # evaluation.vector_paraphrases
