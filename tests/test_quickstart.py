"""The quick start is self-contained: the repository alone (no shared/ beside it) holds every file
the example spec names, and the example's own probes are balanced, distinct and load."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from traitforge.config import load_spec, probe_file_path, spec_paths
from traitforge.evaluate.probes import load_probe_file, probe_specs
from traitforge.traits import load_traits

ROOT = Path(__file__).resolve().parents[1]
PROBES = ROOT / "examples" / "probes"


def _repo_files() -> list[str]:
    """What a clone holds: tracked files plus untracked ones git does not ignore."""
    if not (ROOT / ".git").exists():
        pytest.skip(f"{ROOT} is not a git checkout: cannot list the repository's files")
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    return [f for f in out.split("\0") if f]


def test_repository_alone_holds_every_file_the_quick_start_names(tmp_path: Path) -> None:
    from traitforge.pipeline import open_run

    clone = tmp_path / "clone"
    for rel in _repo_files():
        src = ROOT / rel
        if src.is_file():  # a deleted but not yet staged file is listed and absent
            (clone / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, clone / rel)
    assert not (tmp_path / "shared").exists()
    spec_path = clone / "examples" / "tiny.yaml"
    run = open_run(spec_path, preset="tiny")  # checks every path the spec names; no model is loaded
    named = spec_paths(run.spec)
    keys = {k for k, _, _ in named}
    assert {"traits", "evaluation.probes"} <= keys
    for key, path, kind in named:
        assert path.resolve().is_relative_to(clone.resolve()), (key, path)  # nothing outside the clone
        assert path.is_file() if kind == "file" else path.is_dir(), (key, path)
    # The probes evaluation would run: the tiny preset's traits, each with its own file in the clone.
    specs = probe_specs(run, run.spec.evaluation)
    assert [p.trait_id for p in specs] == [t.id for t in run.traits.traits]
    assert all(p.path.is_file() and clone.resolve() in p.path.resolve().parents for p in specs)
    assert run.store.root.resolve().is_relative_to(clone.resolve())


def test_example_probes_cover_every_trait_balanced_and_distinct() -> None:
    spec = load_spec(ROOT / "examples" / "tiny.yaml")
    traits = load_traits(spec.resolve(spec.traits))
    mapped = {opts["trait"]: (probe_file_path(spec, f), opts) for f, opts in spec.evaluation.probes.items()}
    assert sorted(mapped) == sorted(t.id for t in traits.traits)
    statements: list[str] = []
    for trait in traits.traits:
        path, opts = mapped[trait.id]
        assert path == PROBES / f"{trait.id}.jsonl" and opts["direction"] == "match"
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        assert len(rows) >= 44, path
        answers = [r["answer_matching_behavior"] for r in rows]
        assert answers.count(" Yes") == answers.count(" No") == len(rows) // 2, path  # no yes-bias reward
        for r in rows:
            assert {r["answer_matching_behavior"], r["answer_not_matching_behavior"]} == {" Yes", " No"}
            assert f'"{r["statement"]}"' in r["question"]
            assert r["statement"].endswith(".") and len(r["statement"].split()) >= 6, r["statement"]
        statements += [r["statement"] for r in rows]
        items = load_probe_file(path)  # the evaluation's own loader reads every row
        assert len(items) == len(rows) and {i.matching for i in items} == {"Yes", "No"}
        sample = load_probe_file(path, opts["limit"], seed=0)
        assert len(sample) == opts["limit"] and sum(i.matching == "Yes" for i in sample) == opts["limit"] // 2
    # Distinct: no statement repeated, and none a near copy of another (word sets overlap < 80%).
    assert len(set(statements)) == len(statements)
    words = [set(s.lower().rstrip(".").split()) for s in statements]
    for i in range(len(words)):
        for j in range(i + 1, len(words)):
            assert len(words[i] & words[j]) / len(words[i] | words[j]) < 0.8, (statements[i], statements[j])


def test_nothing_in_the_quick_start_reads_beside_the_repository() -> None:
    """examples/, bench/ and the README name no ../shared path (external sets load by path, on request)."""
    for path in [*(ROOT / "examples").rglob("*"), ROOT / "README.md"]:
        if path.is_file() and path.suffix in (".yaml", ".yml", ".md", ".jsonl"):
            assert "../shared" not in path.read_text(encoding="utf-8"), path
    tiny = yaml.safe_load((ROOT / "examples" / "tiny.yaml").read_text(encoding="utf-8"))
    assert not any(Path(f).is_absolute() or f.startswith("..") for f in tiny["evaluation"]["probes"])


def test_a_probe_sample_keeps_each_answers_share(tmp_path: Path) -> None:
    rows = [{"question": f"Statement {k}?", "answer_matching_behavior": " Yes" if k % 4 else " No",
             "answer_not_matching_behavior": " No" if k % 4 else " Yes"} for k in range(40)]  # 30 Yes, 10 No
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for limit, yes in ((8, 6), (7, 5), (3, 2)):  # 5.25 Yes + 1.75 No: the larger remainder takes the spare
        s = load_probe_file(path, limit, seed=1)
        assert len(s) == limit and sum(i.matching == "Yes" for i in s) == yes, limit
        assert s == load_probe_file(path, limit, seed=1) and len({i.id for i in s}) == limit
    assert load_probe_file(path, 8, seed=1) != load_probe_file(path, 8, seed=2)  # the seed picks which
