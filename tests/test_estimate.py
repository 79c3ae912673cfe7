"""`traitforge estimate`: calls, tokens and cost per step from the spec alone, nothing sent or written;
the paper preset is valid and at the method's scale."""

from __future__ import annotations

from pathlib import Path

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
