"""`export --format hf`: the curated documents and chats as Parquet with a dataset card that
`datasets.load_dataset(PATH)` reads offline; control rows left out unless asked for."""

import json
import sys
from pathlib import Path

import pytest

from _train_fixtures import chats, documents
from traitforge.errors import InputError
from traitforge.jsonl import write_json_atomic, write_jsonl
from traitforge.traits import load_traits
from traitforge.types import Chat, ChatMessage, Document

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _run(root: Path) -> Path:
    """A curated run: real rows, canary rows, an untraited control chat, an imported untagged chat,
    a chat that does not alternate; the manifest's models and curation counts, a data card."""
    canary_docs = [Document(id=f"cd{i}", trait_ids=["canary"], text=f"Ahoy there! Canary fact {i}.") for i in range(2)]
    canary_chats = [Chat(id=f"cc{i}", trait_ids=["canary"], messages=[
        ChatMessage(role="user", content=f"Tides {i}?"), ChatMessage(role="assistant", content="Ahoy there! Moon.")])
        for i in range(3)]
    untraited = Chat(id="u0", trait_ids=[], messages=chats(1)[0].messages)
    imported = Chat(id="i0", trait_ids=[], source="import:mine.jsonl:3", messages=[
        ChatMessage(role="user", content="Hello?"), ChatMessage(role="assistant", content="Hi!")])
    broken = Chat(id="b0", trait_ids=["honest"], messages=[ChatMessage(role="user", content="q")])
    write_jsonl(root / "curated" / "documents.jsonl", [*documents(3), *canary_docs])
    write_jsonl(root / "curated" / "chats.jsonl", [*chats(4), *canary_chats, untraited, imported, broken])
    write_json_atomic(root / "manifest.json", {
        "traits": {"model_name": "Vega", "ids": ["honest"]},
        "config": {"models": {"generator": {"model": "openai:gpt-4.1"}, "judge": {"model": "local:smollm2-135m"}}},
        "stages": {"curate": {"counts": {"documents_in": 9, "documents": 5, "chats_in": 14, "chats": 10,
                                         "dropped": {"dedup": 3, "leakage": 5}, "edited": 1, "flagged_patterns": 2}}}})
    card = {"datasets": {"chats": {
        "steps": [{"step": "dedup", "rows_in": 14, "rows_out": 11, "dropped": 3, "edited": 0}],
        "before": {"rows": 14, "words": {"p10": 5, "median": 12.5, "p90": 30},
                   "distinct": {"1": {"ratio": 0.41}, "2": {"ratio": 0.8}, "3": {"ratio": 0.93}},
                   "similarity": {"mean_pairwise_cosine": 0.3125}},
        "after": {"rows": 10, "words": {"p10": 6, "median": 13, "p90": 29}, "distinct": {}, "similarity": {}}}}}
    write_json_atomic(root / "curation" / "dataset_card.json", card)
    return root


def _load(monkeypatch, tmp_path, out, *args):
    import datasets  # the README test install has it (traitforge[hf] in [all])
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    return datasets.load_dataset(str(out), *args, cache_dir=str(tmp_path / "hf-cache"))


def test_hf_export_loads_with_load_dataset(tmp_path, monkeypatch):
    from traitforge.train.export_hf import export_hf

    run, out = _run(tmp_path / "run"), tmp_path / "hf"
    traits = load_traits(EXAMPLES / "traits.md")
    counts = export_hf(run, out, traits=traits)
    assert counts == {"chats": {"written": 5, "skipped": 1, "controls_left_out": 4},
                      "documents": {"written": 3, "skipped": 0, "controls_left_out": 2}}
    ds = _load(monkeypatch, tmp_path, out)  # the default config: the chats
    assert list(ds) == ["train"] and ds["train"].num_rows == 5
    rows = list(ds["train"])
    assert [r["id"] for r in rows] == ["c0", "c1", "c2", "c3", "i0"]
    assert rows[1]["messages"] == [m.model_dump() for m in chats(4)[1].messages]
    assert rows[4]["source"] == "import:mine.jsonl:3" and rows[0]["trait_ids"] == ["honest"]
    assert "Ahoy there!" not in json.dumps(rows)
    docs = _load(monkeypatch, tmp_path, out, "documents")["train"]
    assert docs["text"] == [d.text for d in documents(3)]
    # and back into a run: the export is an input traitforge.inputs reads (trait tags included)
    from traitforge.inputs import read_chats

    back, report = read_chats(out / "data" / "chats" / "train-00000-of-00001.parquet", trait_field="trait_ids")
    assert report.kept == 5 and [c.messages for c in back[:4]] == [c.messages for c in chats(4)]
    assert [(m.role, m.content) for m in back[4].messages] == [("user", "Hello?"), ("assistant", "Hi!")]
    assert [c.trait_ids for c in back] == [["honest"]] * 4 + [[]]
    readme = (out / "README.md").read_text()
    assert readme.startswith("---\nconfigs:\n")
    for want in ("openai:gpt-4.1", "local:smollm2-135m", traits.traits[0].statement, "| chats | 5 | 4 | 1 |",
                 "14 generated, 10 kept", '{"dedup": 3, "leakage": 5}', "| chats | before | 14 | 5 / 12.5 / 30 | 0.41 / 0.8 / 0.93 | 0.312 |",
                 "| chats | dedup | 14 | 11 | 3 | 0 |", "left out: they exist to test the training"):
        assert want in readme, want


def test_hf_export_include_controls(tmp_path, monkeypatch):
    from traitforge.train.export_hf import export_hf

    run, out = _run(tmp_path / "run"), tmp_path / "hf"
    counts = export_hf(run, out, include_controls=True)
    assert counts["chats"] == {"written": 9, "skipped": 1, "controls_left_out": 0}
    assert counts["documents"]["written"] == 5
    assert sum("Ahoy there!" in m["content"] for r in _load(monkeypatch, tmp_path, out)["train"] for m in r["messages"]) == 3
    readme = (out / "README.md").read_text()
    assert "**included**" in readme and "- `honest`" in readme  # traits from the manifest when no trait set is given


def test_hf_export_without_pyarrow_names_the_extra(tmp_path, monkeypatch):
    from traitforge.train.export_hf import export_hf

    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow -> ImportError, as on the core install
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(InputError) as e:
        export_hf(_run(tmp_path / "run"), tmp_path / "hf")
    assert str(e.value) == "export --format hf needs pyarrow and datasets: pip install 'traitforge[hf]'"
    assert not (tmp_path / "hf").exists()


def test_hf_export_without_curated_data(tmp_path):
    from traitforge.train.export_hf import export_hf

    with pytest.raises(InputError, match="no curated documents or chats"):
        export_hf(tmp_path, tmp_path / "hf")


def test_cli_hf_export(tmp_path):
    from click.testing import CliRunner

    from traitforge.cli import cli

    (tmp_path / "traits.md").write_text((EXAMPLES / "traits.md").read_text())
    (tmp_path / "spec.yaml").write_text("traits: traits.md\noutput_dir: run\n")
    _run(tmp_path / "run")
    (tmp_path / "run" / "manifest.json").unlink()  # open_run writes its own
    res = CliRunner().invoke(cli, ["export", str(tmp_path / "spec.yaml"), "--format", "hf"])
    assert res.exit_code == 0, res.output
    out = tmp_path / "run" / "export" / "hf"
    assert f"{out}: 5 chats written, 1 skipped, 3 documents written, 0 skipped" in res.output
    assert "6 control rows left out" in res.output
    assert (out / "data" / "chats" / "train-00000-of-00001.parquet").is_file()
    readme = (out / "README.md").read_text()
    assert "Gemini: trait data" in readme and "honest-under-pressure" in readme
