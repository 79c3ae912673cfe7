"""Judge-free scoring: the log-probability a checkpoint gives a continuation after chat messages
(rendered with its chat template and the generation prompt), and the perplexity of plain text.

Prompt and continuation are tokenised separately and concatenated, so the continuation's tokens
are exactly the same whatever the prompt; batches are right-padded and run without gradients."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from traitforge.llm.client import MessagesLike, as_messages
from traitforge.llm.embedded import resolve_model_path
from traitforge.llm.providers.local_hf import FORWARD, load_model


@dataclass(frozen=True)
class LogProb:
    sum: float
    n_tokens: int

    @property
    def mean(self) -> float:
        """Per-token mean: comparable across continuations of different lengths."""
        return self.sum / self.n_tokens if self.n_tokens else float("-inf")


class LogProbScorer:
    def __init__(self, checkpoint: str | Path, batch_size: int = 4, max_length: int = 1024):
        self.path = resolve_model_path(str(checkpoint))
        self.batch_size = batch_size
        self.max_length = max_length

    def _load(self) -> tuple[Any, Any]:
        return load_model(self.path)  # shared, and not kept here, so `unload_model` really frees it

    def render(self, messages: MessagesLike) -> str:
        _, tok = self._load()
        msgs = [m.to_dict() for m in as_messages(messages)]
        if tok.chat_template:
            return tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        return "\n\n".join(m["content"] for m in msgs) + "\n\n"  # same fallback as the local backend

    def score(self, requests: Sequence[tuple[MessagesLike, str]]) -> list[LogProb]:
        """Log-prob of each continuation given its messages. A prompt with several continuations
        (a question's options, a probe's Yes and No, a pair's two replies) is run once and its
        keys and values reused for every continuation; the rest go in length-sorted batches."""
        seqs = self.encode(requests)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, (prompt, _) in enumerate(seqs):
            groups.setdefault(tuple(prompt), []).append(i)
        shared = {i for idxs in groups.values() if len(idxs) > 1 for i in idxs}
        results = dict(zip(sorted(shared), self._score_shared(seqs, [g for g in groups.values() if len(g) > 1])))
        alone = [i for i in range(len(seqs)) if i not in shared]
        results.update(zip(alone, self._score_ids([seqs[i] for i in alone])))
        return [results[i] for i in range(len(seqs))]

    def _score_shared(self, seqs: Sequence[tuple[list[int], list[int]]], groups: list[list[int]]) -> list[LogProb]:
        """Log-probs of the continuations in `groups` (indices sharing one prompt), in the order of
        the sorted indices: per group, the prompt's forward pass once (its cache), then every
        continuation in one right-padded batch on top of it."""
        import torch

        model, tok = self._load()
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        results: dict[int, LogProb] = {}
        for idxs in groups:
            prompt = seqs[idxs[0]][0]
            conts = [seqs[i][1] for i in idxs]
            width = max(len(c) for c in conts)
            with FORWARD.slot(), torch.no_grad():
                # Only the last position's logits: the vocabulary projection of every prompt
                # position is a fifth of a 135M model's arithmetic, and only the last one is used.
                out = model(input_ids=torch.tensor([prompt], device=model.device), use_cache=True, logits_to_keep=1)
                first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)  # predicts each continuation's first token
                if width > 1:
                    cache = out.past_key_values
                    cache.batch_repeat_interleave(len(conts))
                    ids = torch.full((len(conts), width), pad, dtype=torch.long)
                    mask = torch.zeros((len(conts), len(prompt) + width), dtype=torch.long)
                    mask[:, :len(prompt)] = 1
                    for j, c in enumerate(conts):
                        ids[j, :len(c)] = torch.tensor(c, dtype=torch.long)
                        mask[j, len(prompt):len(prompt) + len(c)] = 1
                    rest = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device),
                                 past_key_values=cache, use_cache=True).logits.float()
            for j, i in enumerate(idxs):
                c = conts[j]
                if not c:
                    results[i] = LogProb(0.0, 0)
                    continue
                total = float(first[c[0]])
                if len(c) > 1:  # token t (t >= 1) is predicted at continuation position t-1
                    lps = torch.log_softmax(rest[j, :len(c) - 1], dim=-1)
                    total += float(lps.gather(1, torch.tensor(c[1:], device=lps.device)[:, None]).sum())
                results[i] = LogProb(total, len(c))
        return [results[i] for i in sorted(results)]

    def encode(self, requests: Sequence[tuple[MessagesLike, str]]) -> list[tuple[list[int], list[int]]]:
        """(prompt ids, continuation ids) per request: the rendered messages and the continuation,
        tokenised separately; the prompt is cut from the left when the pair is too long."""
        _, tok = self._load()
        seqs = []
        for messages, continuation in requests:
            prompt_ids = tok(self.render(messages), add_special_tokens=False)["input_ids"]
            cont_ids = tok(continuation, add_special_tokens=False)["input_ids"]
            keep = max(1, self.max_length - len(cont_ids))  # keep the whole continuation
            seqs.append((prompt_ids[-keep:], cont_ids))
        return seqs

    def text_nll(self, text: str, window: int = 256, max_tokens: int | None = None) -> list[tuple[float, int]]:
        """(negative log-likelihood sum, tokens scored) per window of the first `max_tokens` tokens
        of `text` (all: None); the first token of each window is context only. Perplexity =
        exp(sum nll / sum tokens)."""
        _, tok = self._load()
        ids = tok(text, add_special_tokens=False)["input_ids"][:max_tokens]
        chunks = [ids[i:i + window] for i in range(0, len(ids), window)]
        seqs = [(c[:1], c[1:]) for c in chunks if len(c) >= 2]
        return [(-lp.sum, lp.n_tokens) for lp in self._score_ids(seqs)]

    def _score_ids(self, seqs: Sequence[tuple[list[int], list[int]]]) -> list[LogProb]:
        import torch

        results: dict[int, LogProb] = {}
        for idxs, input_ids, out in self.forward_batches(seqs):
            logits = out.logits.float()
            for j, i in enumerate(idxs):
                p_len, c_len = len(seqs[i][0]), len(seqs[i][1])
                if c_len == 0:
                    results[i] = LogProb(0.0, 0)
                    continue
                # Token t is predicted by the logits at position t-1.
                pred = logits[j, p_len - 1:p_len + c_len - 1]
                target = input_ids[j, p_len:p_len + c_len].to(pred.device)
                lps = torch.log_softmax(pred, dim=-1).gather(1, target[:, None]).squeeze(1)
                results[i] = LogProb(float(lps.sum()), c_len)
            del logits, out
        return [results[i] for i in range(len(seqs))]

    def forward_batches(self, seqs: Sequence[tuple[list[int], list[int]]],
                        **model_kwargs: Any) -> Iterator[tuple[list[int], Any, Any]]:
        """(indices into seqs, input ids, model output) per right-padded batch, without gradients;
        batches are sorted by length so they pad little. Forward hooks on the model see every batch;
        model_kwargs go to the forward call (e.g. logits_to_keep=1 when only activations matter)."""
        import torch

        model, tok = self._load()
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i][0]) + len(seqs[i][1]))
        for start in range(0, len(order), self.batch_size):
            idxs = order[start:start + self.batch_size]
            rows = [seqs[i][0] + seqs[i][1] for i in idxs]
            width = max(len(r) for r in rows)
            input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for j, r in enumerate(rows):
                input_ids[j, :len(r)] = torch.tensor(r, dtype=torch.long)
                mask[j, :len(r)] = 1
            with FORWARD.slot(), torch.no_grad():
                out = model(input_ids=input_ids.to(model.device), attention_mask=mask.to(model.device),
                            **model_kwargs)
            yield idxs, input_ids, out


_SCORERS: dict[str, LogProbScorer] = {}


def scorer_for(checkpoint: str | Path) -> LogProbScorer:
    """One scorer per checkpoint per process (the model itself is shared with the local backend)."""
    key = str(checkpoint)
    if key not in _SCORERS:
        _SCORERS[key] = LogProbScorer(checkpoint)
    return _SCORERS[key]
