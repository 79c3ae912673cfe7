"""`local:` in-process Hugging Face transformers, batched, for any checkpoint directory or the
embedded default. Batched generation pads on the left so every prompt ends at the same column."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any, ClassVar, Sequence

from traitforge.llm.base import Backend, Completion, GenerateParams, Message, Usage
from traitforge.llm.embedded import resolve_model_path
from traitforge.llm.limits import PerLoop

_LOADED: dict[str, tuple[Any, Any]] = {}
_LOAD_LOCK = threading.Lock()


def load_model(path: str | Path) -> tuple[Any, Any]:
    """(model, tokenizer), loaded once per process and shared by every backend on that path."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    key = str(Path(path).resolve())
    with _LOAD_LOCK:
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


class LocalHFBackend(Backend):
    provider: ClassVar[str] = "local"
    supports_n = True
    supports_batch = True
    default_concurrency = 64
    default_timeout_s = 3600.0

    def __init__(self, model: str, batch_size: int = 8, timeout_s: float = 3600, **options: Any):
        super().__init__(model, **options)
        self.batch_size = batch_size
        self.path = resolve_model_path(model)
        self._model: Any = None
        self._tok: Any = None
        self._lock = PerLoop(asyncio.Lock)

    def cache_identity(self) -> dict[str, Any]:
        # A checkpoint directory can be retrained in place; key on its weights file's mtime/size too.
        ident = {"provider": self.provider, "model": self.model}
        weights = sorted(self.path.glob("*.safetensors"))
        if weights:
            st = weights[0].stat()
            ident["weights"] = f"{st.st_size}-{int(st.st_mtime)}"
        return ident

    def _ensure_loaded(self) -> tuple[Any, Any]:
        if self._model is None:
            self._model, self._tok = load_model(self.path)
        return self._model, self._tok

    def _render(self, messages: Sequence[Message]) -> str:
        _, tok = self._ensure_loaded()
        msgs = [m.to_dict() for m in messages]
        if tok.chat_template:
            return tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        return "\n\n".join(m["content"] for m in msgs)  # base models without a template: plain text

    async def generate(self, messages: Sequence[Message], params: GenerateParams) -> Completion:
        return (await self.generate_batch([(messages, params)]))[0]

    async def generate_batch(self, requests: Sequence[tuple[Sequence[Message], GenerateParams]]) -> list[Completion]:
        async with self._lock.get():  # one forward pass at a time on the device
            return await asyncio.to_thread(self._generate_sync, requests)

    def _generate_sync(self, requests: Sequence[tuple[Sequence[Message], GenerateParams]]) -> list[Completion]:
        import torch

        model, tok = self._ensure_loaded()
        out: list[Completion] = []
        # Requests share params within a batch (the client groups them that way).
        for start in range(0, len(requests), self.batch_size):
            chunk = requests[start:start + self.batch_size]
            p = chunk[0][1]
            prompts = [self._render(m) for m, _ in chunk]
            enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            gen_kwargs: dict[str, Any] = {
                "max_new_tokens": p.max_tokens,
                "num_return_sequences": p.n,
                "pad_token_id": tok.pad_token_id,
                "eos_token_id": tok.eos_token_id,
            }
            if p.temperature > 0:
                gen_kwargs.update(do_sample=True, temperature=p.temperature, top_p=p.top_p or 1.0)
            else:
                gen_kwargs.update(do_sample=False)
            if p.seed is not None:
                torch.manual_seed(p.seed)
            with torch.no_grad():
                seqs = model.generate(**enc, **gen_kwargs)
            prompt_len = enc["input_ids"].shape[1]
            for i in range(len(chunk)):
                texts, finish, out_tok = [], [], 0
                n_in = int(enc["attention_mask"][i].sum())
                for j in range(p.n):
                    new = seqs[i * p.n + j][prompt_len:]
                    ids = [t for t in new.tolist() if t != tok.pad_token_id]
                    out_tok += len(ids)
                    text = tok.decode(ids, skip_special_tokens=True)
                    reason = "length" if len(ids) >= p.max_tokens else "stop"
                    for s in p.stop:
                        if s in text:
                            text, reason = text[: text.index(s)], "stop"
                    texts.append(text.strip())
                    finish.append(reason)
                out.append(Completion(texts=texts, usage=Usage(n_in, out_tok), finish_reasons=finish))
        return out
