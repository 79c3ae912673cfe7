"""Each stage reads its settings from its own config section: its entry point takes the run context
(runcontext.Run: store, traits, seed, model names, clients by role, and the few run-level settings it
needs, by name) and its own section. Read from the source with `ast`, so the rule stays true."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from pydantic import BaseModel

from traitforge.config import RunSpec

SRC = Path(__file__).resolve().parents[1] / "src" / "traitforge"
# Stage package -> its own section.
CONVERTED = {"curate": "curation", "train": "training", "evaluate": "evaluation", "generate": "generation"}
# A module whose own section is another: the canary's rows are the controls' data, written by the
# generation stage beside its own.
OWN = {"generate/canary.py": "controls"}
# The training subprocess's entry point: it builds the run context from the run's manifest, as
# runcontext.open_run does from the spec file.
CONTEXT_BUILDERS = {"train/launch.py"}
# `models` is left out: the run context gives the model names by role (run.models), and the
# evaluation section has a `models` field of its own.
SECTIONS = {name for name, f in RunSpec.model_fields.items()
            if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)} - {"models"}


def violations(path: Path, own: str) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    others = SECTIONS - {own}
    out: list[str] = []
    for node in ast.walk(tree):
        where = f"{path.relative_to(path.parents[1])}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.ImportFrom) and any(a.name == "RunSpec" for a in node.names):
            out.append(f"{where}: imports RunSpec (a stage takes the run context and its own section)")
        elif isinstance(node, ast.Name) and node.id == "RunSpec":
            out.append(f"{where}: uses RunSpec")
        elif isinstance(node, ast.Attribute) and node.attr == "spec":
            out.append(f"{where}: reads the whole spec (.spec)")
        elif isinstance(node, ast.Attribute) and node.attr in others:
            out.append(f"{where}: reads the {node.attr!r} section (not {own!r}); route it through the run context")
    return out


def test_the_rule_sees_the_sections_of_the_spec(tmp_path):
    assert {"generation", "curation", "training", "evaluation", "controls", "budget"} <= SECTIONS
    probe = tmp_path / "curate" / "probe.py"
    probe.parent.mkdir()
    probe.write_text("from traitforge.config import RunSpec\n\n\ndef f(spec, cfg):\n"
                     "    return spec.generation.chats.max_tokens, run.spec, cfg.curation, run.seed\n", encoding="utf-8")
    found = violations(probe, "curation")
    assert len(found) == 3, found  # own section and run-level settings by name pass
    assert sum("imports RunSpec" in v for v in found) == sum("(.spec)" in v for v in found) == 1
    assert sum("the 'generation' section" in v for v in found) == 1


@pytest.mark.parametrize("package", sorted(CONVERTED))
def test_a_stage_package_reads_only_its_own_section(package):
    own = CONVERTED[package]
    files = sorted((SRC / package).rglob("*.py"))
    assert files
    found = [v for f in files if str(f.relative_to(SRC)) not in CONTEXT_BUILDERS
             for v in violations(f, OWN.get(str(f.relative_to(SRC)), own))]
    assert not found, "\n".join(found)
