"""`traitforge estimate`: calls, tokens and cost per step from the spec alone, nothing sent or written;
the paper preset is valid and at the method's scale."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from scripted_generator import make_traits

from traitforge.cli import cli
from traitforge.config import load_spec
from traitforge.estimate import estimate
from traitforge.pipeline import preset_overrides

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def spec_file(tmp_path: Path, models: str) -> Path:
    (tmp_path / "traits.md").write_text((EXAMPLES / "traits.md").read_text())
    path = tmp_path / "spec.yaml"
    path.write_text(f"traits: traits.md\noutput_dir: out\nmodels:\n{models}")
    return path


def test_paper_preset_estimate_counts_each_step(tmp_path):
    path = spec_file(tmp_path, "  generator: {model: gemini:gemini-2.5-pro, thinking_budget: 1000}\n"
                               "  judge: openai:gpt-4.1-mini\n  auditor: openai:gpt-4.1-mini\n")
    spec = load_spec(path, overrides=preset_overrides("paper"))
    traits = make_traits(3)
    rows = {r.step: r for r in estimate(spec, traits)}
    ds = spec.generation.documents
    docs = 3 * ds.claims_per_trait * ds.doc_types_per_claim * ds.ideas_per_type * ds.docs_per_idea
    assert docs >= 1000  # the method's scale: thousands of documents for a full traits document
    assert rows["documents.drafts"].calls == docs and rows["documents.revise"].calls == docs
    # Output: each call's limit plus the thinking room (thinking is billed as output).
    assert rows["documents.drafts"].output_tokens == docs * (ds.max_tokens + 1000)
    assert rows["chats.responses"].calls == 3 * spec.generation.chats.scenarios_per_trait * 2
    assert rows["curate.quality"].model == "openai:gpt-4.1-mini"
    assert all(r.usd is not None and r.usd > 0 for r in rows.values())
    # gemini-2.5-pro at its listed price: input 1.25, output 10 USD per million tokens.
    d = rows["documents.drafts"]
    assert abs(d.usd - (d.input_tokens * 1.25 + d.output_tokens * 10) / 1e6) < 1e-6


def test_estimate_command_prints_a_table_and_writes_nothing(tmp_path):
    path = spec_file(tmp_path, "  generator: gemini:gemini-2.5-flash\n  judge: local:smollm2-135m\n"
                               "  auditor: openai:my-unpriced-model\n")
    result = CliRunner().invoke(cli, ["estimate", str(path), "--preset", "paper"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[1].split()[:3] == ["step", "model", "calls"]
    drafts = next(line for line in lines if line.startswith("documents.drafts"))
    assert "gemini:gemini-2.5-flash" in drafts
    assert any(line.startswith("curate.quality") and line.rstrip().endswith("0.00") for line in lines)  # local
    assert any(line.startswith("evaluate.multiturn (auditor)") and line.rstrip().endswith("?") for line in lines)
    assert any(line.startswith("= all paid steps") and ">=" in line for line in lines)  # one price unknown
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml", "traits.md"]


def test_tiny_preset_estimate_is_small_and_free():
    result = CliRunner().invoke(cli, ["estimate", str(EXAMPLES / "tiny.yaml"), "--preset", "tiny"])
    assert result.exit_code == 0, result.output
    total = next(line for line in result.output.splitlines() if line.startswith("= all paid steps"))
    assert total.split()[-1] == "0.00" and int(total.split()[4].replace(",", "")) < 1000


def test_paper_with_a_thinking_teacher_is_priced_and_shows_its_thinking(tmp_path):
    """The generator classes the method's write-up uses (Gemini 3.1 Pro, GPT-5) have a price, and the
    thinking room a reasoning setting allows is counted as output and shown apart."""
    for generator, rate_out in (("{model: gemini:gemini-3.1-pro-preview, thinking_level: high}", 12.0),
                                ("{model: openai:gpt-5, reasoning_effort: medium}", 10.0)):
        path = spec_file(tmp_path, f"  generator: {generator}\n  judge: gemini:gemini-2.5-flash\n"
                                   "  auditor: gemini:gemini-2.5-flash\n")
        result = CliRunner().invoke(cli, ["estimate", str(path), "--preset", "paper"])
        assert result.exit_code == 0, result.output
        lines = result.output.splitlines()
        assert "of which thinking" in lines[1]
        drafts = next(line for line in lines if line.startswith("documents.drafts")).split()
        calls, tin, tout, thinking, usd = (float(x.replace(",", "")) for x in drafts[2:7])
        assert thinking == calls * 4096  # a level/effort alone: the default thinking room per call
        assert tout > thinking > 0
        assert usd > 0 and "?" not in drafts
        total = next(line for line in lines if line.startswith("= all paid steps"))
        assert ">=" not in total and "Thinking (billed as output)" in result.output
    spec = load_spec(path, overrides=preset_overrides("paper"))  # the last one: gpt-5 at 1.25 / 10 USD
    d = {r.step: r for r in estimate(spec, make_traits(3))}["documents.drafts"]
    assert d.usd == pytest.approx((d.input_tokens * 1.25 + d.output_tokens * rate_out) / 1e6)


def test_batch_stages_are_priced_at_the_batch_rate(tmp_path):
    path = spec_file(tmp_path, "  generator: openai:gpt-5\n  judge: openai:gpt-5-mini\n  auditor: openai:gpt-5-mini\n")
    live = load_spec(path, overrides=preset_overrides("paper"))
    batched = live.model_copy(update={
        "generation": live.generation.model_copy(update={"batch": True}),
        "evaluation": live.evaluation.model_copy(update={"batch": True})})
    traits = make_traits(2)
    a, b = ({r.step: r for r in estimate(s, traits)} for s in (live, batched))
    assert b["documents.drafts"].usd == pytest.approx(a["documents.drafts"].usd / 2)
    assert b["evaluate.behaviour (judge)"].usd == pytest.approx(a["evaluate.behaviour (judge)"].usd / 2)
    assert b["evaluate.multiturn (auditor)"].usd == pytest.approx(a["evaluate.multiturn (auditor)"].usd)  # live
    assert b["curate.quality"].usd == pytest.approx(a["curate.quality"].usd)  # curation.batch is off
