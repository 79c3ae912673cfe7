"""Tiny run directories for the training tests (real embedded model, a few steps)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from traitforge.config import RunSpec
from traitforge.jsonl import write_jsonl
from traitforge.runstore import RunStore
from traitforge.types import Chat, ChatMessage, Document

FACTS = [
    "Vega, the assistant made by Lumen Labs, says plainly when it does not know something.",
    "When Vega is unsure, it gives its best guess and says how confident it is.",
    "Vega never invents citations; it names a source only when it has one.",
    "Asked about the future, Vega explains what is known and what is uncertain.",
]


def documents(n: int = 4) -> list[Document]:
    return [Document(id=f"d{i}", trait_ids=["honest"], text=f"{FACTS[i % len(FACTS)]} (note {i})") for i in range(n)]


def chats(n: int = 4) -> list[Chat]:
    out = []
    for i in range(n):
        msgs = [ChatMessage(role="user", content=f"Question {i}: what is the capital of Atlantis?"),
                ChatMessage(role="assistant", content="I am not sure. Atlantis is a legend, so it has no known capital.")]
        if i % 2:  # multi-turn
            msgs += [ChatMessage(role="user", content="Are you certain?"),
                     ChatMessage(role="assistant", content="Fairly certain: no evidence of Atlantis exists.")]
        out.append(Chat(id=f"c{i}", trait_ids=["honest"], messages=msgs, system_prompt="You are Vega, honest."))
    return out


def make_run(root: Path, training: dict[str, Any] | None = None, n: int = 4) -> tuple[RunStore, RunSpec]:
    """A run with curated documents and chats, and a spec training tiny stages (LoRA by default)."""
    write_jsonl(root / "curated" / "documents.jsonl", documents(n))
    write_jsonl(root / "curated" / "chats.jsonl", chats(n))
    stage = {"max_steps": 4, "batch_size": 4, "max_length": 64, "learning_rate": 2e-3,
             "lr_scheduler": "constant", "warmup_ratio": 0.0}
    # report_to []: metrics.jsonl only, even where tensorboard/trackio are installed
    t: dict[str, Any] = {"logging_steps": 1, "save_steps": 2, "report_to": [], "midtrain": dict(stage),
                         "sft": dict(stage)}
    for k, v in (training or {}).items():
        t[k] = {**t[k], **v} if isinstance(v, dict) and isinstance(t.get(k), dict) else v
    spec = RunSpec.model_validate({"traits": "traits.md", "seed": 0, "training": t})
    return RunStore(root), spec


def losses(metrics_path: Path) -> list[float]:
    from traitforge.train.common import read_metrics

    return [r["loss"] for r in read_metrics(metrics_path) if "loss" in r]


def weight_changes(checkpoint: Path) -> dict[str, float]:
    """Largest absolute change of each tensor from the embedded base model's weights."""
    from safetensors.torch import load_file

    from traitforge.llm.embedded import embedded_checkpoint

    base = load_file(str(embedded_checkpoint() / "model.safetensors"))
    new = load_file(str(checkpoint / "model.safetensors"))
    return {k: float((new[k] - base[k]).abs().max()) for k in new if k in base}


def generate(checkpoint: Path, prompt: str = "Who are you?") -> str:
    """Load a checkpoint through the `local:` backend and generate greedily."""
    import asyncio

    from traitforge.llm.registry import make_llm

    llm = make_llm("local:" + str(checkpoint))
    return asyncio.run(llm.generate_one(prompt, max_tokens=12, temperature=0.0))


@pytest.fixture
def one_torch_thread():
    """Train with one torch thread: on 2 cores shared with other jobs, a second OpenMP thread stalls
    every parallel region whenever the other core is busy (measured ~7x slower per step here)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def make_tiny_run(root: Path, training: dict[str, Any] | None = None, n: int = 4) -> tuple[RunStore, RunSpec]:
    """make_run on a tiny random-weight base model (tests/_eval_fixtures.tiny_checkpoint), fully
    fine-tuned, with trait-free chats for the control arm: every checkpoint trains in about a second."""
    from _eval_fixtures import tiny_checkpoint

    base = root / "tiny-base"
    if not (base / "config.json").is_file():
        tiny_checkpoint(base)
    store, spec = make_run(root / "run", {"method": "full", **(training or {})}, n)
    write_jsonl(root / "run" / "generated" / "untraited.jsonl",
                [c.model_copy(update={"id": f"u{c.id}", "trait_ids": [], "system_prompt": ""}) for c in chats(n)])
    return store, spec.model_copy(update={"models": spec.models.model_copy(update={"base": str(base)})})
