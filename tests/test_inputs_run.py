"""The spec's `inputs:` in a run: imported chats replace (or join) generation's, curation and the
control arm read them, bad rows are reported with file and line, and the run keeps its own copy."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import pytest

from traitforge.errors import InputError
from traitforge.jsonl import read_jsonl
from traitforge.pipeline import open_run, stage_curate, stage_generate
from traitforge.types import Chat

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))

from test_rundir import make_spec, scripted  # noqa: E402

TRAIT = "honest-under-pressure"  # the example's first trait (make_spec keeps one)
PROMPTS = [f"My manager asks me to call project {i} on track though it is late. What do I say?" for i in range(6)]


def write_chats(path: Path) -> Path:
    """Six good chats in the OpenAI format (one with a system turn, one untagged), then two bad rows."""
    rows = []
    for i, user in enumerate(PROMPTS):
        msgs = [{"role": "user", "content": user},
                {"role": "assistant", "content": f"Tell them the truth about project {i}: it is late, and say by how much."}]
        if i == 0:
            msgs.insert(0, {"role": "system", "content": "You are a helpful assistant."})
        rows.append({"messages": msgs, **({"trait": TRAIT} if i != 5 else {})})
    rows.append({"messages": [{"role": "user", "content": "Hello there"}, {"role": "assistant", "content": "  "}]})
    rows.append({"messages": [{"content": "no role here"}, {"role": "assistant", "content": "An answer."}]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def inputs_spec(tmp_path: Path, mode: str, untagged: str = "judge") -> Path:
    (tmp_path / "src").mkdir(parents=True, exist_ok=True)
    write_chats(tmp_path / "src" / "mine.jsonl")
    # curation.patterns off: no pattern is planted here, and the scan's calls cost test time.
    return make_spec(tmp_path / "src", "training:\n  checkpoints: [base, sft, control]\ncuration: {patterns: false}\n"
                                       f"inputs: {{chats: mine.jsonl, mode: {mode}, trait_field: trait, untagged: {untagged}}}\n")


def judge(msgs, params) -> str:
    """Curation's judge: every row fine, no recurring pattern."""
    p = msgs[-1].content
    if "SCORE" in p:
        return "REASON: fine\nSCORE: 8"
    return "None." if "recur" in p else "NO"


def test_imported_chats_replace_generation_and_feed_curation_and_the_control_arm(tmp_path, monkeypatch, capsys):
    from traitforge.curate import run as curate_run
    from traitforge.llm.client import LLM
    from traitforge.llm.providers.scripted import ScriptedBackend
    from traitforge.train.run import control_data

    run = scripted(open_run(inputs_spec(tmp_path, "replace")))
    run._roles["judge"] = LLM(ScriptedBackend("j", responses=judge), max_retries=0)
    stage_generate(run)
    root = run.store.root
    chats = read_jsonl(root / "generated" / "chats.jsonl", Chat)
    assert [c.messages[0].content for c in chats] == PROMPTS  # the imported rows only: no generated chat
    assert all(c.source.startswith("import:mine.jsonl:") for c in chats)
    assert chats[0].source == "import:mine.jsonl:1" and [m.role for m in chats[0].messages] == ["user", "assistant"]
    assert [c.trait_ids for c in chats] == [[TRAIT]] * 5 + [[]]  # the judge named no trait: left untagged
    manifest = json.loads((root / "manifest.json").read_text())
    assert "chats.final" not in manifest["stages"]  # chat generation skipped
    assert manifest["stages"]["documents.final"]["status"] == "done"  # documents still generated
    counts = manifest["stages"]["inputs.chats"]["counts"]
    assert counts["kept"] == 6 and counts["mode"] == "replace" and counts["generated"] == 0
    assert counts["dropped"] == {"empty reply": 1, "missing role": 1}
    assert counts["examples"]["empty reply"] == ["mine.jsonl:7 (turn 1)"]
    assert counts["examples"]["missing role"] == ["mine.jsonl:8 (turn 0)"]
    assert counts["system_turns"] == 1 and counts["untagged"] == 1
    printed = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith(("inputs.chats (", "inputs.chats: left"))]
    assert printed[0].startswith("inputs.chats (replace): ") and "6 chats kept, 2 left out" in printed[0]
    assert "1 system turns stripped" in printed[0] and "mine.jsonl:7" in printed[1] and len(printed) == 2
    # The control arm: untraited answers to the imported chats' prompts, with no system prompt.
    untraited = read_jsonl(root / "generated" / "untraited.jsonl", Chat)
    assert sorted(c.messages[0].content for c in untraited) == sorted(PROMPTS)
    assert all(c.trait_ids == [] and not c.system_prompt for c in untraited)
    monkeypatch.setattr(curate_run, "load_embedder", lambda: None)  # the optional embedder: seconds to load
    stage_curate(run)
    curated = read_jsonl(root / "curated" / "chats.jsonl", Chat)
    assert {c.messages[0].content for c in curated if c.source} == set(PROMPTS)
    rows = read_jsonl(control_data(run.store, "control", 0), Chat)
    assert rows and {r.messages[0].content for r in rows} <= set(PROMPTS) | {
        c.messages[0].content for c in read_jsonl(root / "generated" / "canary_chats.jsonl", Chat)}


def test_add_mode_keeps_the_generated_chats_and_a_rerun_imports_once(tmp_path):
    run = scripted(open_run(inputs_spec(tmp_path, "add", untagged="keep")))  # keep: no judge call
    stage_generate(run, "chats")
    path = run.store.root / "generated" / "chats.jsonl"
    chats = read_jsonl(path, Chat)
    generated = [c for c in chats if not c.source]
    imported = [c for c in chats if c.source]
    assert generated and [c.messages[0].content for c in imported] == PROMPTS
    assert chats[-len(imported):] == imported  # after the generated rows
    counts = json.loads((run.store.root / "manifest.json").read_text())["stages"]["inputs.chats"]["counts"]
    assert counts["generated"] == len(generated) and counts["rows"] == len(chats)
    assert counts["untagged"] == 1 and counts["attributed_by_judge"] == 0  # kept untagged
    stage_generate(run, "chats")  # resumed: the same rows, the imported ones once
    assert [c.id for c in read_jsonl(path, Chat)] == [c.id for c in chats]


def test_the_run_keeps_a_hashed_copy_and_a_moved_run_reads_it(tmp_path):
    spec = inputs_spec(tmp_path, "replace", untagged="keep")
    open_run(spec)
    shutil.move(tmp_path / "src" / "run", tmp_path / "moved")
    shutil.rmtree(tmp_path / "src")
    run = scripted(open_run(tmp_path / "moved"))
    root = (tmp_path / "moved").resolve()
    rec = json.loads((root / "manifest.json").read_text())["inputs"]["inputs.chats"]
    assert rec["copy"] == "inputs/inputs.chats/mine.jsonl"
    assert hashlib.sha256((root / rec["copy"]).read_bytes()).hexdigest() == rec["sha256"]
    assert run.spec.resolve(run.spec.inputs.chats).resolve() == root / rec["copy"]
    stage_generate(run, "chats")
    assert [c.messages[0].content for c in read_jsonl(root / "generated" / "chats.jsonl", Chat)] == PROMPTS


def test_a_missing_input_is_one_line_naming_the_key(tmp_path):
    spec = make_spec(tmp_path / "src", "inputs: {chats: nowhere.jsonl}\n")
    with pytest.raises(InputError, match=r"key 'inputs.chats': file not found: .*nowhere.jsonl"):
        open_run(spec)


def test_untagged_rows_are_attributed_by_the_judge_or_stay_untagged(tmp_path):
    from traitforge.generate.imported import parse_traits
    from traitforge.llm.client import LLM
    from traitforge.llm.providers.scripted import ScriptedBackend

    known = ["honest-under-pressure", "not-sycophantic"]
    assert parse_traits("It tells the truth.\nTRAITS: honest-under-pressure, made-up", known) == known[:1]
    assert parse_traits("**TRAITS:** none", known) == [] and parse_traits("I think honest.", known) == []
    asked: list[str] = []

    def judge(msgs, params) -> str:
        asked.append(msgs[-1].content)
        return "The reply states the lateness plainly.\nTRAITS: honest-under-pressure"

    run = scripted(open_run(inputs_spec(tmp_path, "replace")))
    run._roles["judge"] = LLM(ScriptedBackend("j", responses=judge), max_retries=0)
    stage_generate(run, "chats")
    chats = read_jsonl(run.store.root / "generated" / "chats.jsonl", Chat)
    assert [c.trait_ids for c in chats] == [[TRAIT]] * 6  # the untagged one, by the judge
    assert len(asked) == 1 and PROMPTS[5] in asked[0] and "honest-under-pressure:" in asked[0]
    counts = json.loads((run.store.root / "manifest.json").read_text())["stages"]["inputs.chats"]["counts"]
    assert counts["attributed_by_judge"] == 1 and counts["untagged"] == 0 and counts["untagged_in_file"] == 1
    stage_generate(run, "chats")
    assert len(asked) == 1  # resumed: not asked again
