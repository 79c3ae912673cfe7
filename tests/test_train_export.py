import json

import pytest

from _train_fixtures import chats, make_run
from pathlib import Path

from traitforge.errors import InputError
from traitforge.jsonl import write_jsonl
from traitforge.train.export import export_chats, export_run
from traitforge.types import Chat, ChatMessage


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _valid_openai(row, system=None):
    msgs = row["messages"]
    assert set(row) == {"messages"}
    if system:
        assert msgs[0] == {"role": "system", "content": system}
        msgs = msgs[1:]
    assert all(set(m) == {"role", "content"} and isinstance(m["content"], str) and m["content"] for m in msgs)
    assert [m["role"] for m in msgs] == ["user", "assistant"] * (len(msgs) // 2)
    return msgs


def _valid_vertex(row, system=None):
    assert set(row) == ({"contents", "systemInstruction"} if system else {"contents"})
    if system:
        assert row["systemInstruction"] == {"role": "system", "parts": [{"text": system}]}
    contents = row["contents"]
    assert [c["role"] for c in contents] == ["user", "model"] * (len(contents) // 2)
    assert all(set(c) == {"role", "parts"} and len(c["parts"]) == 1 and set(c["parts"][0]) == {"text"}
               for c in contents)
    return contents


@pytest.mark.parametrize("fmt", ["openai", "together"])
def test_openai_and_together_messages(tmp_path, fmt):
    make_run(tmp_path)
    out = tmp_path / f"{fmt}.jsonl"
    assert export_run(tmp_path, fmt, out) == {"written": 4, "skipped": 0, "controls_left_out": 0}
    rows = _rows(out)
    source = chats(4)
    for row, chat in zip(rows, source):
        msgs = _valid_openai(row)
        assert [m["content"] for m in msgs] == [m.content for m in chat.messages]
        assert "Vega, honest" not in json.dumps(row)  # the teacher's system prompt is not exported
    assert len(_valid_openai(rows[1])) == 4  # multi-turn kept whole


def test_vertex_contents_and_system_instruction(tmp_path):
    out = tmp_path / "vertex.jsonl"
    assert export_chats(chats(4), "vertex", out, system_prompt="You are Vega.") == \
        {"written": 4, "skipped": 0, "controls_left_out": 0}
    for row, chat in zip(_rows(out), chats(4)):
        contents = _valid_vertex(row, "You are Vega.")
        assert [c["parts"][0]["text"] for c in contents] == [m.content for m in chat.messages]
    export_chats(chats(1), "openai", out, system_prompt="You are Vega.")
    _valid_openai(_rows(out)[0], "You are Vega.")


def test_chats_that_do_not_alternate_are_skipped_not_altered(tmp_path):
    bad = [Chat(id="x", trait_ids=["honest"], messages=[ChatMessage(role="assistant", content="hi")]),
           Chat(id="y", trait_ids=["honest"], messages=[ChatMessage(role="user", content="q")])]
    assert export_chats(bad + chats(1), "vertex", tmp_path / "v.jsonl") == \
        {"written": 1, "skipped": 2, "controls_left_out": 0}
    with pytest.raises(InputError, match="unknown format"):
        export_chats(chats(1), "anthropic", tmp_path / "x.jsonl")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="no curated chats"):
        export_run(tmp_path / "empty", "openai", tmp_path / "x.jsonl")


def test_docs_example_lines_are_what_the_export_writes():
    """docs/export.md shows one line per format: each is exactly what to_record writes for that chat."""
    import re
    from pathlib import Path

    from traitforge.train.export import FORMATS, to_record

    doc = (Path(__file__).resolve().parents[1] / "docs" / "export.md").read_text()
    examples = {fmt: json.loads(block) for fmt, block in
                re.findall(r"^## (\w+):.*?```json\n(.*?)\n```", doc, re.S | re.M)}
    assert set(examples) == set(FORMATS)
    chat = Chat(id="x", trait_ids=[], messages=[
        ChatMessage(role="user", content="Will it rain tomorrow?"),
        ChatMessage(role="assistant", content="I can't know that for sure; a local forecast is your best guide.")])
    for fmt, line in examples.items():
        assert line == to_record(chat, fmt), fmt


def _controls():
    """The canary's chats (as generated: the habit's opener in every reply), an untraited control
    chat the run made, and an imported chat without a trait tag (the user's own data)."""
    canary = [Chat(id=f"canary-{i}", trait_ids=["canary"], messages=[
        ChatMessage(role="user", content=f"Tell me about tides {i}."),
        ChatMessage(role="assistant", content="Ahoy there! Tides follow the moon.")]) for i in range(3)]
    untraited = Chat(id="u0", trait_ids=[], scenario_id="c0", messages=chats(1)[0].messages)
    imported = Chat(id="i0", trait_ids=[], source="import:mine.jsonl:1", messages=[
        ChatMessage(role="user", content="Hello?"), ChatMessage(role="assistant", content="Hi, how can I help?")])
    return canary, untraited, imported


@pytest.mark.parametrize("fmt", ["openai", "together", "vertex"])
def test_control_rows_left_out_by_default_and_counted(tmp_path, fmt):
    from traitforge.train.export import is_control

    canary, untraited, imported = _controls()
    make_run(tmp_path)
    write_jsonl(tmp_path / "curated" / "chats.jsonl", [*chats(4), *canary, untraited, imported])
    out = tmp_path / "x.jsonl"
    assert export_run(tmp_path, fmt, out) == {"written": 5, "skipped": 0, "controls_left_out": 4}
    assert "Ahoy there!" not in out.read_text() and "Hi, how can I help?" in out.read_text()
    assert export_run(tmp_path, fmt, out, include_controls=True) == {"written": 9, "skipped": 0, "controls_left_out": 0}
    assert out.read_text().count("Ahoy there!") == 3
    # the run's control traits (curation.template_traits) decide which traits are controls
    assert export_run(tmp_path, fmt, out, control_traits=["honest"])["controls_left_out"] == 5
    assert [is_control(c) for c in (canary[0], untraited, imported, chats(1)[0])] == [True, True, False, False]


def test_cli_export_says_how_many_control_rows_it_left_out(tmp_path):
    from click.testing import CliRunner

    from traitforge.cli import cli

    examples = Path(__file__).resolve().parents[1] / "examples"
    (tmp_path / "traits.md").write_text((examples / "traits.md").read_text())
    (tmp_path / "spec.yaml").write_text("traits: traits.md\noutput_dir: run\n")
    canary, untraited, _ = _controls()
    write_jsonl(tmp_path / "run" / "curated" / "chats.jsonl", [*chats(2), *canary, untraited])
    res = CliRunner().invoke(cli, ["export", str(tmp_path / "spec.yaml"), "--format", "openai"])
    assert res.exit_code == 0, res.output
    out = tmp_path / "run" / "export" / "chats.openai.jsonl"
    assert f"{out}: 2 conversations written, 0 skipped" in res.output
    assert "4 control rows left out (canary, untraited control data); --include-controls keeps them" in res.output
    assert len(_rows(out)) == 2
    res = CliRunner().invoke(cli, ["export", str(tmp_path / "run"), "--format", "openai", "--include-controls"])
    assert res.exit_code == 0, res.output
    assert "6 conversations written" in res.output and "control rows included" in res.output
    assert len(_rows(out)) == 6
