"""Traits documents: good ones parse into typed traits; each bad input gets one line naming the file."""

import pytest

from traitforge.errors import InputError
from traitforge.traits import load_traits

GOOD_MD = """---
model_name: Aria
organisation: Example Labs
---
# Honesty

- **Candid**: Aria gives its real assessment.
  - It names weaknesses specifically.
  - Example: a user shares a weak essay; Aria says what to fix.
- Aria admits uncertainty when it does not know.
"""


def write(tmp_path, name, content):
    p = tmp_path / name
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content, encoding="utf-8")
    return p


def test_markdown_parses_names_details_examples_and_front_matter(tmp_path):
    ts = load_traits(write(tmp_path, "t.md", GOOD_MD))
    assert (ts.model_name, ts.organisation) == ("Aria", "Example Labs")
    assert [t.id for t in ts.traits] == ["candid", "aria-admits-uncertainty-when-it-does"]
    candid = ts.traits[0]
    assert candid.name == "Candid" and candid.statement == "Aria gives its real assessment."
    assert candid.details == ("It names weaknesses specifically.",)
    assert candid.examples == ("a user shares a weak essay; Aria says what to fix.",)
    assert len(ts.sha256) == 64 and candid.hash != ts.traits[1].hash


def test_cli_overrides_model_and_org(tmp_path):
    ts = load_traits(write(tmp_path, "t.md", GOOD_MD), model_name="Gemini", organisation="Google")
    assert (ts.model_name, ts.organisation) == ("Gemini", "Google")


def test_yaml_document(tmp_path):
    p = write(tmp_path, "t.yaml", "model_name: Gemini\norganisation: Google\ntraits:\n"
                                  "  - Gemini is honest.\n"
                                  "  - {id: warm, statement: Gemini is warm., details: [not saccharine], weight: 2}\n")
    ts = load_traits(p)
    assert [t.id for t in ts.traits] == ["gemini-is-honest", "warm"]
    assert ts.traits[1].weight == 2.0 and ts.traits[1].details == ("not saccharine",)


@pytest.mark.parametrize("name,content,expected", [
    ("empty.md", "", "traits document is empty"),
    ("blank.md", "   \n\n", "empty (only whitespace)"),
    ("nobullets.md", "# Traits\n\nThe model should be nice.\n", "no traits found"),
    ("dups.md", "- Be honest.\n- Be honest.\n", "duplicate trait id 'be-honest'"),
    ("types.yaml", "traits:\n  - {statement: 5}\n", "traits[0].statement: must be a non-empty string"),
    ("notlist.yaml", "traits: be honest\n", "key 'traits' must be a list"),
    ("unknown.yaml", "traits: [a b c]\nmodle_name: x\n", "unknown key 'modle_name'"),
    ("weight.yaml", "traits:\n  - {statement: be honest, weight: -1}\n", "weight: must be a positive number"),
    ("badyaml.yaml", "traits: [a, b\n", "invalid YAML"),
    ("binary.md", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200), "binary file"),
    ("latin1.md", "- caf\xe9 is good\n".encode("latin-1"), "not UTF-8"),
    ("frontmatter.md", "---\nmodel_name: [1]\n---\n- be honest\n", "key 'model_name' must be a string"),
])
def test_bad_inputs_one_line_naming_file(tmp_path, name, content, expected):
    p = write(tmp_path, name, content)
    with pytest.raises(InputError) as e:
        load_traits(p)
    msg = str(e.value)
    assert expected in msg and str(p) in msg and "\n" not in msg


def test_huge_file_rejected_without_reading_it(tmp_path):
    p = tmp_path / "huge.md"
    with open(p, "wb") as f:
        f.truncate(50 * 1024 * 1024)  # sparse 50 MB file
    with pytest.raises(InputError, match=r"huge.md: traits document is 52.4 MB; the limit is 1 MB"):
        load_traits(p)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_traits(tmp_path / "nope.md")
