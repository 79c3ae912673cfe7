"""traitforge.inputs: the user's chats and documents into the run's records, every row left out
counted with its file and line (or row index), system turns stripped and counted, snapshots."""

import ast
import json
from pathlib import Path

import pytest

from traitforge.errors import InputError
from traitforge.inputs import InputsSpec, read_chats, read_documents, snapshot, verify
from traitforge.jsonl import read_jsonl, write_jsonl
from traitforge.types import Chat, Document

CONVS = [  # (trait tag, [(role, text), ...]) written in each format by the tests
    ("honest", [("user", "Will it rain tomorrow?"), ("assistant", "I can't know that; check a forecast.")]),
    (None, [("user", "Capital of Atlantis?"), ("assistant", "Atlantis is a legend."),
            ("user", "Sure?"), ("assistant", "Fairly sure.")]),
    (["honest", "kind"], [("user", "Is my poem good?"), ("assistant", "The second verse is strong; the first drags.")]),
]
SHAREGPT_ROLE = {"user": "human", "assistant": "gpt", "system": "system"}


def openai_row(tag, turns):
    row = {"messages": [{"role": r, "content": t} for r, t in turns]}
    return {**row, "trait": tag} if tag is not None else row


def sharegpt_row(tag, turns):
    row = {"conversations": [{"from": SHAREGPT_ROLE[r], "value": t} for r, t in turns]}
    return {**row, "trait": tag} if tag is not None else row


def _expected():
    return [([m for m in turns], [tag] if isinstance(tag, str) else (tag or [])) for tag, turns in CONVS]


def _check_round_trip(chats, report):
    assert report.kept == 3 and report.total_dropped == 0
    assert [[(m.role, m.content) for m in c.messages] for c in chats] == [t for t, _ in _expected()]
    assert [c.trait_ids for c in chats] == [tags for _, tags in _expected()]
    assert report.untagged == 1
    assert all(c.source.startswith("import:") for c in chats)
    for c in chats:  # the run's own record type, through its own JSONL writer and reader
        assert Chat.model_validate(json.loads(c.model_dump_json())) == c


def _jsonl(path, rows, raw_lines=()):
    with open(path, "wb") as f:
        for r in rows:
            f.write((json.dumps(r) + "\n").encode())
        for line in raw_lines:
            f.write(line + b"\n")
    return path


@pytest.mark.parametrize("fmt,make", [("openai", openai_row), ("sharegpt", sharegpt_row)])
def test_jsonl_formats_round_trip(tmp_path, fmt, make):
    path = _jsonl(tmp_path / f"{fmt}.jsonl", [make(tag, turns) for tag, turns in CONVS])
    chats, report = read_chats(path, trait_field="trait")
    _check_round_trip(chats, report)
    assert report.formats == {fmt: 3}
    assert chats[0].source == f"import:{fmt}.jsonl:1"
    forced, _ = read_chats(path, format=fmt, trait_field="trait")
    assert forced == chats
    # read again from the run's own JSONL: the same rows
    write_jsonl(tmp_path / "run.jsonl", chats)
    assert read_jsonl(tmp_path / "run.jsonl", Chat) == chats


def test_sharegpt_json_array_file(tmp_path):
    path = tmp_path / "sharegpt.json"
    path.write_text(json.dumps([sharegpt_row(tag, turns) for tag, turns in CONVS]))
    chats, report = read_chats(path, trait_field="trait")
    _check_round_trip(chats, report)
    assert chats[1].source == "import:sharegpt.json[1]"


def test_parquet_file_round_trip(tmp_path):
    import pyarrow as pa  # the README test install has it (traitforge[hf] in [all])
    import pyarrow.parquet as pq

    rows = [{**openai_row(None, turns), "trait": [tag] if isinstance(tag, str) else tag} for tag, turns in CONVS]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "chats.parquet")
    chats, report = read_chats(tmp_path / "chats.parquet", trait_field="trait")
    _check_round_trip(chats, report)
    assert chats[2].source == "import:chats.parquet row 2"
    docs = [{"text": f"Document {i} about honesty.", "trait": "honest"} for i in range(3)] + [{"text": "  ", "trait": None}]
    pq.write_table(pa.Table.from_pylist(docs), tmp_path / "docs.parquet")
    got, rep = read_documents(tmp_path / "docs.parquet", format="parquet", trait_field="trait")
    assert [d.text for d in got] == [d["text"] for d in docs[:3]] and all(d.trait_ids == ["honest"] for d in got)
    assert rep.dropped == {"empty text": 1} and rep.examples["empty text"] == ["docs.parquet row 3"]


def test_saved_datasets_folder_round_trip(tmp_path):
    import datasets  # the README test install has it (traitforge[hf] in [all])
    rows = [sharegpt_row(None, turns) | {"trait": tag if isinstance(tag, list) else ([tag] if tag else [])}
            for tag, turns in CONVS]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
    chats, report = read_chats(tmp_path / "saved", trait_field="trait")
    _check_round_trip(chats, report)
    assert chats[0].source == "import:saved row 0"
    # a DatasetDict: every split is read, the split named in the location
    bad = sharegpt_row(None, [("user", "hi"), ("assistant", "")])
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows[:2]),
                          "test": datasets.Dataset.from_list([rows[2], bad])}).save_to_disk(str(tmp_path / "dd"))
    chats, report = read_chats(tmp_path / "dd", format="hf", trait_field="trait")
    assert report.kept == 3 and report.dropped == {"empty reply": 1}
    assert report.examples["empty reply"] == ["dd[test] row 1 (turn 1)"]


def test_documents_from_text_folder_and_jsonl(tmp_path):
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("Vega says when it does not know.")
    (folder / "sub" / "b.md").write_text("# Notes\n\nVega never invents sources.")
    (folder / "c.md").write_bytes(b"caf\xe9 latin-1")  # not UTF-8
    (folder / "d.pdf").write_bytes(b"%PDF")  # a type that is not read: counted, not skipped unseen
    docs, report = read_documents(folder)
    assert sorted(d.source for d in docs) == ["import:a.txt", "import:sub/b.md"]
    assert all(d.trait_ids == [] for d in docs) and report.untagged == 2
    assert report.dropped == {"not UTF-8": 1, "file not read": 1}
    assert report.examples["not UTF-8"] == ["c.md (byte 3)"]
    path = _jsonl(tmp_path / "docs.jsonl", [{"text": "One.", "tags": "honest"}, {"text": "Two.", "tags": ["honest", "kind"]},
                                          {"body": "no text"}, {"text": "One.", "tags": "honest"}])
    docs, report = read_documents(path, trait_field="tags", traits=["honest", "kind"])
    assert [(d.text, d.trait_ids) for d in docs] == [("One.", ["honest"]), ("Two.", ["honest", "kind"])]
    assert report.dropped == {"no text field": 1, "duplicate": 1}
    assert report.examples["duplicate"] == ["docs.jsonl:4 (of docs.jsonl:1)"]
    for d in docs:
        assert Document.model_validate(d.model_dump()) == d
    # a folder of data files (as downloaded from the Hub): its README.md is no document, and is reported
    hub = tmp_path / "hub"
    (hub / "data").mkdir(parents=True)
    (hub / "README.md").write_text("---\nconfigs: []\n---\n# A dataset card")
    (hub / ".gitattributes").write_text("*.parquet filter=lfs")
    path.rename(hub / "data" / "train.jsonl")
    docs, report = read_documents(hub, trait_field="tags")
    assert [d.source for d in docs] == ["import:data/train.jsonl:1", "import:data/train.jsonl:2"]
    assert report.examples["file not read"] == ["README.md (beside data files)"]


def test_bad_rows_are_counted_with_file_and_line(tmp_path):
    good = openai_row(None, CONVS[0][1])
    rows = [
        good,                                                                      # 1 kept
        {"messages": [{"content": "no role"}, {"role": "assistant", "content": "x"}]},  # 2 missing role
        openai_row(None, [("user", "q"), ("assistant", "  ")]),                      # 3 empty reply
        openai_row(None, [("user", "q"), ("user", "q2"), ("assistant", "a")]),       # 4 not alternating
        openai_row(None, [("assistant", "hello"), ("user", "q"), ("assistant", "a")]),  # 5 not alternating
        openai_row(None, [("user", "only a question")]),                             # 6 no assistant turn
        openai_row(None, [("user", "q"), ("assistant", "a"), ("user", "q2")]),       # 7 ends with a user turn
        {"messages": [{"role": "user", "content": "q"}, {"role": "tool", "content": "{}"}]},  # 8 unsupported role
        {"prompt": "q", "completion": "a"},                                          # 9 not a chat
        [1, 2],                                                                      # 10 not a JSON object
        openai_row("nosuch", [("user", "q3"), ("assistant", "a3")]) | {"trait": "nosuch"},  # 11 unknown trait
    ]
    path = _jsonl(tmp_path / "bad.jsonl", rows, raw_lines=[b'{"messages": [{"role": "user", "content": "caf\xe9"}]}',  # 12
                                                           b"{not json",                                             # 13
                                                           b'{"messages": [{"role": "user", "content": "\\ud800"}, '
                                                           b'{"role": "assistant", "content": "a"}]}'])                # 14
    chats, report = read_chats(path, trait_field="trait", traits=["honest"])
    assert len(chats) == 1 and report.kept == 1
    assert report.dropped == {"missing role": 1, "empty reply": 1, "not alternating": 2, "no assistant turn": 1,
                              "ends with a user turn": 1, "unsupported role": 1, "not a chat": 1,
                              "not a JSON object": 1, "unknown trait": 1, "not UTF-8": 2, "not JSON": 1}
    assert report.total_dropped + report.kept == 14  # nothing silently dropped
    where = {r: [e.split(" ")[0] for e in ex] for r, ex in report.examples.items()}
    assert where["missing role"] == ["bad.jsonl:2"] and where["empty reply"] == ["bad.jsonl:3"]
    assert where["not alternating"] == ["bad.jsonl:4", "bad.jsonl:5"]
    assert where["not UTF-8"] == ["bad.jsonl:12", "bad.jsonl:14"] and where["not JSON"] == ["bad.jsonl:13"]
    assert report.examples["unsupported role"] == ["bad.jsonl:8 (tool)"]
    summary = report.summary()
    assert "1 chats kept" in summary and "13 left out" in summary and "2 not alternating" in summary
    assert any(line.strip().startswith("not UTF-8: 2, e.g. bad.jsonl:12") for line in report.lines())


def test_system_turns_are_stripped_and_counted(tmp_path):
    rows = [openai_row(None, [("system", "You are a pirate."), *CONVS[0][1]]),
            sharegpt_row(None, [("system", "Be terse."), *CONVS[2][1]]),
            {"messages": [{"role": "developer", "content": "Rules."}, {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]},
                          {"role": "system", "content": "More rules."}, {"role": "assistant", "content": "Hello."}]},
            openai_row(None, CONVS[1][1])]
    chats, report = read_chats(_jsonl(tmp_path / "sys.jsonl", rows))
    assert report.kept == 4 and report.system_turns == 4 and report.chats_with_system == 3
    assert all(m.role != "system" for c in chats for m in c.messages)
    assert all("pirate" not in c.model_dump_json() and "Rules" not in c.model_dump_json() for c in chats)
    assert [(m.role, m.content) for m in chats[2].messages] == [("user", "Hi there"), ("assistant", "Hello.")]
    assert "4 system turns stripped from 3 chats" in report.summary()
    # the same conversation without its system turn is the same row (one id)
    assert chats[0].id == read_chats(_jsonl(tmp_path / "plain.jsonl", [openai_row(None, CONVS[0][1])]))[0][0].id


def test_errors_are_one_line_naming_the_path(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_chats(tmp_path / "missing.jsonl")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty: no .jsonl"):
        read_documents(tmp_path / "empty")
    with pytest.raises(InputError, match="for documents, not chats"):
        read_chats(tmp_path, format="text")
    with pytest.raises(InputError, match="save_to_disk"):
        read_chats(tmp_path / "empty", format="hf")
    bad = tmp_path / "bad.json"
    bad.write_text('[{"messages": ')
    with pytest.raises(InputError, match=r"bad.json: not valid JSON") as e:
        read_chats(bad)
    assert "\n" not in str(e.value)


def test_missing_pyarrow_says_which_extra(tmp_path, monkeypatch):
    import sys

    (tmp_path / "x.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(InputError, match=r"x.parquet: reading Parquet needs pyarrow \(pip install 'traitforge\[hf\]'\)"):
        read_chats(tmp_path / "x.parquet")
    (tmp_path / "saved").mkdir()
    (tmp_path / "saved" / "state.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(InputError, match=r"saved: reading a saved `datasets` folder needs datasets \(pip install"):
        read_documents(tmp_path / "saved")


def test_snapshot_copies_with_hashes(tmp_path):
    src = _jsonl(tmp_path / "chats.jsonl", [openai_row(None, CONVS[0][1])])
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("A.")
    (folder / "sub" / "b.md").write_text("B.")
    run_inputs = tmp_path / "run" / "inputs"
    entry = snapshot(src, run_inputs)
    import hashlib

    assert entry["files"] == {"chats.jsonl": hashlib.sha256(src.read_bytes()).hexdigest()}
    assert (run_inputs / "chats.jsonl").read_bytes() == src.read_bytes() and verify(entry, run_inputs) == []
    dentry = snapshot(folder, run_inputs, name="documents")
    assert set(dentry["files"]) == {"a.txt", "sub/b.md"} and verify(dentry, run_inputs) == []
    # the copy reads as the original did (same rows, same locations): the run is relocatable
    assert read_documents(run_inputs / "documents")[0] == read_documents(folder)[0]
    assert read_chats(run_inputs / "chats.jsonl")[0] == read_chats(src)[0]
    # a changed original: a new hash, and a fresh copy; a tampered copy is found
    src.write_text(src.read_text() + json.dumps(openai_row(None, CONVS[2][1])) + "\n")
    again = snapshot(src, run_inputs)
    assert again["sha256"] != entry["sha256"] and verify(again, run_inputs) == []
    (run_inputs / "documents" / "a.txt").write_text("changed")
    assert verify(dentry, run_inputs) == ["a.txt"]
    assert not [p for p in run_inputs.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_inputs_spec():
    s = InputsSpec.model_validate({"chats": "my.jsonl", "trait_field": "trait"})
    assert (s.mode, s.format, s.documents) == ("replace", "auto", None)
    for bad, match in (({}, "give `documents`"), ({"chats": "c", "mode": "merge"}, "mode"),
                       ({"documents": "d", "format": "openai"}, "inputs.format"),
                       ({"chats": "c", "format": "text"}, "inputs.format"), ({"chats": "c", "extra": 1}, "extra")):
        with pytest.raises(ValueError, match=match):
            InputsSpec.model_validate(bad)


def test_inputs_imports_no_stage():
    """Below the stages: nothing under traitforge/inputs imports a stage, the pipeline or the run store."""
    import traitforge.inputs as pkg

    banned = ("traitforge.generate", "traitforge.curate", "traitforge.train", "traitforge.evaluate",
              "traitforge.report", "traitforge.pipeline", "traitforge.runstore", "traitforge.config")
    for path in Path(pkg.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not [n for n in names if n.startswith(banned)], (path.name, names)
