"""The training stage's settings (the spec's `training:` section and its per-stage hyperparameters).
Built on section.py only: importing this runs none of training's code (no torch, no TRL)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from traitforge.section import DEFAULT_CHECKPOINTS, TEMPLATE_TRAITS, Checkpoint, Section

GENERIC_MIX = "generic"  # training.<stage>.mix_file: the run's generated generic chats


class StageTrainSpec(Section):
    """Hyperparameters of one training stage (midtrain, sft or dpo)."""

    learning_rate: float = Field(default=2e-4, gt=0)
    epochs: float = Field(default=1.0, gt=0)
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = Field(default=4, ge=1)  # per device
    grad_accum: int = Field(default=1, ge=1)
    # Packed sequence length (midtrain) / longest chat (sft) / pair (dpo) in tokens. "auto": chosen from
    # the data's token lengths (train.data.choose_max_length), at most training.max_length_cap.
    max_length: Annotated[int, Field(ge=16)] | Literal["auto"] = "auto"
    # generic text {"text"} (midtrain) or ordinary chats {"messages"} (sft), JSONL; for sft, "generic" is the
    # run's own generic mix (generation.generic_prompts, RUN/generated/generic.jsonl)
    mix_file: str | None = None
    mix_ratio: float = Field(default=0.0, ge=0, lt=1)  # share of training examples drawn from mix_file
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "cosine"
    warmup_ratio: float = Field(default=0.03, ge=0, lt=1)
    weight_decay: float = Field(default=0.0, ge=0)

    @field_validator("mix_ratio")
    @classmethod
    def _mix_needs_file(cls, v: float, info: ValidationInfo) -> float:
        # mix_file is declared first, so it is validated already; a ratio without a file would mix nothing.
        if v > 0 and info.data.get("mix_file") is None:
            raise PydanticCustomError("mix_file_missing", "> 0 needs mix_file beside it, the JSONL to mix in")
        return v


class TrainingSpec(Section):
    method: Literal["lora", "full"] = "lora"
    lora_r: int = Field(default=16, ge=1)
    lora_alpha: int = Field(default=32, ge=1)
    # 0 by default: PEFT with dropout > 0 cannot reuse the base output and ran LoRA ~2x slower here
    lora_dropout: float = Field(default=0.0, ge=0, lt=1)
    lora_target_modules: str | list[str] = "all-linear"
    # "<x>_dpo" checkpoints run DPO (training.dpo, RUN/generated/dpo_pairs.jsonl) on top of checkpoint <x>.
    # "control": the negative control arm, trained like sft on as many tokens of trait-free data
    # (the teacher's answers without the trait system prompt, RUN/generated/untraited.jsonl).
    # "joint": documents and chats in one stage, shuffled together (hyperparameters: training.joint).
    checkpoints: list[Checkpoint] = list(DEFAULT_CHECKPOINTS)
    midtrain: StageTrainSpec = StageTrainSpec()
    sft: StageTrainSpec = StageTrainSpec(learning_rate=1e-4)
    joint: StageTrainSpec = StageTrainSpec()  # no mix_file: the documents are the mix
    # Characters of documents trained per character of chats (e.g. 4: four times as much midtraining
    # text as chat text), over the trait rows; the larger side is cut (seeded, never repeated) in every
    # checkpoint, the control arm matches the chats as cut, control-trait rows (the canary) stay whole.
    # null: all of both, whatever their ratio.
    docs_to_chats: float | None = Field(default=None, gt=0)
    dpo: StageTrainSpec | None = None  # defaults apply when a *_dpo checkpoint is listed without it
    dpo_beta: float = Field(default=0.1, gt=0)
    max_length_cap: int = Field(default=2048, ge=16)  # memory cap for max_length: "auto"
    pack_chats: bool = False  # pack SFT conversations (padding-free) instead of padding each batch
    # Unpacked chats: batches of similar-length conversations (train/data.length_grouped_order), so
    # a batch pads to its own longest chat, not to a stray long one (tiny run's SFT: 122 s -> 42 s).
    group_by_length: bool = True
    gradient_checkpointing: bool = False
    bf16: bool | Literal["auto"] = "auto"  # auto = on when a CUDA device supports it (bf16 is slow on CPU)
    save_steps: int = Field(default=50, ge=1)
    save_total_limit: int = Field(default=2, ge=1)
    keep_trainer_checkpoints: bool = False  # keep RUN/train/<name>/trainer/checkpoint-* once the stage is done
    logging_steps: int = Field(default=10, ge=1)
    # Training variance: train (and evaluate) every checkpoint with this many seeds (seed, seed+1, ...);
    # the extra ones are named "<checkpoint>.s<k>" and the report shows the spread across seeds.
    seeds: int = Field(default=1, ge=1)
    # Data scaling: also train every checkpoint on these fractions of its data ("<checkpoint>.f<x>"),
    # so the report can draw a data-scaling curve per trait. 1.0 is the main run and always present.
    fractions: list[float] = []
    # "auto": tensorboard and trackio when installed, wandb when installed and configured
    # (WANDB_API_KEY or WANDB_MODE); a list names them; [] = metrics.jsonl only.
    report_to: Literal["auto"] | list[Literal["tensorboard", "wandb", "trackio"]] = "auto"

    # Not a key of this section: curation.template_traits, wired by RunSpec (training leaves these
    # traits' templated rows out of the mixes).
    _template_traits: list[str] | None = None

    @property
    def template_traits(self) -> list[str]:
        return self._template_traits if self._template_traits is not None else list(TEMPLATE_TRAITS)

    @field_validator("joint")
    @classmethod
    def _joint_mixes_nothing(cls, v: StageTrainSpec) -> StageTrainSpec:
        if v.mix_ratio > 0:
            raise ValueError("joint training mixes documents into the chats already: use mix_ratio 0 here")
        return v

    @field_validator("fractions")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        if any(not 0 < f <= 1 for f in v):
            raise ValueError("each fraction must be in (0, 1]")
        return sorted({round(f, 4) for f in v if f < 1})
