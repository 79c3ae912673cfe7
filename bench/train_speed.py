"""LoRA SFT speed on the embedded model: steps/s and tokens/s at batch x length (default 4x128).

    python bench/train_speed.py [--steps 10] [--batch 4] [--length 128] [--method lora|full] [--threads N]

Builds a throwaway run with chats long enough that every sequence is truncated to --length, so each
step sees exactly batch x length tokens; the first 2 steps (warm-up) are left out of the figures.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from traitforge.config import RunSpec
from traitforge.jsonl import write_jsonl
from traitforge.llm.embedded import embedded_checkpoint
from traitforge.train import sft
from traitforge.train.common import StageJob
from traitforge.types import Chat, ChatMessage

WARMUP = 2


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--length", type=int, default=128)
    p.add_argument("--method", choices=["lora", "full"], default="lora")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    a = p.parse_args()
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)

    from transformers import TrainerCallback

    times: list[float] = []

    class StepTimer(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            times.append(time.perf_counter())

    long_reply = " ".join(f"Point {i}: I am not certain, and I say so plainly." for i in range(40))
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        chats = [Chat(id=f"c{i}", trait_ids=["t"], messages=[
            ChatMessage(role="user", content=f"Question {i}: tell me about Atlantis."),
            ChatMessage(role="assistant", content=long_reply)]) for i in range(a.batch * 4)]
        write_jsonl(root / "chats.jsonl", chats)
        spec = RunSpec.model_validate({"traits": "x", "training": {"method": a.method, "save_steps": 10_000,
            "logging_steps": 10_000, "sft": {"max_steps": a.steps + WARMUP, "batch_size": a.batch,
                                               "max_length": a.length, "lr_scheduler": "constant"}}})
        job = StageJob(name="sft", kind="sft", init_path=embedded_checkpoint(), stage=spec.training.sft,
                       train_dir=root / "train", out_dir=root / "ckpt", callbacks=[StepTimer()])
        convs, _ = sft.build_conversations(spec, job, root / "chats.jsonl")
        trainer = sft.make_trainer(spec, job, convs)
        assert all(len(x) == a.length for x in trainer.train_dataset["input_ids"])
        trainer.train()
    dt = times[-1] - times[WARMUP - 1]
    steps_s = a.steps / dt
    print(f"{a.method} SFT, embedded SmolLM2-135M, batch {a.batch} x {a.length} tokens, {a.steps} timed steps, "
          f"{torch.get_num_threads()} torch threads")
    print(f"steps/s   {steps_s:.3f}  ({dt / a.steps:.2f} s/step)")
    print(f"tokens/s  {steps_s * a.batch * a.length:.0f}")


if __name__ == "__main__":
    main()
