import json

from _train_fixtures import make_run
from traitforge.train.launch import main, spec_from_run


def test_spec_comes_from_the_run_manifest(tmp_path):
    store, spec = make_run(tmp_path / "run")
    (tmp_path / "spec.yaml").write_text("traits: traits.md\n")
    store.manifest["config"] = spec.model_dump(mode="json")
    store.manifest["inputs"] = {"spec": {"path": str(tmp_path / "spec.yaml"), "sha256": "x"}}
    store.save()
    got = spec_from_run(store)
    assert got.training == spec.training
    assert got.resolve("traits.md") == tmp_path / "traits.md"  # relative to the recorded spec file


def test_launch_without_a_manifest_is_a_one_line_error(tmp_path, capsys):
    assert main([str(tmp_path / "nowhere"), "--stage", "sft"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "manifest.json" in err and "\n" not in err


def test_launch_rejects_unknown_checkpoint(tmp_path, capsys):
    store, spec = make_run(tmp_path)
    store.manifest["config"] = json.loads(spec.model_dump_json())
    store.save()
    assert main([str(tmp_path), "--stage", "rlhf"]) == 2
    assert "unknown checkpoint 'rlhf'" in capsys.readouterr().err
