import pytest

from _train_fixtures import one_torch_thread  # noqa: F401  (fixture)
from _train_fixtures import generate, losses, make_run, weight_changes
from traitforge.train import run_training
from traitforge.pipeline import Run
from traitforge.train.run import stage_name

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


def test_sft_full_finetune_learns_saves_and_generates(tmp_path):
    # Full fine-tuning (the midtrain test covers LoRA); one save at the end keeps the test short.
    store, spec = make_run(tmp_path, {"method": "full", "save_steps": 100,
                                      "sft": {"learning_rate": 5e-5, "max_steps": 4}})
    out = run_training(Run.of(store, spec), spec.training, ["sft"])
    ckpt = tmp_path / "checkpoints" / "sft"
    assert out == {"sft": ckpt}
    assert (ckpt / "model.safetensors").is_file() and (ckpt / "tokenizer.json").is_file()

    ls = losses(tmp_path / "train" / "sft" / "metrics.jsonl")
    assert len(ls) == 4 and ls[-1] < ls[0] * 0.9, ls

    c = store.manifest["stages"][stage_name("sft")]["counts"]
    assert c["examples"] == 4 and c["steps"] == 4
    assert 0 < c["trained_tokens"] < c["tokens"]  # the loss only sees assistant tokens
    # Done: Trainer checkpoints (model + optimizer) are removed, the exported one stays.
    assert not list((tmp_path / "train" / "sft" / "trainer").glob("checkpoint-*"))

    # The checkpoint answers through the local: backend with the template's chat format.
    text = generate(ckpt, "What is the capital of Atlantis?")
    assert isinstance(text, str) and text.strip()


def test_sft_lora_learns_merges_and_generates(tmp_path):
    # LoRA (the test above covers full fine-tuning); one save at the end keeps the test short.
    store, spec = make_run(tmp_path, {"save_steps": 100})
    ckpt = tmp_path / "checkpoints" / "sft"
    assert run_training(Run.of(store, spec), spec.training, ["sft"]) == {"sft": ckpt}
    # A plain checkpoint with the adapter merged in: no adapter files, the attention/MLP weights changed,
    # the weights LoRA does not touch (norms) exactly the base's.
    assert (ckpt / "model.safetensors").is_file() and not (ckpt / "adapter_config.json").exists()
    changes = weight_changes(ckpt)
    assert max(v for k, v in changes.items() if "proj" in k) > 0
    assert max(v for k, v in changes.items() if "layernorm" in k) == 0

    ls = losses(tmp_path / "train" / "sft" / "metrics.jsonl")
    assert len(ls) == 4 and ls[-1] < ls[0] * 0.9, ls
    assert generate(ckpt, "What is the capital of Atlantis?").strip()
