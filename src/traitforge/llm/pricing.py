"""Estimated cost from a price table (USD per million tokens), editable: prices.yaml beside this
file, overridden by the run spec's prices_file. Unknown models cost None (shown as unknown)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml

DEFAULT_PRICES = Path(__file__).with_name("prices.yaml")


@lru_cache(maxsize=8)
def load_prices(extra: str | None = None) -> dict[str, dict[str, float]]:
    table = yaml.safe_load(DEFAULT_PRICES.read_text(encoding="utf-8")) or {}
    if extra:
        table.update(yaml.safe_load(Path(extra).read_text(encoding="utf-8")) or {})
    return table


def estimate_cost(model_name: str, input_tokens: int, output_tokens: int,
                  prices_file: str | None = None, batch: bool = False) -> float | None:
    """model_name is "provider:model". Local models are free; batch APIs are half price."""
    provider, _, model = model_name.partition(":")
    if provider == "local":
        return 0.0
    table = load_prices(prices_file)
    price = table.get(model_name) or table.get(model)
    if price is None:
        return None
    cost = (input_tokens * price["input"] + output_tokens * price["output"]) / 1e6
    return cost * (0.5 if batch else 1.0)
