"""Train one run's checkpoints from its manifest, for `accelerate launch`:

    accelerate launch --config_file examples/accelerate/multi_gpu_ddp.yaml \
        -m traitforge.train.launch RUN_DIR --stage sft

On a machine without GPUs, several CPU processes (gloo) run with
`torchrun --nproc_per_node 2 -m traitforge.train.launch RUN_DIR --stage sft`. Several machines run the
same command on every node with examples/accelerate/multi_node_ddp.yaml (its comments say what to set
on each: machine_rank, the main node's address and port; RUN_DIR on a shared filesystem).

Every process runs this; the Trainer shares the work, and only the main process writes the
manifest and the merged checkpoint. The spec comes from RUN/manifest.json ("config"), with paths
resolved against the spec file recorded in its inputs ("spec"), or from --spec.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pydantic import ValidationError

from traitforge.config import RunSpec, load_spec
from traitforge.errors import InputError, TraitforgeError
from traitforge.runstore import RunStore


def spec_from_run(store: RunStore) -> RunSpec:
    m = store.manifest
    if not store.exists or "config" not in m:
        raise InputError(f"{store.root}/manifest.json: no run config recorded (start the run with the CLI, or pass --spec)")
    try:
        spec = RunSpec.model_validate(m["config"])
    except ValidationError as e:
        err = e.errors()[0]
        raise InputError(f"{store.root}/manifest.json: config key '{'.'.join(map(str, err['loc']))}': {err['msg']}") from None
    spec_input = m.get("inputs", {}).get("spec", {}).get("path")
    if m.get("spec"):  # the run keeps its spec copy: paths are relative to the run directory
        spec._base_dir, spec.output_dir = store.root.resolve(), "."
    else:
        spec._base_dir = Path(spec_input).resolve().parent if spec_input else store.root.resolve()
    return spec


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m traitforge.train.launch", description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--stage", action="append", dest="stages", metavar="CHECKPOINT",
                   help="checkpoint to build (midtrain, sft, midtrain_sft, sft_dpo, midtrain_sft_dpo); "
                        "repeatable; default: the spec's training.checkpoints")
    p.add_argument("--spec", type=Path, help="run spec YAML (default: the config in the run's manifest)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from traitforge.runcontext import Run
    from traitforge.train import run_training
    from traitforge.train.common import is_main_process

    try:
        store = RunStore(args.run_dir)
        spec = load_spec(args.spec) if args.spec else spec_from_run(store)
        out = run_training(Run.of(store, spec), spec.training, args.stages)
    except TraitforgeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if is_main_process():
        for name, path in out.items():
            print(f"{name}\t{path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
