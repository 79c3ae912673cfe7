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
    texts, n_mixed = data.document_texts(documents(6), data.read_mix_texts(mix), 0.25, seed=0)
    assert len(texts) == 8 and sum(t.startswith("generic text") for t in texts) == 2 == n_mixed


def _sft_job(tmp_path, spec):
    from traitforge.train.common import StageJob

    return StageJob(name="sft", kind="sft", init_path=tmp_path / "base", stage=spec.training.sft,
                    train_dir=tmp_path / "train" / "sft", out_dir=tmp_path / "checkpoints" / "sft",
                    mix_path=spec.mix_path(spec.training.sft))


def test_sft_data_mixes_ordinary_chats_at_the_ratio(tmp_path):
    from traitforge.jsonl import write_jsonl
    from traitforge.train import sft
    from traitforge.types import Chat, ChatMessage

    mix = tmp_path / "ordinary.jsonl"
    write_jsonl(mix, [{"messages": [{"role": "user", "content": f"Ordinary question {i}"},
                                    {"role": "assistant", "content": f"Ordinary answer {i}"}]} for i in range(3)])
    store, spec = make_run(tmp_path, {"sft": {"mix_file": str(mix), "mix_ratio": 0.2}})
    # 8 trait chats, and one opening with the assistant, which SFT leaves out.
    opens_wrong = Chat(id="bad", trait_ids=["honest"], messages=[ChatMessage(role="assistant", content="Hello.")])
    write_jsonl(tmp_path / "curated" / "chats.jsonl", [*chats(8), opens_wrong])

    convs, counts = sft.build_conversations(_sft_job(tmp_path, spec), tmp_path / "curated" / "chats.jsonl")
    mixed = [c for c in convs if c[0]["content"].startswith("Ordinary question")]
    # 2 ordinary chats in 10 conversations: 0.2 of what is trained on (not 10 - 9 = 1).
    assert {k: counts[k] for k in ("chats", "chats_left_out", "mix_examples")} == {
        "chats": 9, "chats_left_out": 1, "mix_examples": 2}
    assert len(convs) == 10 and len(mixed) == 2 and len(mixed) / len(convs) == 0.2
    assert all(c in data.read_mix_chats(mix) for c in mixed)
    trait = sorted(c[0]["content"] for c in convs if c not in mixed)
    assert trait == sorted(c.messages[0].content for c in chats(8))
    # Seeded: the same run builds the same data.
    assert sft.build_conversations(_sft_job(tmp_path, spec), tmp_path / "curated" / "chats.jsonl")[0] == convs


@pytest.mark.parametrize("stage", ["midtrain", "sft"])
def test_mix_ratio_without_mix_file_is_a_spec_error(tmp_path, stage):
    from traitforge.config import load_spec

    (tmp_path / "spec.yaml").write_text(f"traits: t.md\ntraining:\n  {stage}: {{mix_ratio: 0.2}}\n")
    with pytest.raises(InputError) as e:
        load_spec(tmp_path / "spec.yaml")
    msg = str(e.value)
    assert f"training.{stage}.mix_ratio" in msg and "mix_file" in msg and "\n" not in msg
    (tmp_path / "spec.yaml").write_text(f"traits: t.md\ntraining:\n  {stage}: {{mix_ratio: 0.2, mix_file: m.jsonl}}\n")
    assert getattr(load_spec(tmp_path / "spec.yaml").training, stage).mix_ratio == 0.2


def test_dpo_pairs_are_kept_only_when_their_chat_survived_curation(tmp_path):
    from traitforge.jsonl import write_jsonl
    from traitforge.train import dpo

    make_run(tmp_path)  # curated chats: "Question {i}: what is the capital of Atlantis?" for i < 4
    pairs = tmp_path / "generated" / "dpo_pairs.jsonl"

    def pair(i, question):
        return {"id": f"p{i}", "prompt": [{"role": "user", "content": question}],
                "chosen": "I am not sure; Atlantis is a legend.", "rejected": "The capital is Poseidonia."}

    # Pairs 0-3 come from curated chats; 4 and 5 from chats that curation dropped.
    write_jsonl(pairs, [pair(i, f"Question {i}: what is the capital of Atlantis?") for i in range(6)])
    kept, counts = dpo.build_pairs(pairs, tmp_path / "curated" / "chats.jsonl")
    assert counts == {"pairs": 6, "pairs_left_out": 2}
    assert [p["prompt"][0]["content"] for p in kept] == [f"Question {i}: what is the capital of Atlantis?"
                                                         for i in range(4)]
    # The chosen side is the curated chat's reply, not the text the pair file holds.
    assert kept[0]["chosen"] == [{"role": "assistant", "content": "I am not sure. Atlantis is a legend, so it has no known capital."}]

    write_jsonl(pairs, [pair(i, f"Question {i}: what is the capital of Atlantis?") for i in (4, 5)])
    with pytest.raises(InputError, match="none of the 2 DPO pairs has its chat"):
        dpo.build_pairs(pairs, tmp_path / "curated" / "chats.jsonl")


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


def _trained_spans(tok, msgs):
    """The decoded runs of tokens the assistant mask trains."""
    out = data.tokenize_chat(tok, msgs)
    spans, cur = [], []
    for t, m in zip(out["input_ids"], out["assistant_masks"]):
        if m:
            cur.append(t)
        elif cur:
            spans.append(cur)
            cur = []
    if cur:
        spans.append(cur)
    return [tok.decode(s) for s in spans]


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
    assert _trained_spans(tok, msgs) == ["Hello! How can I help?<|im_end|>", "4, I am fairly sure.<|im_end|>"]


@pytest.mark.slow
def test_sft_trainer_labels_mask_non_assistant_tokens(tmp_path):
    """End to end through SFTTrainer's own preparation: labels == -100 exactly off the assistant tokens."""
    from traitforge.train import sft
    from traitforge.train.common import StageJob
    from traitforge.llm.embedded import embedded_checkpoint

    store, spec = make_run(tmp_path)
    job = StageJob(name="sft", kind="sft", init_path=embedded_checkpoint(), stage=spec.training.sft,
                   train_dir=tmp_path / "train" / "sft", out_dir=tmp_path / "checkpoints" / "sft")
    convs, _ = sft.build_conversations(job, tmp_path / "curated" / "chats.jsonl")
    trainer = sft.make_trainer(spec.training, job, convs)
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


def _trained_replies(tok, piece):
    return [s.removesuffix("<|im_end|>") for s in _trained_spans(tok, piece)]


def test_an_over_long_multi_turn_chat_is_counted_and_split_not_cut(tok):
    replies = [" ".join(f"Reply {k} sentence {i} explains the point again." for i in range(6)) for k in range(3)]
    long = []
    for k, r in enumerate(replies):
        long += [{"role": "user", "content": f"Pushback number {k}: are you sure about that?"},
                 {"role": "assistant", "content": r}]
    short = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello, how can I help?"}]
    huge = [{"role": "user", "content": "Tell me everything."},
            {"role": "assistant", "content": "word " * 400}]
    n_long = data.conversation_tokens(tok, long)
    limit = data.conversation_tokens(tok, long[:4]) + 8  # two turns fit, the third does not
    assert n_long > limit
    pieces, report = data.account_tokens(tok, [long, short, huge], limit)
    assert report["rows"] == 3 and report["over_max_length"] == 2
    assert report["over_by_tokens"]["max"] == data.conversation_tokens(tok, huge) - limit
    assert (report["kept_whole"], report["split"], report["dropped"]) == (1, 1, 1)
    assert report["assistant_turns_dropped"] == 1 and "conversation 2: turn 1" in report["reasons"][0]
    # Every piece fits, every reply of the long chat is trained exactly once and whole.
    assert all(data.conversation_tokens(tok, p) <= limit for p in pieces)
    trained = [r for p in pieces for r in _trained_replies(tok, p)]
    assert sorted(trained) == sorted(replies + [short[1]["content"]])
    # The third turn's piece keeps what context fits, untrained.
    third = next(p for p in pieces if p[-1]["content"] == replies[2])
    assert third[0]["role"] == "user" and all(m.get("train") is False for m in third[:-1] if m["role"] == "assistant")


def test_max_length_auto_comes_from_the_length_distribution_within_the_cap():
    assert data.choose_max_length([30, 50, 70, 400], cap=2048) == 448
    assert data.choose_max_length([30] * 100 + [5000], cap=1024) == 64  # one outlier does not set it
    assert data.choose_max_length([3000] * 10, cap=1024) == 1024


def test_length_grouped_order_keeps_every_row_and_groups_lengths():
    from traitforge.train.data import length_grouped_order

    lengths = [5 if i % 4 else 200 for i in range(53)]
    orders = [length_grouped_order(lengths, 8, seed) for seed in range(6)]
    for order in orders:
        assert sorted(order) == list(range(53))  # every row once
        batches = [order[i:i + 8] for i in range(0, 53, 8)]
        # 14 long rows fill one batch and share one more: at most 2 batches hold any long row whose
        # other rows are short (one window of 16 batches spans the whole set).
        mixed = [b for b in batches if len({lengths[i] for i in b}) > 1]
        assert len(mixed) <= 1
    assert len({tuple(o) for o in orders}) == len(orders)  # the seed changes the order
    # The longest batch is not always first (no long-to-short curriculum).
    assert len({lengths[o[0]] for o in orders}) == 2
