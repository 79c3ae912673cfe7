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


def test_every_shipped_accelerate_config_parses():
    """accelerate's own loader (unknown keys and bad values are errors); the multi-node one names its nodes."""
    from pathlib import Path

    from accelerate.commands.config.config_args import load_config_from_file

    configs = {p.name: load_config_from_file(str(p))
               for p in sorted((Path(__file__).resolve().parents[1] / "examples" / "accelerate").glob("*.yaml"))}
    assert {"single_gpu.yaml", "multi_gpu_ddp.yaml", "multi_node_ddp.yaml", "multi_cpu.yaml", "fsdp.yaml",
            "deepspeed_zero2.yaml"} <= set(configs)
    multi = configs["multi_node_ddp.yaml"]
    assert multi.num_machines == 2 and multi.machine_rank == 0
    assert multi.main_process_ip and multi.main_process_port and multi.num_processes % multi.num_machines == 0
    assert all(c.num_machines == 1 for name, c in configs.items() if name != "multi_node_ddp.yaml")
