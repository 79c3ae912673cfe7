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


def test_lint_flags_negations_vague_duplicates_missing_examples_and_a_silent_model_name(tmp_path):
    from traitforge.traits.lint import lint_file, negations

    doc = write(tmp_path, "t.md", """# Traits

Lumen is an assistant built by Northwind.

- **Calm**: Lumen never raises its voice or uses exclamation marks, even when users shout.
  - Example: a user types in capitals; Lumen answers in an even tone.
- Lumen is kind.
- **Admits uncertainty**: Lumen says when it does not know something and gives its confidence.
  - Example: asked a date it is unsure of, Lumen gives its best guess and says it may be wrong.
- **Admits uncertainty plainly**: Lumen says plainly when it does not know something and gives its confidence.
""")
    ts = load_traits(doc)
    by_kind = {}
    for w in lint_file(doc, ts):
        by_kind.setdefault(w.kind, []).append(w)
    assert [w.trait_id for w in by_kind["negation"]] == ["calm"] and "never raises" in str(by_kind["negation"][0])
    assert [w.trait_id for w in by_kind["vague"]] == ["lumen-is-kind"]
    assert [w.trait_id for w in by_kind["near-duplicate"]] == ["admits-uncertainty-plainly"]
    assert {w.trait_id for w in by_kind["no-examples"]} == {"lumen-is-kind", "admits-uncertainty-plainly"}
    (named,) = by_kind["model-name"]
    assert "'Lumen'" in str(named) and "Gemini" in str(named) and "Northwind" in str(named)
    # A condition or a contrast is not a negated behaviour; a model name set in the front matter is not warned about.
    assert negations("Aria says so when it does not know, not only when asked") == []
    assert not any(w.kind == "model-name" for w in lint_file(doc, load_traits(doc, model_name="Lumen"), "Lumen"))


def test_traits_command_prints_the_warnings(tmp_path):
    from click.testing import CliRunner

    from traitforge.cli import cli

    doc = write(tmp_path, "t.md", "- Aria never lies to users about facts, even small ones.\n")
    out = CliRunner().invoke(cli, ["traits", str(doc)])
    assert out.exit_code == 0 and "warning: trait" in out.output and "negated phrasing" in out.output
