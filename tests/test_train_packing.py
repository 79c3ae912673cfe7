"""Midtraining packing as SFTTrainer prepares it (midtrain.make_trainer, real tokenizer):
documents end with EOS, nothing is dropped, and blocks are filled up to max_length."""

import math

import pytest

from _train_fixtures import one_torch_thread  # noqa: F401  (fixture)
from _train_fixtures import FACTS, make_run
from traitforge.llm.embedded import embedded_checkpoint
from traitforge.train import midtrain
from traitforge.train.common import StageJob

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

MAX_LEN = 64


def _texts() -> list[str]:
    # Lengths from a few tokens to several blocks, so some documents are split across blocks.
    return [" ".join(FACTS[: 1 + i % len(FACTS)]) * (1 + i % 5) + f" (doc {i})" for i in range(14)]


def test_midtrain_packs_full_blocks_with_eos_between_documents(tmp_path):
    store, spec = make_run(tmp_path, {"midtrain": {"max_length": MAX_LEN}})
    job = StageJob(name="midtrain", kind="midtrain", init_path=embedded_checkpoint(), stage=spec.training.midtrain,
                   train_dir=tmp_path / "train" / "midtrain", out_dir=tmp_path / "checkpoints" / "midtrain")
    texts = _texts()
    trainer = midtrain.make_trainer(spec.training, job, texts)
    tok, ds = trainer.processing_class, trainer.train_dataset
    eos = tok.eos_token_id
    rows, seg_lens = ds["input_ids"], ds["seq_lengths"]
    doc_tokens = [tok(t)["input_ids"] + [eos] for t in texts]
    total = sum(map(len, doc_tokens))
    assert any(len(d) > MAX_LEN for d in doc_tokens)  # the data does exercise splitting

    # Nothing dropped or added: every token of every document (and its EOS) is in exactly one block.
    assert sum(map(len, rows)) == total
    assert sorted(t for r in rows for t in r) == sorted(t for d in doc_tokens for t in d)

    # Documents are separated by EOS: one EOS per document, each at the end of a packed segment;
    # a segment without one is a piece of a split document.
    assert sum(r.count(eos) for r in rows) == len(texts)
    for row, lens in zip(rows, seg_lens):
        assert sum(lens) == len(row) <= MAX_LEN
        start = 0
        for n in lens:
            seg = row[start:start + n]
            assert eos not in seg[:-1]
            start += n

    # Blocks are full. TRL's bfd_split is best-fit, not "wrapped", so a few blocks may be a little short
    # (it keeps documents whole where they fit); still no more blocks than the tokens strictly need, or one more.
    assert len(rows) <= math.ceil(total / MAX_LEN) + 1
    assert total / (len(rows) * MAX_LEN) >= 0.95

    # What a step sees: the padding-free collator flattens a batch into one row with no padding at all.
    batch = trainer.data_collator([ds[i] for i in range(min(4, len(ds)))])
    assert batch["input_ids"].shape[0] == 1 and "attention_mask" not in batch
    assert batch["input_ids"].shape[1] == sum(len(rows[i]) for i in range(min(4, len(ds))))
    assert (batch["position_ids"] == 0).sum().item() == sum(len(seg_lens[i]) for i in range(min(4, len(ds))))


def _padded_positions(trainer) -> tuple[int, int]:
    """(positions, non-padding tokens) over one pass of the trainer's own dataloader."""
    positions = tokens = 0
    for batch in trainer.get_train_dataloader():
        positions += batch["input_ids"].numel()
        tokens += int(batch["attention_mask"].sum())
    return positions, tokens


def test_sft_batches_group_similar_lengths(tmp_path):
    """Unpacked SFT batches pad to their own longest chat: with chats of very different lengths,
    length grouping leaves far fewer padded positions than random batches, on the same chats."""
    from traitforge.train import sft

    short = [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]
    long_reply = " ".join(FACTS) * 2
    convs = [short if i % 4 else [short[0], {"role": "assistant", "content": long_reply}] for i in range(32)]
    got = {}
    for grouped in (True, False):
        _, spec = make_run(tmp_path / str(grouped), {"sft": {"max_length": 256, "batch_size": 4},
                                                     "group_by_length": grouped})
        job = StageJob(name="sft", kind="sft", init_path=embedded_checkpoint(), stage=spec.training.sft,
                       train_dir=tmp_path / str(grouped) / "train", out_dir=tmp_path / str(grouped) / "ck")
        got[grouped] = _padded_positions(sft.make_trainer(spec.training, job, convs))
    assert got[True][1] == got[False][1]  # the same tokens are trained either way
    # 8 long chats in 32: random batches of 4 mostly hold one and pad to it; grouped, they share 2 batches.
    assert got[True][0] < 0.6 * got[False][0], got
