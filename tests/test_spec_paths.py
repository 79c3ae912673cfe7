"""Every path a spec names is checked when the run opens, before any model call: a missing one is
one line naming the spec file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from traitforge.errors import InputError
from traitforge.pipeline import open_run

EXAMPLE_TRAITS = Path(__file__).resolve().parents[1] / "examples" / "traits.md"


def _spec(tmp_path: Path, extra: str) -> Path:
    (tmp_path / "traits.md").write_text(EXAMPLE_TRAITS.read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "probes").mkdir(exist_ok=True)
    (tmp_path / "probes" / "ok.jsonl").write_text(
        '{"question": "Q?", "answer_matching_behavior": " Yes", "answer_not_matching_behavior": " No"}\n')
    p = tmp_path / "spec.yaml"
    p.write_text(f"traits: traits.md\noutput_dir: run\n{extra}", encoding="utf-8")
    return p


@pytest.mark.parametrize("extra,key,missing", [
    ("evaluation:\n  probes:\n    probes/ok.jsonl: {trait: admits-uncertainty}\n"
     "    probes/gone.jsonl: {trait: honest-under-pressure}\n", "evaluation.probes", "probes/gone.jsonl"),
    ("evaluation:\n  probes_dir: evals\n  probes:\n    ok.jsonl: {trait: admits-uncertainty}\n",
     "evaluation.probes", "evals/ok.jsonl"),  # resolved against probes_dir
    ("generation: {prompts_dir: my_prompts}\n", "generation.prompts_dir", "my_prompts"),
    ("models: {base: checkpoints/my-base}\n", "models.base", "checkpoints/my-base"),
    ("evaluation: {capability_text: heldout.txt}\n", "evaluation.capability_text", "heldout.txt"),
    ("training: {sft: {mix_file: generic.jsonl, mix_ratio: 0.2}}\n", "training.sft.mix_file", "generic.jsonl"),
    ("training: {midtrain: {mix_file: web.jsonl}}\n", "training.midtrain.mix_file", "web.jsonl"),
    ("prices_file: prices.yaml\n", "prices_file", "prices.yaml"),
    ("evaluation: {models: {other: local:trained/elsewhere}}\n", "evaluation.models.other", "trained/elsewhere"),
    ("models: {judge: local:judges/big}\n", "models.judge", "judges/big"),
    ("traits: gone.md\n", "traits", "gone.md"),
])
def test_a_missing_path_fails_at_open_naming_the_key(tmp_path: Path, monkeypatch, extra, key, missing) -> None:
    monkeypatch.chdir(tmp_path)  # models.base and local: role models resolve against the working directory
    spec = _spec(tmp_path, extra)
    if extra.startswith("traits:"):
        spec.write_text(spec.read_text().replace("traits: traits.md\n", ""))
    with pytest.raises(InputError) as e:
        open_run(spec)
    msg = str(e.value)
    assert msg.startswith(f"{spec}: key '{key}': ") and "\n" not in msg, msg
    assert "not found" in msg and msg.endswith(missing), msg
    assert not (tmp_path / "run").exists()  # failed before the run directory was made


def test_a_file_where_a_folder_belongs_is_named(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "generation: {prompts_dir: traits.md}\n")
    with pytest.raises(InputError, match=r"key 'generation.prompts_dir': not a folder: .*traits.md$"):
        open_run(spec)


def test_present_paths_open_and_the_embedded_model_is_not_a_path(tmp_path: Path) -> None:
    (tmp_path / "my_prompts").mkdir()
    (tmp_path / "base").mkdir()
    (tmp_path / "prices.yaml").write_text("{}\n")
    spec = _spec(tmp_path, f"models: {{base: {tmp_path / 'base'}, judge: local:smollm2-135m}}\n"
                           "generation: {prompts_dir: my_prompts}\nprices_file: prices.yaml\n"
                           "evaluation:\n  probes:\n    probes/ok.jsonl: {trait: admits-uncertainty}\n")
    run = open_run(spec)
    assert run.spec.models.base == str(tmp_path / "base")


def test_a_probe_trait_cut_by_max_traits_is_skipped_but_a_typo_is_an_error(tmp_path: Path) -> None:
    from traitforge.evaluate.probes import probe_specs

    # cares-about-user-wellbeing is the document's fifth trait: the tiny preset keeps three.
    ok = _spec(tmp_path, "evaluation:\n  probes:\n    probes/ok.jsonl: {trait: cares-about-user-wellbeing}\n")
    run = open_run(ok, preset="tiny")
    assert probe_specs(run, run.spec.evaluation) == []
    full = open_run(ok)
    assert [p.trait_id for p in probe_specs(full, full.spec.evaluation)] == ["cares-about-user-wellbeing"]
    typo = _spec(tmp_path, "evaluation:\n  probes:\n    probes/ok.jsonl: {trait: cares-about-wellbeing}\n")
    with pytest.raises(InputError, match=r"key 'evaluation.probes.probes/ok.jsonl.trait': 'cares-about-wellbeing'"):
        open_run(typo, preset="tiny")


@pytest.mark.parametrize("content,problem", [
    (b'{"question": "Q?", "answer_matching_behavior": " Yes", "answer_not_matching_behavior": " No"}\n[1,2,3]\n',
     "line 2: expected a JSON object with question, answer_matching_behavior, answer_not_matching_behavior, got list"),
    (b'{"question": "Q\xff?", "answer_matching_behavior": " Yes", "answer_not_matching_behavior": " No"}\n',
     "line 1: not UTF-8 text (byte 16 of the line)"),
    (b'{"question": "Q?"}\n', "line 1: needs question, answer_matching_behavior, answer_not_matching_behavior"),
])
def test_a_malformed_probe_file_fails_at_open_with_its_line(tmp_path, content, problem) -> None:
    """Before, these were found 40 s into evaluation (a traceback for the first two)."""
    spec = _spec(tmp_path, "evaluation:\n  probes:\n    probes/bad.jsonl: {trait: admits-uncertainty}\n")
    (tmp_path / "probes" / "bad.jsonl").write_bytes(content)
    with pytest.raises(InputError) as e:
        open_run(spec)
    assert str(e.value) == f"{tmp_path / 'probes' / 'bad.jsonl'}: {problem}"
    assert not (tmp_path / "run").exists()  # before the run directory was made, so before generation


@pytest.mark.parametrize("opts,problem", [
    ("{trait: admits-uncertainty, direction: sideways}", ".direction': must be match or not_match, got 'sideways'"),
    ("{trait: admits-uncertainty, limit: 0}", ".limit': must be a positive integer, got 0"),
    ("{trait: admits-uncertainty, dir: match}", "': unknown key 'dir' (use trait, direction, limit)"),
])
def test_bad_probe_options_fail_at_open_naming_the_spec_and_key(tmp_path, opts, problem) -> None:
    spec = _spec(tmp_path, f"evaluation:\n  probes:\n    probes/ok.jsonl: {opts}\n")
    with pytest.raises(InputError) as e:
        open_run(spec)
    assert str(e.value) == f"{spec}: key 'evaluation.probes.probes/ok.jsonl{problem}"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("extra,file,content,problem", [
    ("training: {sft: {mix_file: mix.jsonl, mix_ratio: 0.2}}\n", "mix.jsonl", b'{"messages": []}\n"text"\n',
     "line 2: expected a JSON object, got str"),
    ("training: {midtrain: {mix_file: mix.jsonl}}\n", "mix.jsonl", b'{"txt": "a"}\n', "line 1: missing field 'text'"),
    ("prices_file: prices.yaml\n", "prices.yaml", b"a: 1\nb: [\n", "line 3: invalid YAML"),
    ("evaluation: {capability_text: held.txt}\n", "held.txt", b"fine\nnot \xc3 fine\n", "line 2: not UTF-8 text"),
])
def test_every_other_spec_file_is_checked_at_open(tmp_path, extra, file, content, problem) -> None:
    spec = _spec(tmp_path, extra)
    (tmp_path / file).write_bytes(content)
    with pytest.raises(InputError) as e:
        open_run(spec)
    assert str(e.value).startswith(f"{tmp_path / file}: {problem}")
    assert not (tmp_path / "run").exists()
