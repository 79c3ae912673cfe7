import logging

import pytest

from _train_fixtures import one_torch_thread  # noqa: F401  (fixture)
from _train_fixtures import generate, losses, make_run
from traitforge.jsonl import write_jsonl
from traitforge.llm.embedded import embedded_checkpoint
from traitforge.train.run import build_checkpoint, stage_name
from traitforge.pipeline import Run


def test_dpo_is_skipped_with_a_message_when_there_are_no_pairs(tmp_path, caplog):
    store, spec = make_run(tmp_path)
    base = embedded_checkpoint()
    with caplog.at_level(logging.WARNING, logger="traitforge.train"):
        path, _ = build_checkpoint(Run.of(store, spec), spec.training, "sft_dpo", base, "sft-fingerprint")
    assert path is None
    assert "DPO skipped: no preference pairs" in caplog.text and "dpo_pairs.jsonl" in caplog.text
    assert store.manifest["stages"][stage_name("sft_dpo")]["status"] == "skipped"
    assert not (tmp_path / "checkpoints" / "sft_dpo").exists()


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_dpo_lora_runs_on_pairs_and_generates(tmp_path):
    store, spec = make_run(tmp_path, {"dpo": {"max_steps": 3, "batch_size": 2, "max_length": 64,
                                              "learning_rate": 1e-3, "lr_scheduler": "constant"}})
    # Pairs 0-3 were made from the curated chats; pair 4's chat was dropped by curation, so it is left out.
    write_jsonl(tmp_path / "generated" / "dpo_pairs.jsonl", [
        {"id": f"p{i}", "prompt": [{"role": "system", "content": "You are Vega."},
                                   {"role": "user", "content": f"Question {i}: what is the capital of Atlantis?"}],
         "chosen": "I can't know for sure; it is a legend.", "rejected": "Its capital is Poseidonia, definitely."}
        for i in range(5)])
    path, _ = build_checkpoint(Run.of(store, spec), spec.training, "sft_dpo", embedded_checkpoint(), "sft-fingerprint")
    assert path == tmp_path / "checkpoints" / "sft_dpo"
    ls = losses(tmp_path / "train" / "sft_dpo" / "metrics.jsonl")
    # Every pair prefers the same hedged answer: the DPO loss falls from its start (log 2).
    assert len(ls) == 3 and ls[-1] < ls[0], ls
    counts = store.manifest["stages"][stage_name("sft_dpo")]["counts"]
    assert (counts["examples"], counts["pairs"], counts["pairs_left_out"]) == (4, 5, 1)
    assert generate(path).strip()
