"""The arithmetic floor of the tiny run's evaluation on this machine: how fast it could be at best.

    python bench/eval_floor.py [--items DIR] [--old-seconds S] [--checkpoints base,midtrain,...]

Runs this tree's evaluation as `bench/eval.py --compare` does (the tiny preset's sizes, three traits,
five checkpoints as separate copies of the embedded model; the items of an earlier --compare with
--items, else built here first), counting every forward pass of every checkpoint: prompt tokens
(log-prob scoring and the prompt pass of generation, padding left out) and decoding steps by batch
size. Then it measures the machine: the best matrix-multiply rate at the model's shapes on all
cores, and one decoding step's cost at each batch size seen. The floor is

    prompt tokens x 2 x (the model's linear weights) / best rate  +  sum over steps of a step's cost

that is, every prompt token at the best rate this CPU reaches on the model's own shapes (attention
not counted) and every decoding step this tree took as cheap as alone on every core (nothing
overlapped). It is an estimate, not a proof: fewer, larger decoding batches would go lower, but
the decoding steps follow from the items (a multi-turn conversation's turns wait for each other).
The machine is shared and noisy: compare figures from one run. With --old-seconds (the old side
of a --compare), it prints how much faster than that these items could run at the floor.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import eval as bench_eval  # noqa: E402  (bench/eval.py)

CHECKPOINTS_5 = "base,midtrain,sft,midtrain_sft,control"


class ForwardCounter:
    """Wraps the model class's forward and generate: kind -> calls, real tokens, seconds; decode
    steps by batch size."""

    def __init__(self) -> None:
        from transformers.generation.utils import GenerationMixin
        from transformers.models.llama import modeling_llama

        self.kinds: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0, 0.0])
        self.steps: collections.Counter[int] = collections.Counter()
        self._lock = threading.Lock()
        self._in_generate = threading.local()
        forward, generate = modeling_llama.LlamaForCausalLM.forward, GenerationMixin.generate
        counter = self

        def counted_forward(model, *args, **kwargs):
            ids = kwargs.get("input_ids") if kwargs.get("input_ids") is not None else args[0]
            t0 = time.perf_counter()
            out = forward(model, *args, **kwargs)
            counter.add(ids, kwargs.get("attention_mask"), time.perf_counter() - t0)
            return out

        def flagged_generate(model, *args, **kwargs):
            counter._in_generate.on = True
            try:
                return generate(model, *args, **kwargs)
            finally:
                counter._in_generate.on = False

        modeling_llama.LlamaForCausalLM.forward = counted_forward
        GenerationMixin.generate = flagged_generate

    def add(self, ids, mask, seconds: float) -> None:
        rows, new = ids.shape
        real = int(mask[:, -new:].sum()) if mask is not None else rows * new  # the new tokens, no padding
        generating = getattr(self._in_generate, "on", False)
        kind = ("decode" if new == 1 else "generate prompt") if generating else "log-prob"
        with self._lock:
            k = self.kinds[kind]
            k[0] += 1
            k[1] += real
            k[2] += seconds
            if kind == "decode":
                self.steps[rows] += 1


def best_rate_gflops(model) -> float:
    """The best matrix-multiply rate (GFLOP/s) at the model's linear shapes, prompts of 256-1024 tokens."""
    import torch

    shapes = {tuple(m.weight.shape) for m in model.modules() if isinstance(m, torch.nn.Linear)}
    best = 0.0
    with torch.no_grad():
        for out_f, in_f in shapes:
            w = torch.randn(out_f, in_f)
            for rows in (256, 1024):
                x = torch.randn(rows, in_f)
                x @ w.t()
                n, t0 = 5, time.perf_counter()
                for _ in range(n):
                    x @ w.t()
                best = max(best, 2 * rows * in_f * out_f * n / (time.perf_counter() - t0) / 1e9)
    return best


def step_ms(model, rows: int, prompt: int = 128, steps: int = 24) -> float:
    """One greedy decoding step at `rows` rows after a `prompt`-token prompt, alone on every core."""
    import torch

    ids = torch.randint(100, 20000, (rows, prompt))
    with torch.no_grad():
        out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
        cache, nxt = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        for warm in range(steps + 4):  # four steps to warm up, then the timed ones
            if warm == 4:
                t0 = time.perf_counter()
            out = model(input_ids=nxt, past_key_values=cache, use_cache=True, logits_to_keep=1)
            cache, nxt = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
    return (time.perf_counter() - t0) / steps * 1000


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--items", help="items dir of an earlier `bench/eval.py --compare` (default: build them)")
    p.add_argument("--old-seconds", type=float, help="the old side's total from that --compare")
    p.add_argument("--checkpoints", default=CHECKPOINTS_5)
    a = p.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-eval-floor-"))
    items = Path(a.items) if a.items else root / "items"
    if not a.items:
        bench_eval.compare_side(items, None, a.checkpoints, None)
    counter = ForwardCounter()
    t0 = time.perf_counter()
    bench_eval.compare_side(root / "new", items, a.checkpoints, "by_checkpoint")
    wall = time.perf_counter() - t0

    import torch
    from transformers import AutoModelForCausalLM

    from traitforge.llm.embedded import embedded_checkpoint

    model = AutoModelForCausalLM.from_pretrained(str(embedded_checkpoint()), dtype=torch.float32).eval()
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    gflop_per_token = 2 * linear / 1e9
    rate = best_rate_gflops(model)
    step_cost = {rows: step_ms(model, rows) for rows in sorted(counter.steps)}

    print(f"\nthis tree's evaluation: {wall:.1f}s wall; forward passes by kind (seconds summed over "
          f"concurrent streams):")
    print(f"{'kind':<16}{'calls':>7}{'tokens':>9}{'seconds':>9}{'GFLOP/s':>9}")
    prompt_tokens = 0
    for kind, (calls, tokens, seconds) in sorted(counter.kinds.items()):
        print(f"{kind:<16}{calls:>7}{tokens:>9}{seconds:>9.1f}{tokens * gflop_per_token / seconds:>9.1f}")
        if kind != "decode":
            prompt_tokens += tokens
    prompt_floor = prompt_tokens * gflop_per_token / rate
    decode_floor = sum(n * step_cost[rows] / 1000 for rows, n in counter.steps.items())
    print(f"\nmachine: best matrix multiply {rate:.0f} GFLOP/s at the model's shapes; "
          f"{gflop_per_token:.2f} GFLOP per token; decoding step alone: "
          + ", ".join(f"batch {r} {ms:.0f} ms x {counter.steps[r]}" for r, ms in step_cost.items()))
    floor = prompt_floor + decode_floor
    print(f"floor: prompts {prompt_floor:.0f}s + decoding {decode_floor:.0f}s = {floor:.0f}s "
          f"(this tree {wall:.0f}s, {wall / floor:.2f}x the floor)")
    if a.old_seconds:
        print(f"old {a.old_seconds:.0f}s: {a.old_seconds / floor:.2f}x faster at the floor with these items on "
              f"this machine (this tree: {a.old_seconds / wall:.2f}x)")
    print(f"run dir: {root}")


if __name__ == "__main__":
    main()
