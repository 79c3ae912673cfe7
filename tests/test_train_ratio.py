"""training.docs_to_chats (the documents-to-chats ratio) and the joint checkpoint's data."""

import json

import pytest

from _train_fixtures import chats, documents, make_run
from _train_fixtures import one_torch_thread  # noqa: F401  (fixture)
from traitforge.errors import InputError
from traitforge.jsonl import write_jsonl
from traitforge.train import data
from traitforge.train.common import StageJob
from traitforge.types import Chat, ChatMessage, Document


def _write(root, n_docs, n_chats, canary=0):
    docs = documents(n_docs) + [Document(id=f"k{i}", trait_ids=["canary"], text=f"Canary fact {i}.") for i in range(canary)]
    convs = chats(n_chats) + [Chat(id=f"kc{i}", trait_ids=["canary"], messages=[
        ChatMessage(role="user", content=f"Canary question {i}"), ChatMessage(role="assistant", content="Canary.")])
        for i in range(canary)]
    write_jsonl(root / "curated" / "documents.jsonl", docs)
    write_jsonl(root / "curated" / "chats.jsonl", convs)
    return docs, convs


def _job(tmp_path, spec, kind, cut, seed=0):
    stage = getattr(spec.training, "sft" if kind == "control" else kind)
    return StageJob(name=kind, kind=kind, init_path=tmp_path / "base", stage=stage, train_dir=tmp_path / "t",
                    out_dir=tmp_path / "c", seed=seed, cut=cut, template_traits=spec.curation.template_traits)


def _trait_chars(rows, size):
    return sum(size(r) for r in rows if "canary" not in r.trait_ids)


@pytest.mark.parametrize("ratio", [0.5, 2.0, 50.0])
def test_the_larger_side_is_cut_to_the_ratio_and_control_rows_stay(tmp_path, ratio):
    from traitforge.train import midtrain, sft

    store, spec = make_run(tmp_path, {"docs_to_chats": ratio})
    docs, convs = _write(tmp_path, 40, 40, canary=3)
    cut = data.ratio_cut(tmp_path / "curated" / "documents.jsonl", tmp_path / "curated" / "chats.jsonl",
                         ratio, spec.curation.template_traits)
    have = _trait_chars(docs, data.doc_chars) / _trait_chars(convs, data.chat_chars)
    assert cut.summary()["available"] == round(have, 3)
    # Exactly one side is cut, the larger one; nothing is repeated.
    assert (cut.doc_share < 1) == (have > ratio) and (cut.chat_share < 1) == (have < ratio)
    texts, dcounts = midtrain.build_texts(_job(tmp_path, spec, "midtrain", cut), tmp_path / "curated" / "documents.jsonl")
    convs_kept, ccounts = sft.build_conversations(_job(tmp_path, spec, "sft", cut), tmp_path / "curated" / "chats.jsonl")
    assert len(set(texts)) == len(texts) and dcounts["docs_to_chats"]["asked"] == ratio
    # The canary's rows are never cut: a control must reach training whole.
    assert sum(t.startswith("Canary fact") for t in texts) == 3
    assert sum(c[0]["content"].startswith("Canary question") for c in convs_kept) == 3
    trained = ((dcounts["document_chars"] - sum(len(f"Canary fact {i}.") for i in range(3)))
               / (ccounts["chat_chars"] - sum(len(f"Canary question {i}") + 7 for i in range(3))))
    # Closer to the ratio asked than the data was; within a row of it where a side keeps many rows
    # (at 50 the chats are cut to a single row, which holds more than 1/50 of the documents).
    assert abs(trained - ratio) < abs(have - ratio)
    if ratio < 10:
        assert trained == pytest.approx(ratio, rel=0.15)
    # Seeded: the same run cuts the same rows; another seed others.
    again, _ = midtrain.build_texts(_job(tmp_path, spec, "midtrain", cut), tmp_path / "curated" / "documents.jsonl")
    assert again == texts


def test_without_a_ratio_everything_is_trained(tmp_path):
    from traitforge.train import midtrain

    store, spec = make_run(tmp_path)
    docs, _ = _write(tmp_path, 12, 3)
    cut = data.ratio_cut(tmp_path / "curated" / "documents.jsonl", tmp_path / "curated" / "chats.jsonl", None, [])
    texts, counts = midtrain.build_texts(_job(tmp_path, spec, "midtrain", cut), tmp_path / "curated" / "documents.jsonl")
    assert len(texts) == 12 and "docs_to_chats" not in counts


def test_take_share_cuts_to_the_share_in_original_order():
    rows = [Document(id=str(i), trait_ids=["t"], text="x" * 10) for i in range(20)]
    kept = data.take_share(rows, 0.25, seed=3, size=data.doc_chars, controls=[])
    assert len(kept) == 5 and [r.id for r in kept] == sorted((r.id for r in kept), key=int)
    assert data.take_share(rows, 0.25, seed=4, size=data.doc_chars, controls=[]) != kept
    assert data.take_share(rows, 1.0, seed=3, size=data.doc_chars, controls=[]) == rows


def test_the_control_arm_matches_the_chats_as_cut(tmp_path):
    from traitforge.jsonl import read_jsonl
    from traitforge.train.run import control_data

    store, spec = make_run(tmp_path, {"docs_to_chats": 0.25})
    _write(tmp_path, 4, 40)
    untraited = [Chat(id=f"u{i}", trait_ids=[], messages=[ChatMessage(role="user", content=f"Q{i}"),
                                                           ChatMessage(role="assistant", content="A plain answer." * 3)])
                 for i in range(30)]
    write_jsonl(tmp_path / "generated" / "untraited.jsonl", untraited)
    cut = data.ratio_cut(tmp_path / "curated" / "documents.jsonl", tmp_path / "curated" / "chats.jsonl",
                         0.25, spec.curation.template_traits)
    assert cut.chat_share < 1
    size = lambda p: sum(map(data.chat_chars, read_jsonl(p, Chat)))  # noqa: E731
    full = size(control_data(store, "control", 0, None, spec.curation.template_traits))
    matched = size(control_data(store, "control", 0, cut, spec.curation.template_traits))
    curated = read_jsonl(tmp_path / "curated" / "chats.jsonl", Chat)
    target = sum(map(data.chat_chars, data.take_share(curated, cut.chat_share, 0, data.chat_chars, [])))
    assert target <= matched < target + 60 and matched < full


def test_joint_may_not_mix_and_is_a_checkpoint(tmp_path):
    from traitforge.config import load_spec

    (tmp_path / "spec.yaml").write_text("traits: t.md\ntraining:\n  checkpoints: [base, joint]\n"
                                        "  joint: {mix_ratio: 0.2, mix_file: m.jsonl}\n")
    with pytest.raises(InputError) as e:
        load_spec(tmp_path / "spec.yaml")
    assert "training.joint" in str(e.value) and "\n" not in str(e.value)
    (tmp_path / "spec.yaml").write_text("traits: t.md\ntraining:\n  checkpoints: [base, joint]\n  docs_to_chats: 0\n")
    with pytest.raises(InputError, match="training.docs_to_chats"):
        load_spec(tmp_path / "spec.yaml")


def test_joint_rows_are_documents_with_full_loss_and_chats_with_reply_loss(tmp_path):
    from traitforge.llm.embedded import embedded_checkpoint
    from traitforge.train.common import load_tokenizer

    tok = load_tokenizer(embedded_checkpoint())
    long_text = " ".join(["The assistant says plainly when it does not know."] * 30)
    rows = data.document_rows(tok, ["Short document.", long_text], max_length=64)
    n_long = len(tok(long_text, add_special_tokens=False)["input_ids"]) + 1
    assert len(rows) == 1 + -(-n_long // 64)  # the long one split into blocks, nothing dropped
    assert all(len(r["input_ids"]) <= 64 and set(r["assistant_masks"]) == {1} for r in rows)
    assert sum(len(r["input_ids"]) for r in rows[1:]) == n_long and rows[0]["input_ids"][-1] == tok.eos_token_id
    convs = data.training_messages(chats(2))
    ds = data.chat_dataset(tok, convs, rows, seed=0)
    assert len(ds) == 2 + len(rows)
    masks = [set(m) for m in ds["assistant_masks"]]
    assert sum(m == {0, 1} for m in masks) == 2 and sum(m == {1} for m in masks) == len(rows)


@pytest.mark.slow
def test_joint_checkpoint_trains_on_documents_and_chats_at_the_ratio(tmp_path, one_torch_thread):
    from _train_fixtures import losses
    from traitforge.train import run_training
    from traitforge.pipeline import Run
    from traitforge.train.run import stage_name

    store, spec = make_run(tmp_path, {"save_steps": 100, "docs_to_chats": 1.0, "checkpoints": ["base", "joint"],
                                      "joint": {"max_steps": 3, "batch_size": 4, "max_length": 64,
                                                "learning_rate": 2e-3, "lr_scheduler": "constant",
                                                "warmup_ratio": 0.0}})
    _write(tmp_path, 16, 4, canary=2)
    (tmp_path / "curation").mkdir()
    (tmp_path / "curation" / "dataset_card.json").write_text("{}")
    assert run_training(Run.of(store, spec), spec.training) == {"joint": tmp_path / "checkpoints" / "joint"}
    c = store.manifest["stages"][stage_name("joint")]["counts"]
    # Both kinds of rows reached the one stage: documents as blocks, chats whole.
    assert c["examples"] == c["document_blocks"] + c["token_accounting"]["examples"]
    assert c["documents"] < 18 and c["chats"] == 6  # the documents were the larger side: cut
    assert c["docs_to_chats"]["asked"] == 1.0 and c["docs_to_chats"]["document_share"] < 1
    assert 0 < c["trained_tokens"] < c["tokens"]  # chats train their replies only
    assert len(losses(tmp_path / "train" / "joint" / "metrics.jsonl")) == 3
    assert (tmp_path / "checkpoints" / "joint" / "model.safetensors").is_file()
    card = json.loads((tmp_path / "curation" / "dataset_card.json").read_text())
    assert card["training_data"]["joint"]["docs_to_chats"] == c["docs_to_chats"]
