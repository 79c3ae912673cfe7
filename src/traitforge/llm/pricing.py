"""Estimated cost from a price table (USD per million tokens), editable: prices.yaml beside this
file, overridden by the run spec's prices_file. Unknown models cost None (shown as unknown).

An entry: `input`, `output` (USD per million tokens, thinking billed as output), optionally
`long_context: {above: N, input: .., output: ..}` (the provider's rate for a request whose prompt is
longer than N tokens: the whole request is billed at it), `batch` (the fraction of the price a batch
API charges; 0.5 where unstated), and `source` / `date` (the page the figures were read from)."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from traitforge.errors import InputError

DEFAULT_PRICES = Path(__file__).with_name("prices.yaml")
DEFAULT_BATCH = 0.5  # every provider we know halves the price of its batch API

# A dated snapshot ("gpt-5-mini-2025-08-07", "claude-sonnet-4-5-20250929") costs what its alias
# costs. Only a date is stripped: "gpt-5-mini" never falls back to "gpt-5".
_SNAPSHOT = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8})$")


@lru_cache(maxsize=8)
def load_prices(extra: str | None = None) -> dict[str, dict[str, Any]]:
    table = _read(DEFAULT_PRICES)
    if extra:
        table.update(_read(Path(extra)))
    return table


def _read(path: Path) -> dict[str, dict[str, Any]]:
    table = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(table, dict):
        raise InputError(f"{path}: a price table maps model names to {{input, output}}")
    for name, entry in table.items():
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), (int, float)) for k in ("input", "output")):
            raise InputError(f"{path}: '{name}' needs numeric input and output prices (USD per million tokens)")
        lc = entry.get("long_context")
        if lc is not None and not (isinstance(lc, dict) and all(isinstance(lc.get(k), (int, float))
                                                                 for k in ("above", "input", "output"))):
            raise InputError(f"{path}: '{name}': long_context needs numeric above, input and output")
    return table


def price_of(model_name: str, prices_file: str | None = None) -> dict[str, Any] | None:
    """The table's entry for "provider:model" (or the bare model; a dated snapshot falls back to
    its alias; Gemini's "models/" prefix is ignored), or None."""
    provider, _, model = model_name.partition(":")
    table = load_prices(prices_file)
    model = model.removeprefix("models/")
    for name in (model_name, model):
        if name in table:
            return table[name]
    alias = _SNAPSHOT.sub("", model)
    if alias != model:
        return table.get(f"{provider}:{alias}") or table.get(alias)
    return None


def rates(price: dict[str, Any], prompt_tokens: float | None = None) -> tuple[float, float]:
    """(input, output) USD per million tokens for one request with this many prompt tokens."""
    lc = price.get("long_context")
    if lc is not None and prompt_tokens is not None and prompt_tokens > lc["above"]:
        return float(lc["input"]), float(lc["output"])
    return float(price["input"]), float(price["output"])


def estimate_cost(model_name: str, input_tokens: int, output_tokens: int,
                  prices_file: str | None = None, batch: bool = False, *, calls: int | None = None
                  ) -> float | None:
    """model_name is "provider:model". Local models are free; a batch API charges the entry's
    `batch` fraction. `calls`: how many requests the tokens add up over; their mean prompt picks
    a long-context tier. Without it (a total whose split is unknown) the base tier is used."""
    provider, _, _ = model_name.partition(":")
    if provider == "local":
        return 0.0
    price = price_of(model_name, prices_file)
    if price is None:
        return None
    prompt = input_tokens / calls if calls else None
    rate_in, rate_out = rates(price, prompt)
    cost = (input_tokens * rate_in + output_tokens * rate_out) / 1e6
    return cost * (float(price.get("batch", DEFAULT_BATCH)) if batch else 1.0)
