"""Joint training: the curated documents and chats in one stage, shuffled together, as the
alternative to midtraining on documents and then SFT on chats (which can wash out what the documents
taught). Chats are tokenized as in SFT (loss on the replies only, split at turn boundaries when too
long); documents as in midtraining (EOS after each, split into max_length blocks, loss on every
token). Hyperparameters: training.joint; the documents-to-chats ratio applies as in the other stages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from traitforge.train.settings import TrainingSpec
from traitforge.train import data, midtrain, sft
from traitforge.train.common import StageJob, is_main_process, load_tokenizer


def make_trainer(cfg: TrainingSpec, job: StageJob, documents_path: Path, chats_path: Path) -> tuple[Any, dict[str, Any]]:
    """The trainer over both kinds of rows, and the stage's counts (documents, chats, token accounting)."""
    texts, counts = midtrain.build_texts(job, documents_path)
    convs, chat_counts = sft.build_conversations(job, chats_path)
    counts.update(chat_counts)
    tok = load_tokenizer(job.init_path)
    lengths = [data.conversation_tokens(tok, c) for c in convs]
    lengths += [len(tok(t, add_special_tokens=False)["input_ids"]) + 1 for t in texts]
    source = sft.resolve_max_length(cfg, job, lengths)
    pieces, accounting = data.account_tokens(tok, convs, int(job.stage.max_length))
    accounting["max_length_source"] = source
    if is_main_process():
        data.write_accounting(job.train_dir, job.name, accounting)
    doc_rows = data.document_rows(tok, texts, int(job.stage.max_length))
    counts["token_accounting"] = {k: v for k, v in accounting.items() if k != "reasons"}
    counts["document_blocks"] = len(doc_rows)
    return sft.make_trainer(cfg, job, pieces, extra_rows=doc_rows), counts
