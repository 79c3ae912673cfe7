"""`Ledger`: what the budget and the batch runner need from whoever keeps a job's records, so
that `llm/` knows nothing of runs. traitforge's `RunStore` satisfies it as it is (structurally);
any object with these members does (a test uses a plain in-memory one).

`manifest` is a JSON-like dict that `save()` persists. `llm/` reads and writes only these keys:
  "batches": {stage: [entry, ...]}  provider batches, written the moment one is submitted
  "budget":  {"max_usd", "spent_usd"}  money spent, so a restarted process continues from it
  "usage":   {stage: {model: {"calls", "cached", "input_tokens", "output_tokens", "cost_usd"}}}
             (plus "reasoning_tokens", "refused", "blocked", "truncated" once there are any)
             (written through `add_usage`, read for measured per-call averages and `total_cost`)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Ledger(Protocol):
    @property
    def root(self) -> Path:
        """The folder files such as a batch's request keys live under."""
        ...

    @property
    def manifest(self) -> dict[str, Any]: ...

    def path(self, *parts: str) -> Path:
        """root/parts..., its parent folder created."""
        ...

    def save(self) -> None:
        """Persist `manifest` (atomically: a crash leaves the old one or the new one)."""
        ...

    def add_usage(self, stage: str, model: str, *, input_tokens: int, output_tokens: int,
                  calls: int, cached: int, cost_usd: float | None, reasoning_tokens: int = 0,
                  outcomes: Any = None) -> None:
        """Add to manifest["usage"][stage][model] and save (outcomes: per-sample outcomes or counts
        by outcome; reasoning_tokens: of output_tokens, thinking)."""
        ...

    def total_cost(self) -> float:
        """The sum of manifest["usage"]'s cost_usd over stages and models (a run directory adds
        the paid calls its per-call ledger holds that no usage entry covers yet)."""
        ...
