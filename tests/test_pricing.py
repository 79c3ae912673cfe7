"""The price table: every entry names the page its figures come from and a date; the pricing code
applies a long-context tier by prompt size and the entry's batch fraction; names match exactly (a
dated snapshot falls back to its alias, nothing else does)."""

from __future__ import annotations

import re

import pytest
import yaml

from traitforge.errors import InputError
from traitforge.llm.pricing import DEFAULT_PRICES, estimate_cost, load_prices, price_of

DATE = re.compile(r"^\d{4}-\d{2}(-\d{2})?$")


def test_every_entry_names_its_source_and_date():
    table = yaml.safe_load(DEFAULT_PRICES.read_text(encoding="utf-8"))
    assert len(table) >= 20
    for name, entry in table.items():
        assert str(entry.get("source", "")).startswith("https://"), name
        assert DATE.match(str(entry.get("date", ""))), (name, entry.get("date"))
        if "via" in entry:
            assert str(entry["via"]).startswith("https://"), name
        assert 0 < entry["input"] <= entry["output"], name
        assert 0 < entry.get("batch", 0.5) <= 1, name
        lc = entry.get("long_context")
        if lc:  # a long prompt never costs less per token
            assert lc["above"] > 0 and lc["input"] >= entry["input"] and lc["output"] >= entry["output"], name


@pytest.mark.parametrize("model", ["gemini:gemini-3.1-pro-preview", "gemini:gemini-3-flash-preview",
                                   "openai:gpt-5", "openai:gpt-5-mini", "openai:gpt-5-nano", "openai:o3",
                                   "openai:o4-mini", "anthropic:claude-opus-4-5", "anthropic:claude-sonnet-4-5",
                                   "anthropic:claude-haiku-4-5"])
def test_the_models_people_use_now_have_a_price(model):
    assert estimate_cost(model, 1000, 1000) > 0


def test_names_match_exactly_and_a_dated_snapshot_costs_its_alias():
    assert price_of("openai:gpt-5-mini")["input"] != price_of("openai:gpt-5")["input"]
    assert price_of("openai:gpt-5-mini-2025-08-07") is price_of("openai:gpt-5-mini")
    assert price_of("openai:gpt-5-2025-08-07") is price_of("openai:gpt-5")
    assert price_of("anthropic:claude-opus-4-5-20251101") is price_of("anthropic:claude-opus-4-5")
    assert price_of("gemini:models/gemini-3.1-pro-preview") is price_of("gemini:gemini-3.1-pro-preview")
    assert price_of("openai:gpt-5-turbo") is None  # no prefix matching
    assert estimate_cost("openai:gpt-5-turbo", 10, 10) is None
    assert estimate_cost("local:anything", 10, 10) == 0.0


def test_long_context_tier_follows_the_mean_prompt_and_batch_takes_its_fraction(tmp_path):
    prices = tmp_path / "p.yaml"
    prices.write_text("m: {input: 2, output: 10, long_context: {above: 1000, input: 4, output: 15}, batch: 0.4}\n"
                      "plain: {input: 1, output: 1}\n")
    f = str(prices)
    # One call with a 1,500-token prompt: the whole request at the long-context rates.
    assert estimate_cost("x:m", 1500, 100, f, calls=1) == pytest.approx((1500 * 4 + 100 * 15) / 1e6)
    # Two calls of 750 tokens each: both under the threshold.
    assert estimate_cost("x:m", 1500, 100, f, calls=2) == pytest.approx((1500 * 2 + 100 * 10) / 1e6)
    # A total whose split is unknown: the base tier (the old behaviour).
    assert estimate_cost("x:m", 1500, 100, f) == pytest.approx((1500 * 2 + 100 * 10) / 1e6)
    # Exactly at the threshold is not above it.
    assert estimate_cost("x:m", 1000, 0, f, calls=1) == pytest.approx(1000 * 2 / 1e6)
    # Batch: the entry's fraction, applied after the tier; 0.5 where an entry states none.
    assert estimate_cost("x:m", 1500, 100, f, batch=True, calls=1) == pytest.approx(0.4 * (1500 * 4 + 100 * 15) / 1e6)
    assert estimate_cost("x:plain", 1000, 1000, f, batch=True) == pytest.approx(0.5 * 2000 / 1e6)


def test_the_shipped_tiers_gemini_pro_above_200k_tokens():
    short = estimate_cost("gemini:gemini-3.1-pro-preview", 200_000, 1000, calls=1)
    long = estimate_cost("gemini:gemini-3.1-pro-preview", 200_001, 1000, calls=1)
    assert short == pytest.approx((200_000 * 2 + 1000 * 12) / 1e6)
    assert long == pytest.approx((200_001 * 4 + 1000 * 18) / 1e6)
    assert estimate_cost("gemini:gemini-3.1-pro-preview", 200_001, 1000, batch=True, calls=1) == pytest.approx(long / 2)


def test_a_bad_price_file_names_the_file_and_the_entry(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("m: {input: two, output: 10}\n")
    with pytest.raises(InputError, match=r"bad\.yaml: 'm' needs numeric input and output"):
        load_prices(str(bad))
    bad.write_text("m: {input: 1, output: 2, long_context: {above: 10}}\n")
    load_prices.cache_clear()
    with pytest.raises(InputError, match="long_context needs numeric above, input and output"):
        load_prices(str(bad))


def test_budget_reserves_one_call_at_its_tier(tmp_path):
    from traitforge.llm.budget import Budget

    prices = tmp_path / "p.yaml"
    prices.write_text("m: {input: 2, output: 10, long_context: {above: 1000, input: 4, output: 15}}\n")
    b = Budget(100.0, prices_file=str(prices))
    held = b.reserve("x:m", 1500, 100)
    assert held.usd == pytest.approx((1500 * 4 + 100 * 15) / 1e6)
    assert b.settle(held, 500, 100) == pytest.approx((500 * 2 + 100 * 10) / 1e6)
