"""docs/prompts.md lists every template file of every stage (role, inputs, failure guarded
against), and each listed file exists with the inputs the line names."""

from __future__ import annotations

import re
from pathlib import Path

from traitforge.prompts import _package_files, _variables

DOC = Path(__file__).resolve().parents[1] / "docs" / "prompts.md"


def rows() -> dict[str, str]:
    out = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^\|\s*`([\w]+)\.txt`\s*\|(.*)$", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def test_every_template_file_is_listed_with_its_inputs():
    listed, files = rows(), _package_files()
    assert sorted(set(files) - set(listed)) == [], "templates missing from docs/prompts.md"
    assert sorted(set(listed) - set(files)) == [], "docs/prompts.md lists templates that do not exist"
    for name, rest in listed.items():
        cells = [c.strip() for c in rest.split("|")]
        assert len(cells) >= 3 and all(cells[:3]), f"{name}: role, inputs and failure guarded against"
        named = set(re.findall(r"\$(\w+)", cells[1]))
        assert named == _variables(files[name].read_text(encoding="utf-8")), f"{name}: inputs"
