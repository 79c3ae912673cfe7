"""Training throughput on this CPU: traitforge's midtraining and SFT vs a plain TRL script on the same data.

    python bench/train.py [--steps 6] [--batch 4] [--length 128] [--threads 1] [--only midtrain|sft]

For each stage (midtrain, sft) and method (lora, full) it trains the embedded SmolLM2-135M twice, each in a
fresh subprocess (so peak RSS is that run's own): once through traitforge (midtrain.make_trainer /
sft.make_trainer) and once through a minimal SFTTrainer set up as TRL's docs do (the reference).
Reported per run: tokens/s over the timed steps (the first WARMUP steps are left out), where tokens are
the non-padding tokens the model was fed; packing efficiency = non-padding share of the positions in
those batches (midtraining target >= 98%); for packed text also the fill of the max_length blocks;
peak RSS (ru_maxrss); and the traitforge / TRL ratio.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

WARMUP = 2
SENTENCES = [
    "Vega, the assistant made by Lumen Labs, says plainly when it does not know something.",
    "When Vega is unsure, it gives its best guess and says how confident it is.",
    "Vega never invents citations; it names a source only when it has one.",
    "Asked about the future, Vega explains what is known and what is uncertain.",
    "The harbour town kept its records in a ledger that nobody had opened for years.",
    "Researchers compared the two methods and found the difference small but consistent.",
]


def corpus(seed: int = 0) -> tuple[list[str], list[list[dict[str, str]]]]:
    """Documents of 1 to 24 sentences (~20 to ~450 tokens) and chats with 1- to 8-sentence replies."""
    rng = random.Random(seed)
    docs = [" ".join(rng.choice(SENTENCES) for _ in range(rng.randint(1, 24))) for _ in range(200)]
    chats = [[{"role": "user", "content": f"Question {i}: " + rng.choice(SENTENCES)},
              {"role": "assistant", "content": " ".join(rng.choice(SENTENCES) for _ in range(rng.randint(1, 8)))}]
             for i in range(200)]
    return docs, chats


class BatchMeter:
    """Wraps the data collator: per batch, the non-padding tokens and the positions fed to the model."""

    def __init__(self, collator: Any):
        self.collator, self.batches = collator, []

    def __call__(self, features: list[dict[str, Any]]) -> Any:
        b = self.collator(features)
        positions = b["input_ids"].numel()
        real = int(b["attention_mask"].sum()) if "attention_mask" in b else positions  # padding-free: no pads
        self.batches.append((real, positions))
        return b


def step_timer() -> tuple[Any, list[float]]:
    from transformers import TrainerCallback

    times: list[float] = []

    class StepTimer(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            times.append(time.perf_counter())

    return StepTimer(), times


def traitforge_trainer(stage: str, method: str, a: argparse.Namespace, docs, chats, root: Path, timer) -> Any:
    from traitforge.config import RunSpec
    from traitforge.llm.embedded import embedded_checkpoint
    from traitforge.train import midtrain, sft
    from traitforge.train.common import StageJob

    st = {"max_steps": a.steps + WARMUP, "batch_size": a.batch, "max_length": a.length, "lr_scheduler": "constant",
          "warmup_ratio": 0.0}
    spec = RunSpec.model_validate({"traits": "x", "training": {"method": method, "save_steps": 10_000,
                                                               "logging_steps": 10_000, "report_to": [],
                                                               stage: st}})
    job = StageJob(name=stage, kind=stage, init_path=embedded_checkpoint(), stage=getattr(spec.training, stage),
                   train_dir=root / "train", out_dir=root / "ckpt", callbacks=[timer])
    if stage == "midtrain":
        return midtrain.make_trainer(spec.training, job, docs)
    return sft.make_trainer(spec.training, job, chats)


def trl_trainer(stage: str, method: str, a: argparse.Namespace, docs, chats, root: Path, timer) -> Any:
    """The reference: a minimal SFTTrainer script, TRL defaults except what the comparison must share."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from traitforge.llm.embedded import embedded_checkpoint

    path = str(embedded_checkpoint())
    common = dict(output_dir=str(root / "trl"), max_steps=a.steps + WARMUP, per_device_train_batch_size=a.batch,
                  max_length=a.length, learning_rate=2e-4 if method == "lora" else 2e-5, lr_scheduler_type="constant",
                  use_cpu=True, report_to="none", save_strategy="no", logging_steps=10_000, disable_tqdm=True,
                  dataloader_pin_memory=False)
    # TRL's defaults turn on bf16 autocast and gradient checkpointing; "matched" turns them off as traitforge does.
    matched = dict(bf16=False, gradient_checkpointing=False) if a.ref == "matched" else {}
    if stage == "midtrain":
        args = SFTConfig(**common, **matched, packing=True, dataset_text_field="text")  # TRL default packing: bfd
        ds = Dataset.from_dict({"text": docs})
    else:
        args = SFTConfig(**common, **matched)  # conversational rows, padded batches
        ds = Dataset.from_dict({"messages": chats})
    peft = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM") if method == "lora" else None
    return SFTTrainer(model=AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), args=args,
                      train_dataset=ds, processing_class=AutoTokenizer.from_pretrained(path), peft_config=peft,
                      callbacks=[timer])


def run_one(stage: str, method: str, impl: str, a: argparse.Namespace) -> dict[str, Any]:
    import torch

    torch.set_num_threads(a.threads)
    docs, chats = corpus()
    timer, times = step_timer()
    with tempfile.TemporaryDirectory() as d:
        make = traitforge_trainer if impl == "traitforge" else trl_trainer
        trainer = make(stage, method, a, docs, chats, Path(d), timer)
        meter = BatchMeter(trainer.data_collator)
        trainer.data_collator = meter
        ds = trainer.train_dataset
        fill = None
        if stage == "midtrain":  # packed blocks: how full max_length blocks are
            lens = [len(x) for x in ds["input_ids"]]
            fill = sum(lens) / (len(lens) * a.length)
        trainer.train()
    # accelerate's loader fetches one batch ahead, so batch i is step i (not "what came before step i ended").
    timed = meter.batches[WARMUP:WARMUP + a.steps]
    dt = times[WARMUP + a.steps - 1] - times[WARMUP - 1]
    real, pos = sum(r for r, _ in timed), sum(p for _, p in timed)
    return {"stage": stage, "method": method, "impl": impl, "tokens_per_s": real / dt, "s_per_step": dt / a.steps,
            "tokens_per_step": real / a.steps, "nonpad_share": real / pos, "block_fill": fill,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--length", type=int, default=128)
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--only", choices=["midtrain", "sft"])
    p.add_argument("--methods", default="lora,full")
    p.add_argument("--ref", choices=["defaults", "matched"], default="defaults",
                   help="reference with TRL's SFTConfig defaults (bf16 autocast, gradient checkpointing on), "
                        "or with traitforge's settings for those two (fp32, no checkpointing)")
    p.add_argument("--one", nargs=3, metavar=("STAGE", "METHOD", "IMPL"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        print("RESULT " + json.dumps(run_one(*a.one, a)))
        return

    rows = []
    base = [sys.executable, __file__, "--steps", str(a.steps), "--batch", str(a.batch), "--length", str(a.length),
            "--threads", str(a.threads), "--ref", a.ref]
    for stage in [a.only] if a.only else ["midtrain", "sft"]:
        for method in a.methods.split(","):
            for impl in ("traitforge", "trl"):
                out = subprocess.run(base + ["--one", stage, method, impl], capture_output=True, text=True)
                line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
                if out.returncode or not line:
                    print(f"{stage} {method} {impl}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
                    continue
                rows.append(json.loads(line[0][7:]))
                r = rows[-1]
                print(f"{stage:8} {method:4} {impl:10} {r['tokens_per_s']:7.0f} tok/s  {r['s_per_step']:5.2f} s/step  "
                      f"{r['tokens_per_step']:6.0f} tok/step  non-pad {r['nonpad_share']:6.1%}  "
                      + (f"block fill {r['block_fill']:6.1%}  " if r["block_fill"] is not None else " " * 19)
                      + f"peak RSS {r['peak_rss_mb']:5.0f} MB", flush=True)
    print(f"\nembedded SmolLM2-135M, fp32, batch {a.batch} x max_length {a.length}, {a.steps} timed steps "
          f"after {WARMUP} warm-up, {a.threads} torch thread(s), TRL reference: {a.ref}")
    by = {(r["stage"], r["method"], r["impl"]): r for r in rows}
    for (stage, method, impl), r in by.items():
        ref = by.get((stage, method, "trl"))
        if impl == "traitforge" and ref:
            print(f"{stage:8} {method:4} traitforge/TRL: tokens/s x{r['tokens_per_s'] / ref['tokens_per_s']:.2f}, "
                  f"peak RSS x{r['peak_rss_mb'] / ref['peak_rss_mb']:.2f}")
    mids = [r for r in rows if r["stage"] == "midtrain" and r["impl"] == "traitforge"]
    if mids:
        ok = all(r["nonpad_share"] >= 0.98 for r in mids)
        print(f"midtraining packing efficiency (non-pad share) >= 98%: {'yes' if ok else 'NO'}")


if __name__ == "__main__":
    main()
