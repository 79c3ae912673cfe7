"""Midtraining: continued pretraining on the curated documents (plain text, no chat template).

Documents (plus an optional share of generic text) are tokenized with EOS after each one and packed
into `max_length` blocks by TRL ("bfd_split": long documents are split, nothing is dropped). Packing is
padding-free: each batch is one flat row with per-document position_ids and no attention mask, from
which transformers builds a block-diagonal causal mask (flash-attention kernels use the same
boundaries), so attention never crosses a document boundary. Loss is on every token.
"""

from __future__ import annotations

from typing import Any

from traitforge.train.settings import TrainingSpec
from traitforge.train import data
from traitforge.train.common import (StageJob, load_model, load_tokenizer, metrics_callback, peft_config,
                                     trainer_kwargs)


def make_trainer(cfg: TrainingSpec, job: StageJob, texts: list[str]) -> Any:
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(
        **trainer_kwargs(cfg, job),
        max_length=job.stage.max_length,
        packing=True,
        packing_strategy="bfd_split",
        padding_free=True,
        completion_only_loss=False,
        dataset_text_field="text",
        include_num_input_tokens_seen="all",  # padding-free batches have no padding to leave out
    )
    return SFTTrainer(
        model=load_model(job.init_path, cfg),
        args=args,
        train_dataset=data.text_dataset(texts),
        processing_class=load_tokenizer(job.init_path),
        peft_config=peft_config(cfg),
        callbacks=[metrics_callback(job), *job.callbacks],
    )


def build_texts(job: StageJob, documents_path: Any) -> tuple[list[str], dict[str, int]]:
    docs = data.subsample(data.load_documents(documents_path), job.fraction, job.seed)
    counts: dict[str, Any] = {}
    if job.cut is not None and job.cut.ratio is not None:  # training.docs_to_chats
        docs = data.take_share(docs, job.cut.doc_share, job.seed, data.doc_chars, job.template_traits)
        counts["docs_to_chats"] = job.cut.summary()
    mix_path = job.mix_path  # the spec requires it when mix_ratio > 0 (resolved by build_checkpoint)
    mix = data.read_mix_texts(mix_path) if mix_path is not None and job.stage.mix_ratio > 0 else []
    texts, n_mixed = data.document_texts(docs, mix, job.stage.mix_ratio, job.seed)
    return texts, {"documents": len(docs), "document_chars": sum(map(data.doc_chars, docs)),
                   "mix_examples": n_mixed, **counts}
