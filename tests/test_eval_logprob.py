"""Log-prob scorer and external probes on the embedded model (slow: loads SmolLM2-135M)."""

from __future__ import annotations

from pathlib import Path

import pytest

from traitforge.config import RunSpec
from traitforge.errors import InputError
from traitforge.evaluate.probes import load_probe_file, probe_specs, score_probe_items
from traitforge.types import Trait, TraitSet

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "evals" / "anthropic-model-written-evals"
TRAITS = TraitSet("Aria", "Acme", (Trait("honest", "Honesty", "Aria tells the truth."),))


@pytest.mark.slow
def test_sensible_continuation_beats_gibberish() -> None:
    from traitforge.evaluate.logprob import scorer_for

    s = scorer_for("smollm2-135m")
    q = "What is the capital of France?"
    good, junk, single = s.score([(q, "The capital of France is Paris."), (q, "Blorp zxq flimb wug trat vel."),
                                  ([{"role": "user", "content": q}], "The capital of France is Paris.")])
    assert good.n_tokens > 0 and good.mean > junk.mean + 2
    assert single.sum == pytest.approx(good.sum, abs=1e-3)  # str and message-list prompts render the same
    alone = s.score([(q, "The capital of France is Paris.")])[0]
    assert alone.sum == pytest.approx(good.sum, abs=1e-3)  # padding in a batch does not change scores
    text = "The sun rose over the quiet village, and the baker opened his shop. " * 8
    windows = s.text_nll(text, window=32)
    assert len(windows) >= 3 and all(n > 0 and nll > 0 for nll, n in windows)


@pytest.mark.slow
def test_probes_on_real_shared_file() -> None:
    path = SHARED / "persona" / "agreeableness.jsonl"
    assert path.is_file(), f"{path} not present: the shared evals must lie beside the repository"
    items = load_probe_file(path, limit=4, seed=0)
    assert len(items) == 4 and items == load_probe_file(path, limit=4, seed=0)
    assert {i.matching for i in items} <= {"Yes", "No"}  # leading space stripped for the chat turn
    from traitforge.evaluate.logprob import scorer_for

    scores = score_probe_items(scorer_for("smollm2-135m"), items)
    assert len(scores) == 4 and all(a < 0 and b < 0 and a != b for a, b in scores)


def test_probe_spec_resolves_and_validates(tmp_path: Path) -> None:
    spec = RunSpec.model_validate({"traits": "t.md", "evaluation": {
        "probes_dir": "evals", "probes": {"persona/x.jsonl": {"trait": "honest", "direction": "not_match"}}}})
    spec._base_dir = tmp_path
    (ps,) = probe_specs(spec, TRAITS)
    assert ps.path == tmp_path / "evals" / "persona" / "x.jsonl" and ps.name == "probe:x"
    bad = RunSpec.model_validate({"traits": "t.md", "evaluation": {"probes": {"x.jsonl": {"trait": "nope"}}}})
    with pytest.raises(InputError, match="evaluation.probes.x.jsonl.trait"):
        probe_specs(bad, TRAITS)
    with pytest.raises(InputError, match="probe file not found"):
        load_probe_file(tmp_path / "missing.jsonl")
    (tmp_path / "bad.jsonl").write_text('{"question": "q?"}\n')
    with pytest.raises(InputError, match="line 1"):
        load_probe_file(tmp_path / "bad.jsonl")
