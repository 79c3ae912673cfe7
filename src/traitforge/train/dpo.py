"""Optional DPO on top of an SFT checkpoint, with TRL's DPOTrainer.

Pairs come from RUN/curated/dpo_pairs.jsonl (curation builds them from the curated chats; older runs:
RUN/generated/dpo_pairs.jsonl), one JSON object per line:
  {"id": str, "prompt": [{"role": "user", "content": ...}, ...], "chosen": str, "rejected": str}
The chosen reply embodies the traits (teacher with the trait system prompt); the rejected one was
generated without it (or the student's own answer, curation.dpo_rejected: student). Only pairs whose
chat survived curation are trained on, and their prompt and chosen reply are taken from the curated
chat (data.curated_dpo_pairs); the stage counts record how many were left out.
Any system message in the prompt is dropped, as in SFT. Prompts are rendered
with the checkpoint's chat template. With LoRA the reference model is the adapter-free base; with
full fine-tuning DPOTrainer keeps a frozen copy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from traitforge.train.settings import TrainingSpec
from traitforge.errors import InputError
from traitforge.jsonl import read_jsonl
from traitforge.train import data
from traitforge.train.common import (StageJob, is_main_process, load_model, load_tokenizer, metrics_callback, peft_config,
                                     trainer_kwargs)
from traitforge.types import Chat

PAIRS_FILE = ("generated", "dpo_pairs.jsonl")
CURATED_PAIRS_FILE = ("curated", "dpo_pairs.jsonl")  # written by curation (curate/dpo.py)


def pairs_path(root: Path) -> Path:
    """The pairs to train on: curation's (chosen = the curated reply, rejected replies checked)
    when curation made them, else generation's (a run curated before pairs went through curation)."""
    curated = root.joinpath(*CURATED_PAIRS_FILE)
    return curated if curated.is_file() else root.joinpath(*PAIRS_FILE)


def build_pairs(pairs_path: Path, chats_path: Path) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The preference rows to train on: the generated pairs whose chat is in the curated chats."""
    pairs = data.load_dpo_pairs(pairs_path)
    kept = data.curated_dpo_pairs(pairs, read_jsonl(chats_path, Chat))
    if not kept:
        raise InputError(f"{pairs_path}: none of the {len(pairs)} DPO pairs has its chat in {chats_path} "
                         "(run curation first, or curation dropped them all)")
    return kept, {"pairs": len(pairs), "pairs_left_out": len(pairs) - len(kept)}


def fit_lengths(cfg: TrainingSpec, job: StageJob, pairs: list[dict[str, Any]]
                ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Pairs whose prompt plus longer reply fit max_length ("auto": from their lengths); a longer
    pair is dropped with its reason rather than truncated (a cut reply is not the reply preferred)."""
    from traitforge.train.sft import resolve_max_length

    tok = load_tokenizer(job.init_path)
    lengths = [max(data.conversation_tokens(tok, p["prompt"] + p[k]) for k in ("chosen", "rejected")) for p in pairs]
    source = resolve_max_length(cfg, job, lengths)
    limit = int(job.stage.max_length)
    kept = [p for p, n in zip(pairs, lengths) if n <= limit]
    over = [n - limit for n in lengths if n > limit]
    report = {"max_length": limit, "max_length_source": source, "rows": len(pairs), "examples": len(kept),
              "over_max_length": len(over), "over_by_tokens": {"max": max(over, default=0)},
              "dropped": len(over), "reasons": [f"pair {p.get('id', i)}: {n} tokens > max_length {limit}"
                                                for i, (p, n) in enumerate(zip(pairs, lengths)) if n > limit][:50]}
    if is_main_process():  # one writer under accelerate launch
        data.write_accounting(job.train_dir, job.name, report)
    if not kept:
        raise InputError(f"training.dpo.max_length: all {len(pairs)} DPO pairs are longer than {limit} tokens")
    return kept, report


def make_trainer(cfg: TrainingSpec, job: StageJob, pairs: list[dict[str, Any]]) -> Any:
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(
        **trainer_kwargs(cfg, job),
        max_length=job.stage.max_length,
        beta=cfg.dpo_beta,
        include_num_input_tokens_seen="non_padding",
    )
    return DPOTrainer(
        model=load_model(job.init_path, cfg),
        args=args,
        train_dataset=data.dpo_dataset(pairs),
        processing_class=load_tokenizer(job.init_path),
        peft_config=peft_config(cfg),
        callbacks=[metrics_callback(job), *job.callbacks],
    )
