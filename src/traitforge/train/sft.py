"""SFT on the curated chats (context distillation: the teacher's system prompt is not in them).

Each conversation is rendered with the base model's chat template and tokenized with an
assistant-only mask (data.tokenize_chat), so the loss is on assistant replies and their end-of-turn
token only; multi-turn conversations train every assistant turn at once. Conversations longer than
`max_length` are truncated (keep the start); ones left with no assistant token are dropped by TRL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from traitforge.config import RunSpec
from traitforge.train import data
from traitforge.train.common import (StageJob, load_model, load_tokenizer, metrics_callback, peft_config,
                                     trainer_kwargs)


def build_conversations(spec: RunSpec, job: StageJob, chats_path: Path) -> tuple[list[list[dict[str, str]]], dict[str, int]]:
    chats = data.subsample(data.load_chats(chats_path), job.fraction, job.seed)
    mix_path = spec.mix_path(job.stage)  # the spec requires it when mix_ratio > 0 ("generic": the run's own)
    mix = data.read_mix_chats(mix_path) if mix_path is not None and job.stage.mix_ratio > 0 else []
    convs, n_mixed = data.chat_conversations(chats, mix, job.stage.mix_ratio, job.seed)
    return convs, {"chats": len(chats), "chats_left_out": len(chats) + n_mixed - len(convs),
                   "mix_examples": n_mixed}


def make_trainer(spec: RunSpec, job: StageJob, conversations: list[list[dict[str, str]]]) -> Any:
    from trl import SFTConfig, SFTTrainer

    tok = load_tokenizer(job.init_path)
    packed = spec.training.pack_chats
    args = SFTConfig(
        **trainer_kwargs(spec, job),
        max_length=job.stage.max_length,
        packing=packed,
        packing_strategy="bfd",  # keeps conversations whole (truncating overflow) when packing
        padding_free=packed,
        include_num_input_tokens_seen="all" if packed else "non_padding",
    )
    return SFTTrainer(
        model=load_model(job.init_path, spec),
        args=args,
        train_dataset=data.chat_dataset(tok, conversations),
        processing_class=tok,
        peft_config=peft_config(spec),
        callbacks=[metrics_callback(job), *job.callbacks],
    )
