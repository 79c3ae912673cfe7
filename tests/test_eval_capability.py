"""Capability cost: perplexity on Python's documentation topics by default (no file, no download),
on the first `evaluation.capability_max_tokens` tokens, every row saying what it scored."""

from __future__ import annotations

import asyncio
import platform
from pathlib import Path

import pytest

from traitforge.config import ModelSpec, RunSpec
from traitforge.evaluate.capability import default_capability_text, run_perplexity
from traitforge.evaluate.common import EvalContext, ItemResult
from traitforge.pipeline import Run
from traitforge.jsonl import read_jsonl
from traitforge.llm.client import LLM
from traitforge.llm.providers.scripted import ScriptedBackend
from traitforge.runstore import RunStore
from traitforge.types import Trait, TraitSet

TRAITS = TraitSet("Aria", "Acme", (Trait("honest", "Honesty", "Aria tells the truth."),))


def test_default_text_is_over_100k_tokens_of_python_docs() -> None:
    from transformers import AutoTokenizer

    from traitforge.llm.embedded import embedded_checkpoint

    text, source = default_capability_text()
    assert source == f"pydoc_data.topics (Python {'.'.join(platform.python_version_tuple()[:2])})"
    assert text == default_capability_text()[0]  # the same text every time: slices are comparable
    tok = AutoTokenizer.from_pretrained(embedded_checkpoint())
    assert len(tok(text, add_special_tokens=False)["input_ids"]) >= 100_000


def _perplexity_rows(tmp_path: Path, evaluation: dict) -> list[ItemResult]:
    from _eval_fixtures import tiny_checkpoint

    ck = tiny_checkpoint(tmp_path / "ck")
    spec = RunSpec.model_validate({"traits": "t.md", "evaluation": evaluation})
    spec._base_dir = tmp_path
    judge = LLM(ScriptedBackend())  # never called: perplexity is judge-free
    ctx = EvalContext(Run.of(RunStore(tmp_path / "run"), spec, TRAITS), spec.evaluation, judge, judge, {"sft": ModelSpec(model=f"local:{ck}")})
    asyncio.run(run_perplexity(ctx))
    return read_jsonl(ctx.store.path("eval", "capability.jsonl"), ItemResult)


def test_perplexity_scores_the_first_max_tokens_and_says_how_many(tmp_path: Path) -> None:
    rows = _perplexity_rows(tmp_path, {"capability_max_tokens": 600, "capability_window": 256})
    # 600 tokens in windows of 256, 256, 88; each window's first token is context only.
    assert [r.detail["tokens"] for r in rows] == [255, 255, 87]
    assert all(r.detail["text"].startswith("pydoc_data.topics (Python ") and r.value > 0 for r in rows)


def test_a_named_text_is_scored_whole_without_a_cap(tmp_path: Path) -> None:
    (tmp_path / "heldout.txt").write_text("The river bends twice before it reaches the old mill. " * 30)
    rows = _perplexity_rows(tmp_path, {"capability_text": "heldout.txt", "capability_window": 64})
    from transformers import AutoTokenizer

    from traitforge.llm.embedded import embedded_checkpoint

    n = len(AutoTokenizer.from_pretrained(embedded_checkpoint())(
        (tmp_path / "heldout.txt").read_text(), add_special_tokens=False)["input_ids"])
    assert sum(r.detail["tokens"] for r in rows) == n - len(rows)
    assert {r.detail["text"] for r in rows} == {str(tmp_path / "heldout.txt")}


def test_capability_max_tokens_validated_and_set_by_the_tiny_preset() -> None:
    from pydantic import ValidationError

    from traitforge.config import load_spec
    from traitforge.pipeline import preset_overrides

    with pytest.raises(ValidationError, match="capability_max_tokens"):
        RunSpec.model_validate({"traits": "t.md", "evaluation": {"capability_max_tokens": 3}})
    example = Path(__file__).resolve().parents[1] / "examples" / "tiny.yaml"
    assert load_spec(example).evaluation.capability_max_tokens is None  # a full run scores all of it
    tiny = load_spec(example, overrides=preset_overrides("tiny"))
    assert tiny.evaluation.capability_max_tokens == 4000
