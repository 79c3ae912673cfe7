"""`local:` in-process Hugging Face transformers, batched, for any checkpoint directory or the
embedded default. Batched generation pads on the left so every prompt ends at the same column.

Throughput on a CPU comes from the batch: the embedded 135M model decodes ~73 tokens/s at batch 8
and ~167 at batch 32 on 2 cores (bench/local_engines.py), because a decoding step costs nearly the
same whatever the batch. So a batch takes requests with different answer limits, temperatures and
sample counts (each row keeps its own), except where padding to a far longer prompt or decoding to
a far longer answer limit costs more than a pass of its own (`plan_batches`); forward passes share
the cores through `ForwardSlots`."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterator, Sequence

from traitforge.llm.base import Backend, Completion, GenerateParams, Message, Usage
from traitforge.llm.embedded import resolve_model_path

log = logging.getLogger(__name__)
_LOADED: dict[str, tuple[Any, Any]] = {}
_LOAD_LOCK = threading.Lock()


class ForwardSlots:
    """How many forward passes run at once in this process, whoever runs them (generation here,
    log-prob scoring in shared/logprob.py): on a GPU one; on a CPU one per core, each on a share
    of the cores. Decoding a small model is bound by Python, not arithmetic: one stream on two
    threads leaves a core idle (measured on 2 cores: one stream of batch 10 decoded 59 tokens/s on
    two threads, 54 on one, and two streams on one thread each 97), so two streams on one thread each use
    the machine; a lone stream gets every core back. Thread counts change only here."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sem: threading.Semaphore | None = None
        self._cores = 1
        self._active = 0

    def _setup(self) -> None:
        import torch

        self._cores = 1 if torch.cuda.is_available() else max(1, torch.get_num_threads())
        self._sem = threading.Semaphore(self._cores)

    def _share(self) -> None:
        import torch

        if self._cores > 1:
            torch.set_num_threads(max(1, self._cores // max(1, self._active)))

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        with self._lock:
            if self._sem is None:
                self._setup()
        assert self._sem is not None
        with self._sem:
            with self._lock:
                self._active += 1
                self._share()
            try:
                yield
            finally:
                with self._lock:
                    self._active -= 1
                    self._share()


FORWARD = ForwardSlots()
DEFAULT_BATCH_SIZE = 32


def _key(path: str | Path) -> str:
    return str(Path(path).resolve())


def load_model(path: str | Path) -> tuple[Any, Any]:
    """(model, tokenizer), loaded once per process and shared by every backend on that path
    until `unload_model` releases it."""
    import torch

    key = _key(path)
    with _LOAD_LOCK:
        # Imported under the lock: transformers' lazy imports are not thread-safe, and evaluation
        # loads models from several threads ("cannot import name 'AutoModelForCausalLM'").
        from transformers import (AutoModelForCausalLM, AutoTokenizer, LogitsProcessorList,  # noqa: F401
                                  StoppingCriteriaList)

        if key not in _LOADED:
            tok = AutoTokenizer.from_pretrained(key)
            tok.padding_side = "left"
            if tok.pad_token is None:
                tok.pad_token = tok.eos_token
            dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32  # bf16 is slow on CPU
            model = AutoModelForCausalLM.from_pretrained(key, dtype=dtype)
            if torch.cuda.is_available():
                model = model.to("cuda")
            model.eval()
            _LOADED[key] = (model, tok)
        return _LOADED[key]


def is_loaded(path: str | Path) -> bool:
    return _key(path) in _LOADED


def unload_model(path: str | Path) -> bool:
    """Release a checkpoint's weights (evaluation does this when a checkpoint is done, so a run
    with several large checkpoints never holds them all). Backends and scorers load it again if
    they are used later. True if it was loaded."""
    with _LOAD_LOCK:
        gone = _LOADED.pop(_key(path), None)
    if gone is None:
        return False
    del gone
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover - torch is what loaded it
        pass
    return True


@dataclass(frozen=True)
class BatchCosts:
    """What a local batch costs, in seconds, to choose how to cut rows into batches: each prompt
    token (padding too: a batch's prompts are padded to its longest), each decoding step (the
    weights are read once a step whatever the batch), each row of a step, and each context token of
    a row in a step (attention). A batch decodes until its largest answer limit."""

    prompt_token: float
    step: float
    row: float
    context: float

    def of(self, rows: int, longest_prompt: int, new_tokens: int) -> float:
        context = longest_prompt + new_tokens / 2
        return (rows * longest_prompt * self.prompt_token
                + new_tokens * (self.step + rows * (self.row + context * self.context)))


# The embedded 135M model on 2 CPU cores (bench/eval_floor.py; the batch lines of run.log): a
# prompt token ~3 ms, a decoding step ~63 ms at batch 1 and ~190 ms at batch 32, attention ~0.01 ms
# per row and context token. A larger model scales every term about alike, so the cuts hold. On a
# GPU padding and rows are nearly free beside a step's fixed cost: batches stay whole.
CPU_COSTS = BatchCosts(prompt_token=3e-3, step=63e-3, row=4e-3, context=1e-5)
GPU_COSTS = BatchCosts(prompt_token=2e-5, step=20e-3, row=1e-4, context=1e-7)


def _on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def plan_batches(prompts: Sequence[int], limits: Sequence[int], batch_size: int,
                 costs: BatchCosts = CPU_COSTS) -> list[list[int]]:
    """Rows (prompt length, answer limit) cut into batches of at most `batch_size` that cost least
    in all: a 30-token prompt beside a 2,600-token one, or a 32-token answer beside a 600-token one,
    would pay for the other's padding or steps; a batch too small pays a step's fixed cost for few
    rows. Rows are ordered by prompt length (or by answer limit, then length: whichever plan is
    cheaper) and cut where a dynamic program over the cut points says. Returns row indices, each
    batch in that order."""
    n = len(prompts)
    best_plan: list[list[int]] = []
    best_cost = float("inf")
    for order in (sorted(range(n), key=lambda r: prompts[r]), sorted(range(n), key=lambda r: (limits[r], prompts[r]))):
        cost = [0.0] + [float("inf")] * n  # cost[j]: the cheapest cut of order[:j]
        cut = [0] * (n + 1)
        for j in range(1, n + 1):
            longest = limit = 0
            for i in range(j - 1, max(0, j - batch_size) - 1, -1):  # the batch order[i:j]
                longest, limit = max(longest, prompts[order[i]]), max(limit, limits[order[i]])
                c = cost[i] + costs.of(j - i, longest, limit)
                if c < cost[j]:
                    cost[j], cut[j] = c, i
        if cost[n] < best_cost:
            plan, j = [], n
            while j > 0:
                plan.append(order[cut[j]:j])
                j = cut[j]
            best_plan, best_cost = plan[::-1], cost[n]
    return best_plan


class _RowTemperatures:
    """Logits processor for a batch that mixes greedy and sampled requests (generate then samples,
    at temperature 1): a greedy row keeps only its most likely token, so the draw is that token; a
    sampled row's logits are divided by its temperature. top_k filtering keeps the same tokens
    whatever the scaling, and the batch's top_p is 1, so a row samples as it would on its own."""

    def __init__(self, temperatures: Any):
        self.t = temperatures

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        t = self.t.to(scores.device)[:, None]
        greedy = t == 0
        best = torch.full_like(scores, float("-inf")).scatter(1, scores.argmax(dim=-1, keepdim=True), 0.0)
        return torch.where(greedy, scores + best, scores / torch.where(greedy, torch.ones_like(t), t))


class _RowLimits:
    """Stopping criterion: row i is finished once it has `limits[i]` new tokens, so requests
    with different answer limits share one batch (the batch runs to the largest)."""

    def __init__(self, prompt_len: int, limits: Any):
        self.prompt_len = prompt_len
        self.limits = limits

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        return (input_ids.shape[1] - self.prompt_len) >= self.limits.to(input_ids.device)


class LocalHFBackend(Backend):
    provider: ClassVar[str] = "local"
    supports_n = True
    supports_batch = True
    default_concurrency = 64
    default_timeout_s = 3600.0

    def __init__(self, model: str, batch_size: int = DEFAULT_BATCH_SIZE, timeout_s: float = 3600, **options: Any):
        super().__init__(model, **options)
        self.batch_size = batch_size
        self.path = resolve_model_path(model)
        self._identity: tuple[Any, str] | None = None  # (file sizes and mtimes, content identity)

    def cache_identity(self) -> dict[str, Any]:
        # The weights' content identity (llm/identity.py) and nothing else: the same weights answer
        # alike wherever they lie (an ablation arm's copy of another arm's checkpoint), a checkpoint
        # retrained in place is another model even within the same second, and the key is the same
        # from the first call on (keyed on the path and clock until evaluation first hashed the
        # model, a run's generation calls missed the cache after it). Hashed once per set of file
        # sizes and mtimes (identity.json keeps the hashes across processes).
        from traitforge.llm.identity import checkpoint_identity, model_files

        stamp = tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in model_files(self.path))
        if self._identity is None or self._identity[0] != stamp:
            self._identity = (stamp, checkpoint_identity(self.path))
        return {"provider": self.provider, "content": self._identity[1]}

    def _ensure_loaded(self) -> tuple[Any, Any]:
        return load_model(self.path)  # not kept here, so `unload_model` really frees it

    def _render(self, messages: Sequence[Message]) -> str:
        _, tok = self._ensure_loaded()
        msgs = [m.to_dict() for m in messages]
        if tok.chat_template:
            return tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        return "\n\n".join(m["content"] for m in msgs)  # base models without a template: plain text

    async def generate(self, messages: Sequence[Message], params: GenerateParams) -> Completion:
        return (await self.generate_batch([(messages, params)]))[0]

    async def generate_batch(self, requests: Sequence[tuple[Sequence[Message], GenerateParams]]) -> list[Completion]:
        return await asyncio.to_thread(self._generate_sync, requests)

    def _generate_sync(self, requests: Sequence[tuple[Sequence[Message], GenerateParams]]) -> list[Completion]:
        """Requests share top_p (the client groups them that way); their temperatures, answer
        limits, stop strings and sample counts may differ. Each sample is a row (a request for n
        samples is n rows of its prompt, as num_return_sequences would make); `plan_batches` cuts
        the rows into the batches that cost least."""
        _, tok = self._ensure_loaded()
        # Never tokenize with padding=True: that sets padding on the shared fast tokenizer, and the
        # log-prob scorer tokenizes on another thread at the same time. Padded by hand instead.
        ids = tok([self._render(m) for m, _ in requests], add_special_tokens=False)["input_ids"]
        rows = [(i, j) for i, (_, p) in enumerate(requests) for j in range(p.n)]
        plan = plan_batches([len(ids[i]) for i, _ in rows], [requests[i][1].max_tokens for i, _ in rows],
                            self.batch_size, GPU_COSTS if _on_gpu() else CPU_COSTS)
        samples: dict[tuple[int, int], tuple[str, str, int]] = {}
        for group in plan:
            chunk = [rows[r] for r in group]
            t0 = time.perf_counter()
            got = self._generate_rows([ids[i] for i, _ in chunk], [requests[i][1] for i, _ in chunk])
            samples.update(zip(chunk, got))
            lens = [len(ids[i]) for i, _ in chunk]
            # In the run's log: where a local model's time goes (padding, answer limits, batch sizes).
            log.info("%s: batch of %d, prompts %d-%d tokens (%d padded, %d real), %d new tokens at most, %.1fs",
                     self.path.name, len(chunk), min(lens), max(lens), len(lens) * max(lens), sum(lens),
                     max(requests[i][1].max_tokens for i, _ in chunk), time.perf_counter() - t0)
        out = []
        for i, (_, p) in enumerate(requests):
            mine = [samples[(i, j)] for j in range(p.n)]
            out.append(Completion(texts=[t for t, _, _ in mine], usage=Usage(len(ids[i]), sum(n for _, _, n in mine)),
                                  finish_reasons=[r for _, r, _ in mine]))
        return out

    def _generate_rows(self, prompts: list[list[int]], params: list[GenerateParams]) -> list[tuple[str, str, int]]:
        """(text, finish reason, new tokens) per row: one sample of each prompt, with its params."""
        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        model, tok = self._ensure_loaded()
        prompt_len = max(len(x) for x in prompts)
        input_ids = torch.full((len(prompts), prompt_len), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), prompt_len), dtype=torch.long)
        for r, x in enumerate(prompts):  # on the left, so every prompt ends at the same column
            input_ids[r, prompt_len - len(x):] = torch.tensor(x, dtype=torch.long)
            mask[r, prompt_len - len(x):] = 1
        limits = torch.tensor([q.max_tokens for q in params])
        gen_kwargs: dict[str, Any] = {"max_new_tokens": int(limits.max()), "pad_token_id": tok.pad_token_id,
                                      "eos_token_id": tok.eos_token_id}
        if len(set(limits.tolist())) > 1:
            gen_kwargs["stopping_criteria"] = StoppingCriteriaList([_RowLimits(prompt_len, limits)])
        temps = {float(q.temperature) for q in params}
        if temps == {0.0}:
            gen_kwargs.update(do_sample=False)
        elif len(temps) == 1:
            gen_kwargs.update(do_sample=True, temperature=params[0].temperature, top_p=params[0].top_p or 1.0)
        else:  # greedy and sampled rows, or several temperatures (the client mixes them only at top_p 1)
            t = torch.tensor([float(q.temperature) for q in params])
            gen_kwargs.update(do_sample=True, temperature=1.0, top_p=1.0,
                              logits_processor=LogitsProcessorList([_RowTemperatures(t)]))
        seed = next((q.seed for q in params if q.seed is not None), None)
        with FORWARD.slot(), torch.no_grad():
            if seed is not None:
                torch.manual_seed(seed)
            seqs = model.generate(input_ids=input_ids.to(model.device), attention_mask=mask.to(model.device),
                                  **gen_kwargs)
        out = []
        for r, q in enumerate(params):
            new = [t for t in seqs[r][prompt_len:].tolist() if t != tok.pad_token_id][: q.max_tokens]
            text = tok.decode(new, skip_special_tokens=True)
            reason = "length" if len(new) >= q.max_tokens else "stop"
            for stop in q.stop:
                if stop in text:
                    text, reason = text[: text.index(stop)], "stop"
            out.append((text.strip(), reason, len(new)))
        return out
