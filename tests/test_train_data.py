import json

import pytest

from _train_fixtures import chats, make_run
from traitforge.errors import InputError
from traitforge.train import data


@pytest.fixture(scope="module")
def tok():
    from traitforge.llm.embedded import embedded_checkpoint
    from traitforge.train.common import load_tokenizer

    return load_tokenizer(embedded_checkpoint())


def test_mix_count_and_sampling():
    assert data.mix_count(90, 0.1) == 10  # 10 / (90 + 10)
    assert data.mix_count(10, 0.0) == 0
    rows = data.sample_rows(["a", "b", "c"], 7, seed=1)
    assert len(rows) == 7 and set(rows) == {"a", "b", "c"}  # cycles through a small file
    assert rows == data.sample_rows(["a", "b", "c"], 7, seed=1)


def test_document_texts_mix_share(tmp_path):
    from _train_fixtures import documents

    mix = tmp_path / "web.jsonl"
    mix.write_text("".join(json.dumps({"text": f"generic text {i}"}) + "\n" for i in range(3)))
    texts = data.document_texts(documents(6), data.read_mix_texts(mix), 0.25, seed=0)
    assert len(texts) == 8 and sum(t.startswith("generic text") for t in texts) == 2


def test_bad_mix_files_name_the_row(tmp_path):
    bad = tmp_path / "mix.jsonl"
    bad.write_text(json.dumps({"text": 3}) + "\n")
    with pytest.raises(InputError, match="row 1: field 'text'"):
        data.read_mix_texts(bad)
    bad.write_text(json.dumps({"messages": [{"role": "bot", "content": "x"}]}) + "\n")
    with pytest.raises(InputError, match=r"row 1: messages\[0\]"):
        data.read_mix_chats(bad)
    bad.write_text(json.dumps({"id": "p", "prompt": [{"role": "user", "content": "q"}], "chosen": "a"}) + "\n")
    with pytest.raises(InputError, match="row 1: field 'rejected'"):
        data.load_dpo_pairs(bad)


def test_load_chats_drops_the_teacher_system_prompt(tmp_path):
    store, _ = make_run(tmp_path)
    convs = data.load_chats(tmp_path / "curated" / "chats.jsonl")
    assert all(m["role"] in ("user", "assistant") for c in convs for m in c)
    assert all("Vega, honest" not in m["content"] for c in convs for m in c)


def test_assistant_mask_is_exactly_the_assistant_replies(tok):
    msgs = [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi there"},
            {"role": "assistant", "content": "Hello! How can I help?"},
            {"role": "user", "content": "What is 2+2?"},
            {"role": "assistant", "content": "4, I am fairly sure."}]
    out = data.tokenize_chat(tok, msgs)
    ids, mask = out["input_ids"], out["assistant_masks"]
    # Same tokens as rendering and tokenizing the whole conversation at once (what inference sees).
    assert ids == tok(tok.apply_chat_template(msgs, tokenize=False), add_special_tokens=False)["input_ids"]
    # The trained tokens are exactly each reply followed by its end-of-turn token.
    spans, cur = [], []
    for t, m in zip(ids, mask):
        if m:
            cur.append(t)
        elif cur:
            spans.append(cur)
            cur = []
    if cur:
        spans.append(cur)
    assert [tok.decode(s) for s in spans] == ["Hello! How can I help?<|im_end|>", "4, I am fairly sure.<|im_end|>"]


@pytest.mark.slow
def test_sft_trainer_labels_mask_non_assistant_tokens(tmp_path):
    """End to end through SFTTrainer's own preparation: labels == -100 exactly off the assistant tokens."""
    from traitforge.train import sft
    from traitforge.train.common import StageJob
    from traitforge.llm.embedded import embedded_checkpoint

    store, spec = make_run(tmp_path)
    job = StageJob(name="sft", kind="sft", init_path=embedded_checkpoint(), stage=spec.training.sft,
                   train_dir=tmp_path / "train" / "sft", out_dir=tmp_path / "checkpoints" / "sft")
    convs, _ = sft.build_conversations(spec, job, tmp_path / "curated" / "chats.jsonl")
    trainer = sft.make_trainer(spec, job, convs)
    tok = trainer.processing_class
    ds = trainer.train_dataset
    assert len(ds) == len(convs) == 4
    for row, conv in zip(ds, convs):
        want = data.tokenize_chat(tok, conv)
        n = len(row["input_ids"])  # truncated to max_length=64 (keep start)
        assert row["input_ids"] == want["input_ids"][:n]
        assert row["labels"] == [t if m else -100 for t, m in zip(want["input_ids"][:n], want["assistant_masks"][:n])]
        assert any(lbl != -100 for lbl in row["labels"])
    # One real collated batch keeps that masking (padding is -100 too).
    batch = trainer.data_collator([ds[i] for i in range(2)])
    assert ((batch["labels"] == -100) | (batch["labels"] == batch["input_ids"])).all()
    assert ((batch["attention_mask"] == 0) <= (batch["labels"] == -100)).all()
