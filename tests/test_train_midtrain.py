import pytest

from _train_fixtures import one_torch_thread  # noqa: F401  (fixture)
from _train_fixtures import generate, losses, make_run, weight_changes
from traitforge.train import run_training
from traitforge.pipeline import Run
from traitforge.train.run import stage_name

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


def test_midtrain_lora_learns_saves_and_generates(tmp_path):
    store, spec = make_run(tmp_path)
    out = run_training(Run.of(store, spec), spec.training, ["midtrain"])
    ckpt = tmp_path / "checkpoints" / "midtrain"
    assert out == {"midtrain": ckpt}

    # A plain merged HF checkpoint (no adapter files) with the tokenizer and chat template.
    assert (ckpt / "model.safetensors").is_file() and not (ckpt / "adapter_config.json").exists()
    assert (ckpt / "chat_template.jinja").is_file() or "chat_template" in (ckpt / "tokenizer_config.json").read_text()

    # The same 4 documents every step (batch 4): the loss must fall.
    ls = losses(tmp_path / "train" / "midtrain" / "metrics.jsonl")
    assert len(ls) == 4
    assert ls[-1] < ls[0] * 0.9, ls

    info = store.manifest["stages"][stage_name("midtrain")]
    assert info["status"] == "done"
    c = info["counts"]
    assert c["examples"] == 4 and c["steps"] == 4 and c["tokens"] > 0 and c["final_loss"] == ls[-1]

    text = generate(ckpt)
    assert isinstance(text, str) and text.strip()

    # Done and unchanged: a re-run skips training (no new metrics rows).
    n_rows = len((tmp_path / "train" / "midtrain" / "metrics.jsonl").read_text().splitlines())
    assert run_training(Run.of(store, spec), spec.training, ["midtrain"]) == {"midtrain": ckpt}
    assert len((tmp_path / "train" / "midtrain" / "metrics.jsonl").read_text().splitlines()) == n_rows


def test_midtrain_full_finetune_learns_saves_and_generates(tmp_path):
    # Full fine-tuning (the test above covers LoRA); one save at the end keeps the test short.
    store, spec = make_run(tmp_path, {"method": "full", "save_steps": 100, "midtrain": {"learning_rate": 5e-5}})
    ckpt = tmp_path / "checkpoints" / "midtrain"
    assert run_training(Run.of(store, spec), spec.training, ["midtrain"]) == {"midtrain": ckpt}
    assert (ckpt / "model.safetensors").is_file() and (ckpt / "tokenizer.json").is_file()

    ls = losses(tmp_path / "train" / "midtrain" / "metrics.jsonl")
    assert len(ls) == 4 and ls[-1] < ls[0] * 0.9, ls
    # Every weight trains, the norms too (LoRA would leave them as they were).
    changes = weight_changes(ckpt)
    assert min(v for k, v in changes.items() if "layernorm" in k) > 0

    assert generate(ckpt).strip()


def test_packed_documents_do_not_attend_across_boundaries(tmp_path):
    """Padding-free packing: logits of each document in a packed row equal its logits alone."""
    import torch

    from traitforge.llm.embedded import embedded_checkpoint
    from traitforge.train.common import load_tokenizer
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling
    from transformers import AutoModelForCausalLM

    path = embedded_checkpoint()
    tok = load_tokenizer(path)
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()
    a = tok("Vega says plainly when it does not know.")["input_ids"] + [tok.eos_token_id]
    b = tok("The moon is made of rock.")["input_ids"] + [tok.eos_token_id]
    batch = DataCollatorForLanguageModeling(pad_token_id=tok.pad_token_id, padding_free=True)(
        [{"input_ids": a + b, "seq_lengths": [len(a), len(b)]}])
    assert "attention_mask" not in batch
    with torch.no_grad():
        # use_cache=False as in training (SFTTrainer.compute_loss sets it): the packed mask needs no cache.
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits[0]
        joined = model(input_ids=torch.tensor([a + b]), use_cache=False).logits[0]
        alone_b = model(input_ids=torch.tensor([b]), use_cache=False).logits[0]
    assert torch.allclose(packed[len(a):], alone_b, atol=1e-3)
    assert not torch.allclose(joined[len(a):], alone_b, atol=1e-1)  # without packing info, b would see a
