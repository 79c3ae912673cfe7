"""SFT on the curated chats (context distillation: the teacher's system prompt is not in them).

Each conversation is rendered with the base model's chat template and tokenized with an
assistant-only mask (data.tokenize_chat), so the loss is on assistant replies and their end-of-turn
token only; multi-turn conversations train every assistant turn at once. Conversations longer than
`max_length` are never cut silently: fit_lengths splits them at turn boundaries (a reply is never
cut) or drops a turn that cannot fit, with reasons, into RUN/train/<name>/token_accounting.json;
max_length "auto" is chosen from the chats' token lengths (data.choose_max_length).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from traitforge.train.settings import TrainingSpec
from traitforge.train import data
from traitforge.train.common import (StageJob, is_main_process, load_model, load_tokenizer, metrics_callback, peft_config,
                                     trainer_kwargs)


def build_conversations(job: StageJob, chats_path: Path) -> tuple[list[list[dict[str, str]]], dict[str, int]]:
    records = data.subsample(data.load_chat_records(chats_path), job.fraction, job.seed)
    counts: dict[str, Any] = {}
    if job.cut is not None and job.cut.ratio is not None:  # training.docs_to_chats
        records = data.take_share(records, job.cut.chat_share, job.seed, data.chat_chars,
                                  job.template_traits)
        counts["docs_to_chats"] = job.cut.summary()
    chats = data.training_messages(records)
    mix_path = job.mix_path  # the spec requires it when mix_ratio > 0 ("generic": the run's own)
    mix = data.read_mix_chats(mix_path) if mix_path is not None and job.stage.mix_ratio > 0 else []
    convs, n_mixed = data.chat_conversations(chats, mix, job.stage.mix_ratio, job.seed)
    return convs, {"chats": len(chats), "chat_chars": sum(map(data.chat_chars, records)),
                   "chats_left_out": len(chats) + n_mixed - len(convs), "mix_examples": n_mixed, **counts}


def resolve_max_length(cfg: TrainingSpec, job: StageJob, lengths: list[int]) -> str:
    """Set job.stage.max_length to a number ("auto": from `lengths`); returns where it came from."""
    if job.stage.max_length != "auto":
        return "spec"
    job.stage = job.stage.model_copy(update={"max_length": data.choose_max_length(lengths, cfg.max_length_cap)})
    return f"auto (the {data.LENGTH_QUANTILE:.0%} quantile of token lengths, cap {cfg.max_length_cap})"


def fit_lengths(cfg: TrainingSpec, job: StageJob, conversations: list[list[dict[str, str]]]
                ) -> tuple[list[list[dict[str, Any]]], dict[str, Any]]:
    """The conversations fitted to max_length (split or dropped with reasons, never cut) and the
    token accounting, also written to RUN/train/<name>/token_accounting.json."""
    tok = load_tokenizer(job.init_path)
    source = resolve_max_length(cfg, job, [data.conversation_tokens(tok, c) for c in conversations])
    pieces, report = data.account_tokens(tok, conversations, int(job.stage.max_length))
    report["max_length_source"] = source
    if is_main_process():  # one writer under accelerate launch
        data.write_accounting(job.train_dir, job.name, report)
    return pieces, report


def make_trainer(cfg: TrainingSpec, job: StageJob, conversations: list[list[dict[str, str]]],
                 extra_rows: list[dict[str, list[int]]] | None = None) -> Any:
    """`extra_rows`: pre-tokenized rows shuffled in with the chats (joint training's documents)."""
    from trl import SFTConfig, SFTTrainer

    tok = load_tokenizer(job.init_path)
    packed = cfg.pack_chats
    args = SFTConfig(
        **trainer_kwargs(cfg, job),
        max_length=job.stage.max_length,
        packing=packed,
        packing_strategy="bfd",  # keeps conversations whole (truncating overflow) when packing
        padding_free=packed,
        include_num_input_tokens_seen="all" if packed else "non_padding",
    )
    # Not for joint training: sorting would split the documents' full blocks from the chats.
    grouped = cfg.group_by_length and not packed and not extra_rows
    return (length_grouped_trainer() if grouped else SFTTrainer)(
        model=load_model(job.init_path, cfg),
        args=args,
        train_dataset=data.chat_dataset(tok, conversations, extra_rows or (), job.seed),
        processing_class=tok,
        peft_config=peft_config(cfg),
        callbacks=[metrics_callback(job), *job.callbacks],
    )



def length_grouped_trainer() -> type:
    """SFTTrainer whose batches hold chats of similar lengths (data.length_grouped_order, a new
    seeded order every epoch)."""
    import torch
    from trl import SFTTrainer

    class LengthGroupedSampler(torch.utils.data.Sampler):
        def __init__(self, lengths: list[int], batch_size: int, seed: int):
            self.lengths, self.batch_size, self.seed, self.epoch = lengths, batch_size, seed, 0

        def __len__(self) -> int:
            return len(self.lengths)

        def __iter__(self):
            order = data.length_grouped_order(self.lengths, self.batch_size, self.seed + self.epoch)
            self.epoch += 1
            return iter(order)

    class LengthGroupedSFTTrainer(SFTTrainer):
        def _get_train_sampler(self, train_dataset=None):
            ds = self.train_dataset if train_dataset is None else train_dataset
            lengths = [len(x) for x in ds["input_ids"]]
            return LengthGroupedSampler(lengths, self.args.train_batch_size,  # padding is per micro-batch
                                        self.args.seed)

    return LengthGroupedSFTTrainer
