"""Trait directions in the residual stream ("persona vectors"), read from local weights only.

Vector: for each trait, the base model reads replies that show the trait and replies that violate
it, to the same prompts (the behavioural eval's contrastive pairs, written by the item writer),
teacher-forced with no system prompt. Per decoder layer, the vector is the mean over pairs of the
difference of the layer's output averaged over the reply tokens. The layer kept is the one whose
direction best separates held-out pairs (every third pair, not used to build it), by Cohen's d of the
projections; random directions at that layer give the baseline. Where a trait has too few pairs
(and in curation's screening, before any exist) the contrast is the system prompt instead: the same
neutral replies read under a prompt stating the trait and one stating its opposite (prompts/
vector_trait.txt, vector_opposite.txt, data/vector_questions.jsonl); on SmolLM2-135M that direction
steered the wrong way, the one from replies the right way (tests/test_vectors.py).

Shift: each checkpoint's own greedy reply to each behavioural eval prompt, read by the checkpoint
and averaged over the reply tokens, projected on each trait's unit direction; compared with base
and the control checkpoint on the same prompts (paired bootstrap).

Steering: the vector added to that layer's output at every position, at a few coefficients (in
units of the vector itself), and the contrastive log-prob margin (trait-consistent minus violating
reply, per-token mean) measured at each; a vector whose steering does not move the margin is
flagged as unreliable.

Everything runs through plain forward hooks on the decoder layers of a transformers model."""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from traitforge.prompts import lines as prompt_lines
from traitforge.shared.stats import bootstrap, paired_difference
from traitforge.types import Trait

VERSION = 2  # 2: vectors from contrastive replies (persona vectors), system-prompt contrast as the fallback
DATA = Path(__file__).with_name("data") / "vector_questions.jsonl"
STEER_COEFS = (-4.0, -2.0, 0.0, 2.0, 4.0)  # multiples of the vector (the mean activation difference)
RANDOM_DIRECTIONS = 32
HELD_OUT_SHARE = 1 / 3
MIN_REPLY_PAIRS = 6  # contrastive pairs per trait to build a vector from replies (4 build, 2 held out)
MAX_RESPONSE_TOKENS = 128  # documents and replies projected for screening are cut to this many tokens


# --- inputs --------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def neutral_questions() -> tuple[tuple[str, str], ...]:
    """(question, fixed reply) pairs, the same for every trait."""
    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
    return tuple((r["question"], r["response"]) for r in rows)


def contrast_prompts(statement: str, model_name: str, opposite: str | None = None) -> list[tuple[str, str]]:
    """(trait system prompt, opposite system prompt) per paraphrase. `opposite`: the statement of
    a contrasting trait to use instead of the rendered negation of `statement`."""
    pos = prompt_lines("vector_trait", statement=statement, model=model_name)
    neg = (prompt_lines("vector_trait", statement=opposite, model=model_name) if opposite
           else prompt_lines("vector_opposite", statement=statement, model=model_name))
    return list(zip(pos, neg))


def inputs_hash() -> str:
    """Identifies the prompts (the active kit's: an override changes it) and the shipped questions
    (part of every vector's fingerprint)."""
    from traitforge import prompts

    h = hashlib.sha256(prompts.current().hash("vector_trait", "vector_opposite").encode())
    h.update(DATA.read_bytes())
    return h.hexdigest()[:16]


# --- hooks ---------------------------------------------------------------------------------------


def decoder_layers(model: Any) -> Any:
    """The model's list of decoder blocks (model.model.layers for Llama/Qwen/Mistral/...; otherwise
    the first ModuleList as long as config.num_hidden_layers)."""
    import torch

    inner = getattr(model, "model", None)
    if inner is not None and isinstance(getattr(inner, "layers", None), torch.nn.ModuleList):
        return inner.layers
    n = getattr(model.config, "num_hidden_layers", None)
    for mod in model.modules():
        if isinstance(mod, torch.nn.ModuleList) and len(mod) == n:
            return mod
    raise ValueError(f"{type(model).__name__}: cannot find its decoder layers for activation hooks")


def _hidden(output: Any) -> Any:
    return output[0] if isinstance(output, tuple) else output


@contextmanager
def capture(model: Any, layers: Sequence[int]) -> Iterator[dict[int, Any]]:
    """Records each listed layer's output (batch, tokens, hidden) of the latest forward pass."""
    blocks = decoder_layers(model)
    seen: dict[int, Any] = {}

    def hook(i: int):  # noqa: ANN202
        def fn(_mod: Any, _inp: Any, output: Any) -> None:
            seen[i] = _hidden(output).detach().float()
        return fn

    handles = [blocks[i].register_forward_hook(hook(i)) for i in layers]
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()


@contextmanager
def steer(model: Any, layer: int, delta: Any) -> Iterator[None]:
    """Adds `delta` (hidden,) to the layer's output at every position while inside the block."""
    import torch

    d = torch.as_tensor(np.asarray(delta), dtype=next(model.parameters()).dtype, device=model.device)

    def fn(_mod: Any, _inp: Any, output: Any) -> Any:
        if isinstance(output, tuple):
            return (output[0] + d,) + tuple(output[1:])
        return output + d

    handle = decoder_layers(model)[layer].register_forward_hook(fn)
    try:
        yield
    finally:
        handle.remove()


def n_layers(scorer: Any) -> int:
    model, _ = scorer._load()
    return len(decoder_layers(model))


def activations(scorer: Any, requests: Sequence[tuple[Any, str]], layers: Sequence[int],
                where: str = "response") -> np.ndarray:
    """(requests, layers, hidden): each layer's output averaged over the continuation tokens
    (where="response"), or at the last prompt token, where the model starts its reply
    (where="last_prompt"; the continuation may then be ""). Requests: (messages, continuation)."""
    return activations_ids(scorer, scorer.encode(requests), layers, where)


def text_ids(scorer: Any, texts: Sequence[str]) -> list[tuple[list[int], list[int]]]:
    """Plain texts (documents) as (first token, the next MAX_RESPONSE_TOKENS) for activations_ids."""
    _, tok = scorer._load()
    out = []
    for t in texts:
        ids = tok(t, add_special_tokens=False)["input_ids"][:MAX_RESPONSE_TOKENS + 1] or [tok.eos_token_id or 0]
        out.append((ids[:1], ids[1:]))
    return out


def activations_ids(scorer: Any, seqs: Sequence[tuple[list[int], list[int]]], layers: Sequence[int],
                    where: str = "response") -> np.ndarray:
    model, _ = scorer._load()
    if where == "response":
        seqs = [(p, c[:MAX_RESPONSE_TOKENS]) for p, c in seqs]
    out = np.zeros((len(seqs), len(layers), _hidden_size(model)), dtype=np.float32)
    with capture(model, layers) as seen:
        for idxs, _ids, _out in scorer.forward_batches(seqs, logits_to_keep=1):
            for j, i in enumerate(idxs):
                p, c = len(seqs[i][0]), len(seqs[i][1])
                for k, layer in enumerate(layers):
                    h = seen[layer][j]
                    vec = h[p:p + c].mean(0) if where == "response" and c else h[p - 1]
                    out[i, k] = vec.cpu().numpy()
            seen.clear()
    return out


def _hidden_size(model: Any) -> int:
    return int(getattr(model.config, "hidden_size", 0) or model.get_input_embeddings().weight.shape[1])


# --- maths (pure numpy; tested on synthetic tensors) -------------------------------------------


def cohens_d(pos: np.ndarray, neg: np.ndarray) -> float:
    """(mean pos - mean neg) / pooled standard deviation; 0 when both groups are constant."""
    sd = float(np.sqrt((np.var(pos, ddof=1) + np.var(neg, ddof=1)) / 2)) if len(pos) > 1 and len(neg) > 1 else 0.0
    gap = float(np.mean(pos) - np.mean(neg))
    return gap / sd if sd > 0 else (0.0 if gap == 0 else float(np.sign(gap)) * float("inf"))


def separation(pos: np.ndarray, neg: np.ndarray, direction: np.ndarray) -> dict[str, float]:
    """How well `direction` separates paired activations pos[i] vs neg[i] (rows): Cohen's d of the
    projections on the unit direction, the share of pairs ordered right, and the mean gap."""
    u = direction / (np.linalg.norm(direction) or 1.0)
    a, b = pos @ u, neg @ u
    return {"d": cohens_d(a, b), "accuracy": float(np.mean(a > b)), "gap": float(np.mean(a - b))}


def random_separation(pos: np.ndarray, neg: np.ndarray, k: int, seed: int) -> dict[str, float]:
    """The same on k random directions (any norm gives the same figures: they are scale-free, so
    "the same norm as the vector" is implied): mean |d|, the largest |d|, mean pair accuracy
    folded to >= 0.5 (a random direction has no sign to get right)."""
    rng = np.random.default_rng(seed)
    ds, accs = [], []
    for _ in range(k):
        s = separation(pos, neg, rng.standard_normal(pos.shape[1]))
        ds.append(abs(s["d"]))
        accs.append(max(s["accuracy"], 1 - s["accuracy"]))
    return {"d_mean": float(np.mean(ds)), "d_max": float(np.max(ds)), "accuracy_mean": float(np.mean(accs))}


def split_questions(n: int, held_out_share: float = HELD_OUT_SHARE) -> tuple[list[int], list[int]]:
    """Question indices for building the vector and for the held-out check (every third one)."""
    step = max(2, round(1 / held_out_share))
    held = [i for i in range(n) if i % step == step - 1]
    return [i for i in range(n) if i not in held], held


def choose_layer(pos: np.ndarray, neg: np.ndarray, train: Sequence[int], held: Sequence[int]
                 ) -> tuple[np.ndarray, list[dict[str, float]], int]:
    """pos/neg: (pairs, layers, hidden). Mean differences over the `train` pairs (layers, hidden),
    held-out separation per layer, and the layer whose direction separates held-out pairs best."""
    vecs = (pos[list(train)] - neg[list(train)]).mean(0)
    seps = [separation(pos[list(held), k], neg[list(held), k], vecs[k]) for k in range(vecs.shape[0])]
    finite = [s["d"] if np.isfinite(s["d"]) else 1e9 for s in seps]
    return vecs, seps, int(np.argmax(finite))


# --- vectors -------------------------------------------------------------------------------------


@dataclass
class TraitVector:
    trait_id: str
    layer: int
    vector: np.ndarray  # (hidden,): mean activation difference at `layer` (trait minus opposite)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def unit(self) -> np.ndarray:
        return self.vector / (np.linalg.norm(self.vector) or 1.0)


def build_vector(scorer: Any, trait: Trait, model_name: str, *, questions: int = 16, paraphrases: int = 6,
                 seed: int = 0, opposite: str | None = None) -> TraitVector:
    """A trait's vector from the system-prompt contrast (the model reads the same neutral replies
    told it has the trait, or its opposite): for when no replies that show and violate the trait
    exist yet (curation's screening, before the evaluation writes its contrastive pairs)."""
    qs = list(neutral_questions())[:questions]
    prompts = contrast_prompts(trait.statement, model_name, opposite)[:paraphrases]
    if len(qs) < 3 or not prompts:
        raise ValueError("trait vectors need at least 3 neutral questions and 1 prompt paraphrase")
    layers = list(range(n_layers(scorer)))
    pairs = [(p, q) for p in range(len(prompts)) for q in range(len(qs))]

    def reqs(side: int) -> list[tuple[Any, str]]:
        return [([{"role": "system", "content": prompts[p][side]}, {"role": "user", "content": qs[q][0]}], qs[q][1])
                for p, q in pairs]

    acts = activations(scorer, reqs(0) + reqs(1), layers)
    train_q, held_q = split_questions(len(qs))
    train = [i for i, (_, q) in enumerate(pairs) if q in train_q]
    held = [i for i, (_, q) in enumerate(pairs) if q in held_q]
    return _from_activations(trait, acts[:len(pairs)], acts[len(pairs):], train, held, seed, {
        "source": "system_prompt", "opposite": opposite or "", "model_name": model_name, "prompts": prompts,
        "questions": [q for q, _ in qs], "train_questions": train_q, "held_out_questions": held_q})


def build_vector_from_replies(scorer: Any, trait: Trait, pairs: Sequence[tuple[str, str, str]], *,
                              seed: int = 0) -> TraitVector:
    """A trait's vector from replies (persona vectors): per (prompt, reply showing the trait, reply
    violating it), the base model reads each reply to the prompt (teacher-forced, no system prompt),
    and the vector is the mean difference of the layer's output over the reply tokens. What differs
    within a pair is the trait in the text itself, so adding the vector makes trait-showing text
    more likely; a system-prompt contrast over a fixed reply (`build_vector`) measured the wrong sign
    on SmolLM2-135M. Every third pair is held out to choose the layer; `meta["held_out"]` lists them
    for the steering check."""
    if len(pairs) < MIN_REPLY_PAIRS:
        raise ValueError(f"a vector from replies needs {MIN_REPLY_PAIRS} or more contrastive pairs, got {len(pairs)}")
    layers = list(range(n_layers(scorer)))

    def reqs(side: int) -> list[tuple[Any, str]]:
        return [([{"role": "user", "content": p}], good if side == 0 else bad) for p, good, bad in pairs]

    acts = activations(scorer, reqs(0) + reqs(1), layers)
    train, held = split_questions(len(pairs))
    return _from_activations(trait, acts[:len(pairs)], acts[len(pairs):], train, held, seed, {
        "source": "replies", "pairs": len(pairs), "held_out": held, "pairs_hash": hash_pairs(pairs)})


def _from_activations(trait: Trait, pos: np.ndarray, neg: np.ndarray, train: list[int], held: list[int], seed: int,
                      meta: dict[str, Any]) -> TraitVector:
    """The layer whose mean difference over `train` separates the `held` pairs best, with the
    random-direction baseline at that layer."""
    vecs, seps, best = choose_layer(pos, neg, train, held)
    rand = random_separation(pos[held, best], neg[held, best], RANDOM_DIRECTIONS, seed)
    resid = float(np.linalg.norm(np.concatenate([pos[:, best], neg[:, best]]), axis=1).mean())
    meta = {"trait": trait.id, "statement": trait.statement, **meta, "layer": best, "layers": pos.shape[1],
            "pairs_train": len(train), "pairs_held_out": len(held),
            "separation": _round(seps[best]), "random": _round(rand),
            "separation_by_layer": [round(s["d"], 4) if np.isfinite(s["d"]) else None for s in seps],
            "vector_norm": round(float(np.linalg.norm(vecs[best])), 5), "residual_norm": round(resid, 5),
            "version": VERSION}
    return TraitVector(trait.id, best, vecs[best].astype(np.float32), meta)


def _round(d: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 5) if np.isfinite(v) else None for k, v in d.items()}


def save_vector(path: Path, tv: TraitVector, fingerprint: str) -> None:
    import torch
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({"vector": torch.from_numpy(np.ascontiguousarray(tv.vector))}, str(tmp),
              metadata={"trait": tv.trait_id, "layer": str(tv.layer), "fingerprint": fingerprint,
                        "meta": json.dumps(tv.meta)})
    tmp.replace(path)


def load_vector(path: Path) -> tuple[TraitVector, str]:
    """The vector and the fingerprint it was built under."""
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        md = f.metadata() or {}
        vec = f.get_tensor("vector")
    return TraitVector(md["trait"], int(md["layer"]), vec, json.loads(md.get("meta", "{}"))), md.get("fingerprint", "")


# --- steering ------------------------------------------------------------------------------------


def contrastive_margins(scorer: Any, pairs: Sequence[tuple[str, str, str]]) -> np.ndarray:
    """Per (prompt, consistent, violating): mean log-prob of the consistent reply minus the violating one."""
    lps = scorer.score([(p, text) for p, good, bad in pairs for text in (good, bad)])
    return np.array([lps[2 * i].mean - lps[2 * i + 1].mean for i in range(len(pairs))])


def steering_check(scorer: Any, tv: TraitVector, pairs: Sequence[tuple[str, str, str]],
                   coefs: Sequence[float] = STEER_COEFS, *, resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Contrastive margin at each steering coefficient, and whether steering towards the trait
    raises it: the paired change from the most negative to the most positive coefficient, with a
    bootstrap CI over the pairs; a CI that does not lie above zero marks the vector unreliable."""
    if not pairs:
        return {"coefs": list(coefs), "n": 0, "reliable": None, "reason": "no contrastive pairs for this trait"}
    model, _ = scorer._load()
    margins = {}
    for c in coefs:
        if c == 0:
            margins[c] = contrastive_margins(scorer, pairs)
            continue
        with steer(model, tv.layer, c * tv.vector):
            margins[c] = contrastive_margins(scorer, pairs)
    lo, hi = min(coefs), max(coefs)
    eff = paired_difference({str(i): v for i, v in enumerate(margins[hi])},
                            {str(i): v for i, v in enumerate(margins[lo])}, resamples=resamples, seed=seed)
    reliable = eff.ci_low is not None and eff.ci_low > 0
    reason = "" if reliable else (
        f"steering from {lo:g} to {hi:g} times the vector changes the contrastive margin by "
        f"{eff.value:+.3f} (95% CI {_ci(eff)}): not reliably towards the trait")
    return {"coefs": list(coefs), "n": len(pairs),
            "margin": [round(float(margins[c].mean()), 5) for c in coefs],
            "share": [round(float((margins[c] > 0).mean()), 4) for c in coefs],
            "effect": eff.to_dict(), "reliable": reliable, "reason": reason}


def _ci(e: Any) -> str:
    return "n/a" if e.ci_low is None else f"[{e.ci_low:+.3f}, {e.ci_high:+.3f}]"


# --- projections ---------------------------------------------------------------------------------


def project_ids(scorer: Any, vectors: Sequence[TraitVector], seqs: Sequence[tuple[list[int], list[int]]]
                ) -> np.ndarray:
    """(seqs, vectors): projection of the continuation's mean activation (its first
    MAX_RESPONSE_TOKENS tokens) on each unit vector; seqs from scorer.encode or text_ids."""
    layers = sorted({tv.layer for tv in vectors})
    acts = activations_ids(scorer, seqs, layers)
    return np.stack([acts[:, layers.index(tv.layer)] @ tv.unit for tv in vectors], axis=1)


def shift(values: dict[str, float], reference: dict[str, float], *, resamples: int, seed: int) -> dict[str, Any]:
    """Paired mean difference values - reference over the shared prompts, with its bootstrap CI."""
    return paired_difference(values, reference, resamples=resamples, seed=seed).to_dict()


def mean_ci(values: Sequence[float], *, resamples: int, seed: int) -> dict[str, Any]:
    return bootstrap(list(values), resamples=resamples, seed=seed).to_dict()


def correlation(xs: Sequence[float], ys: Sequence[float]) -> dict[str, Any]:
    """Pearson r over the cells both measures have; None with a reason when it cannot be computed."""
    x, y = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    if len(x) < 3:
        return {"r": None, "n": len(x), "reason": "fewer than 3 trait x checkpoint cells"}
    if np.std(x) == 0 or np.std(y) == 0:
        return {"r": None, "n": len(x), "reason": "one measure does not vary across cells"}
    return {"r": round(float(np.corrcoef(x, y)[0, 1]), 4), "n": len(x), "reason": ""}


# --- RUN/vectors/: built once per base, trait and inputs; read by evaluation and curation's screening ---


def vector_fingerprint(weights: str, trait: Trait, model_name: str, questions: int, paraphrases: int,
                       seed: int, pairs_hash: str | None = None) -> str:
    from traitforge.llm.embedded import resolve_model_path
    from traitforge.types import stable_hash

    path = resolve_model_path(weights).resolve()
    files = sorted(path.glob("*.safetensors"))
    ident = {"path": str(path), "weights": [f"{f.stat().st_size}-{int(f.stat().st_mtime)}" for f in files]}
    if pairs_hash is not None:  # from replies: the pairs are the input
        return stable_hash({"v": VERSION, "base": ident, "trait": trait.hash, "seed": seed, "pairs": pairs_hash}, 16)
    return stable_hash({"v": VERSION, "base": ident, "trait": trait.hash,
                        "model_name": model_name, "q": questions, "p": paraphrases, "seed": seed,
                        "inputs": inputs_hash()}, 16)


def ensure_vectors(store: Any, traits: Any, weights: str, model_name: str,
                   replies: dict[str, list[tuple[str, str, str]]] | None = None,
                   folder: tuple[str, ...] = ("vectors",), *, questions: int, paraphrases: int,
                   seed: int) -> dict[str, tuple[TraitVector, str]]:
    """trait id -> (vector, fingerprint): RUN/<folder>/TRAIT.safetensors when it was built from the
    same base, trait and inputs, else built from `weights` (a local checkpoint) and saved. From the
    trait's contrastive replies (`replies`: trait id -> (prompt, showing, violating)) where it has
    MIN_REPLY_PAIRS of them, else from the system-prompt contrast (the reason is in the meta).
    `questions`, `paraphrases`: evaluation.vector_questions and vector_paraphrases."""
    from traitforge.shared.logprob import scorer_for

    out: dict[str, tuple[TraitVector, str]] = {}
    for t in traits.traits:
        pairs = list((replies or {}).get(t.id, []))
        from_replies = len(pairs) >= MIN_REPLY_PAIRS
        fp = vector_fingerprint(weights, t, model_name, questions, paraphrases, seed,
                                hash_pairs(pairs) if from_replies else None)
        path = store.path(*folder, f"{t.id}.safetensors")
        if path.is_file():
            tv, got = load_vector(path)
            if got == fp:
                out[t.id] = (tv, fp)
                continue
        if from_replies:
            tv = build_vector_from_replies(scorer_for(weights), t, pairs, seed=seed)
        else:
            tv = build_vector(scorer_for(weights), t, model_name, questions=questions,
                              paraphrases=paraphrases, seed=seed)
            if replies is not None:
                tv.meta["why_not_replies"] = (f"{len(pairs)} contrastive pairs for this trait (a vector from "
                                              f"replies needs {MIN_REPLY_PAIRS})")
        save_vector(path, tv, fp)
        out[t.id] = (tv, fp)
    return out


def hash_pairs(pairs: Sequence[tuple[str, str, str]]) -> str:
    from traitforge.types import stable_hash

    return stable_hash([list(p) for p in pairs], 12)
