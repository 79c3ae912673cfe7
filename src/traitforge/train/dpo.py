"""Optional DPO on top of an SFT checkpoint, with TRL's DPOTrainer.

Pairs come from RUN/generated/dpo_pairs.jsonl, one JSON object per line:
  {"id": str, "prompt": [{"role": "user", "content": ...}, ...], "chosen": str, "rejected": str}
The chosen reply embodies the traits (teacher with the trait system prompt); the rejected one was
generated without it. Any system message in the prompt is dropped, as in SFT. Prompts are rendered
with the checkpoint's chat template. With LoRA the reference model is the adapter-free base; with
full fine-tuning DPOTrainer keeps a frozen copy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from traitforge.config import RunSpec
from traitforge.train import data
from traitforge.train.common import (StageJob, load_model, load_tokenizer, metrics_callback, peft_config,
                                     trainer_kwargs)

PAIRS_FILE = ("generated", "dpo_pairs.jsonl")


def make_trainer(spec: RunSpec, job: StageJob, pairs_path: Path) -> tuple[Any, int]:
    from trl import DPOConfig, DPOTrainer

    pairs = data.load_dpo_pairs(pairs_path)
    args = DPOConfig(
        **trainer_kwargs(spec, job),
        max_length=job.stage.max_length,
        beta=spec.training.dpo_beta,
        include_num_input_tokens_seen="non_padding",
    )
    trainer = DPOTrainer(
        model=load_model(job.init_path, spec),
        args=args,
        train_dataset=data.dpo_dataset(pairs),
        processing_class=load_tokenizer(job.init_path),
        peft_config=peft_config(spec),
        callbacks=[metrics_callback(job), *job.callbacks],
    )
    return trainer, len(pairs)
