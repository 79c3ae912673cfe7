"""Budgets (a hard limit per run, checked before every backend call, resumable), the estimate a
stage prints first, adaptive rate limits from response headers, and Gemini batch request shapes."""

import asyncio
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fake_batch_server import FakeBatchServer  # noqa: E402
from scripted_generator import make_spec, make_traits  # noqa: E402

from traitforge.pipeline import Run
from traitforge.config import ModelSpec  # noqa: E402
from traitforge.errors import BudgetExceeded, InputError  # noqa: E402
from traitforge.generate.stage import Generation, Unit  # noqa: E402
from traitforge.jsonl import iter_jsonl_dicts  # noqa: E402
from traitforge.llm.base import GenerateParams, Message  # noqa: E402
from traitforge.llm.budget import Budget, costs_money, estimate_stage  # noqa: E402
from traitforge.llm.cache import LLMCache  # noqa: E402
from traitforge.llm.client import LLM  # noqa: E402
from traitforge.llm.limits import Limiter  # noqa: E402
from traitforge.llm.providers.scripted import ScriptedBackend  # noqa: E402
from traitforge.llm.registry import make_llm  # noqa: E402
from traitforge.runstore import RunStore  # noqa: E402
from traitforge.types import Record  # noqa: E402

PARAMS = GenerateParams(max_tokens=10, temperature=0.0)


class Row(Record):
    id: str
    trait_id: str
    text: str


def budget_spec(tmp_path, prices):
    return make_spec(tmp_path, concurrency=3).model_copy(update={"prices_file": str(prices)})


async def resumable_stage(llm, store, units, spec):
    """A real generation step (Generation.step): it prints its own estimate before the live calls,
    skips units already written and appends rows as they finish."""
    gen = Generation(Run.of(store, spec, make_traits(1)), spec.generation, llm)

    async def work(u):
        return [Row(id=u.key, trait_id=u.trait_id, text=await llm.generate_one(f"item {u.key}", PARAMS))]

    try:
        await gen.step("rows", "rows.jsonl", Row, [Unit(k, "candour") for k in units], work,
                       fingerprint=gen.fingerprint())
    finally:
        await llm.aclose()


def test_stage_stops_at_the_budget_and_resumes_without_losing_rows(tmp_path, capsys):
    prices = tmp_path / "prices.yaml"
    prices.write_text("gpt-4o-mini: {input: 1000000, output: 1000000}\n")  # $1 per token
    spec = budget_spec(tmp_path, prices)
    units = [f"{i:02d}" for i in range(10)]
    with FakeBatchServer() as srv:
        def llm_with(max_usd):
            llm = make_llm(ModelSpec(model="openai:gpt-4o-mini", base_url=srv.url + "/v1"),
                           cache=tmp_path / "cache.sqlite")
            llm.budget = Budget(max_usd, store=RunStore(tmp_path / "run"), prices_file=str(prices))
            return llm

        # Each call: worst case 2 in + 10 out = $12 reserved; the server bills 1 in + 5 out = $6.
        llm = llm_with(40.0)
        with pytest.raises(BudgetExceeded, match="raise budget.max_usd"):
            asyncio.run(resumable_stage(llm, llm.budget.store, units, spec))
        err = capsys.readouterr().err
        assert "estimate rows" in err and "estimate is over" in err
        first_calls = len(srv.live_calls)
        assert 0 < first_calls < 10
        assert llm.budget.spent_usd <= 40.0  # never past the limit
        assert llm.budget.spent_usd == pytest.approx(6.0 * first_calls)
        assert len(llm.cache) == first_calls  # every call paid for is kept
        store = RunStore(tmp_path / "run")
        assert store.manifest["budget"]["spent_usd"] == pytest.approx(6.0 * first_calls)

        llm2 = llm_with(1000.0)  # the budget raised: the same stage resumes
        asyncio.run(resumable_stage(llm2, llm2.budget.store, units, spec))
        rows = list(iter_jsonl_dicts(tmp_path / "run" / "generated" / "rows.jsonl"))
        assert sorted(r["id"] for r in rows) == units  # every row, none twice
        assert len(srv.live_calls) == 10  # nothing paid for was asked again
        assert llm2.budget.spent_usd == pytest.approx(60.0)


def test_live_step_on_the_scripted_backend_prints_its_estimate_and_stops_at_the_budget(tmp_path, capsys):
    prices = tmp_path / "prices.yaml"
    prices.write_text("scripted:test: {input: 1000000, output: 1000000}\n")  # $1 per token
    spec = budget_spec(tmp_path, prices)
    units = [f"{i:02d}" for i in range(10)]
    backend = ScriptedBackend(responses=lambda m, p: "one two three")  # bills 2 in + 3 out = $5 a call

    def llm_with(max_usd):
        llm = LLM(backend, cache=LLMCache(tmp_path / "cache.sqlite"), max_retries=0)
        llm.budget = Budget(max_usd, store=RunStore(tmp_path / "run"), prices_file=str(prices))
        return llm

    # Estimate: 10 units, "item 00" = 2 tokens in, 10 out (max_tokens, nothing measured) = $120.
    llm = llm_with(50.0)
    with pytest.raises(BudgetExceeded):
        asyncio.run(resumable_stage(llm, llm.budget.store, units, spec))
    first = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("estimate rows")]
    assert len(first) == 1  # one line for the step
    assert "10 requests" in first[0] and "~20 in / ~100 out" in first[0] and "~$120.0000" in first[0]
    assert "max_tokens" in first[0] and "estimate is over" in first[0]
    paid = len(backend.calls)
    assert 0 < paid < 10 and llm.budget.spent_usd == pytest.approx(5.0 * paid)
    assert llm.budget.spent_usd <= 50.0  # never past the budget
    rows = list(iter_jsonl_dicts(tmp_path / "run" / "generated" / "rows.jsonl"))
    assert 0 < len(rows) <= paid and len(llm.cache) == paid  # everything paid for is kept

    llm2 = llm_with(1000.0)  # raised: the step resumes, estimating from what it measured so far
    asyncio.run(resumable_stage(llm2, llm2.budget.store, units, spec))
    second = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("estimate rows")]
    left = 10 - paid
    assert f"{left} requests" in second[0] and f"~{3 * left} out" in second[0]
    assert "measured in this step" in second[0]
    assert sorted(r["id"] for r in iter_jsonl_dicts(tmp_path / "run" / "generated" / "rows.jsonl")) == units
    assert len(backend.calls) == 10  # nothing paid for was asked again
    usage = RunStore(tmp_path / "run").manifest["usage"]["rows"]["scripted:test"]
    assert usage["calls"] == 10 and usage["cached"] == paid - len(rows)  # the estimate's probe is not usage

    # No budget and no price (or a local model): no estimate line at all.
    asyncio.run(resumable_stage(LLM(ScriptedBackend(responses=lambda m, p: "x")), RunStore(tmp_path / "free"),
                                units, make_spec(tmp_path / "free")))
    assert "estimate" not in capsys.readouterr().err
    local = LLM(ScriptedBackend())
    local.backend.provider = "local"  # priced like the embedded model: free
    assert not costs_money(local) and costs_money(make_llm(ModelSpec(model="openai:gpt-4o-mini",
                                                                     base_url="http://127.0.0.1:9/v1")))


def test_budget_counts_batches_in_flight_and_needs_a_price(tmp_path):
    store = RunStore(tmp_path / "run")
    store.manifest["batches"] = {"gen": [{"id": "b1", "collected": False, "estimate_usd": 3.0},
                                         {"id": "b0", "collected": True, "estimate_usd": 50.0}]}
    b = Budget(5.0, store=store)
    assert b.committed_usd == pytest.approx(3.0)
    r = b.reserve("openai:gpt-4o-mini", 1000, 1000)  # ~$0.00075
    with pytest.raises(BudgetExceeded, match="in flight"):
        b.reserve("openai:gpt-4o-mini", 0, 4_000_000)  # 4M out at $0.60/M = $2.4 would pass $5
    b.settle(r, 100, 100)
    assert b.spent_usd == pytest.approx((100 * 0.15 + 100 * 0.60) / 1e6) and b.reserved_usd == 0
    assert b.reserve("local:smollm2-135m", 10**9, 10**9).usd == 0.0  # local models are free
    with pytest.raises(InputError, match="no price"):
        b.reserve("openai:some-unpriced-model", 10, 10)
    assert Budget(None).reserve("openai:some-unpriced-model", 10, 10).usd == 0.0  # no budget: no check


def test_estimate_uses_measured_averages_and_skips_cached(tmp_path):
    store = RunStore(tmp_path / "run")
    store.add_usage("earlier", "openai:gpt-4o-mini", input_tokens=400, output_tokens=200, calls=4, cached=0,
                    cost_usd=0.0)
    with FakeBatchServer() as srv:
        llm = make_llm(ModelSpec(model="openai:gpt-4o-mini", base_url=srv.url + "/v1"),
                       cache=tmp_path / "cache.sqlite")
        asyncio.run(llm.generate("x" * 400, PARAMS.replace(max_tokens=100)))  # now cached
        reqs = [("x" * 400, PARAMS.replace(max_tokens=100)), ("y" * 400, PARAMS.replace(max_tokens=100, n=2))]
        est = estimate_stage(llm, reqs, stage="s", store=store)
    assert (est.requests, est.samples, est.cached) == (2, 3, 1)
    assert est.input_tokens == 2 * 101 and est.output_tokens == 2 * 50  # 50 = 200 out / 4 calls measured
    assert "measured" in est.basis and est.cost_usd == pytest.approx((202 * 0.15 + 100 * 0.60) / 1e6)


# --- adaptive rate limits ---------------------------------------------------------------------


def test_openai_headers_set_rates_and_cool_down_until_reset():
    lim = Limiter(4)
    lim.update_from_headers(httpx.Headers({"X-RateLimit-Limit-Requests": "600", "x-ratelimit-remaining-requests": "0",
                                           "x-ratelimit-reset-requests": "300ms", "x-ratelimit-limit-tokens": "90000",
                                           "x-ratelimit-remaining-tokens": "1200", "x-ratelimit-reset-tokens": "6m0s"}))
    assert lim.requests.capacity == 600 and lim.requests.level == 0
    assert lim.tokens.capacity == 90000 and lim.tokens.level <= 1200

    async def wait_for_slot():
        t = time.perf_counter()
        await lim.acquire(10)
        lim.release()
        return time.perf_counter() - t

    assert asyncio.run(wait_for_slot()) >= 0.2  # nobody calls before the reset


def test_anthropic_headers_and_junk_are_handled():
    lim = Limiter(4, rpm=50)
    reset = (datetime.now(timezone.utc) + timedelta(seconds=30)).isoformat().replace("+00:00", "Z")
    lim.update_from_headers({"anthropic-ratelimit-requests-limit": "1000",
                             "anthropic-ratelimit-requests-remaining": "7",
                             "anthropic-ratelimit-requests-reset": reset,
                             "anthropic-ratelimit-input-tokens-limit": "40000",
                             "anthropic-ratelimit-input-tokens-remaining": "0",
                             "anthropic-ratelimit-input-tokens-reset": reset})
    assert lim.requests.capacity == 1000 and lim.requests.level <= 7
    assert lim.tokens.capacity == 40000 and 25 < lim._cooldown_until - time.monotonic() <= 30
    before = (lim.requests.capacity, lim.requests.level)
    for junk in ({"x-ratelimit-limit-requests": "lots", "x-ratelimit-remaining-requests": "nan",
                  "x-ratelimit-reset-requests": "soon"}, None, 42, [("x-ratelimit-limit-requests", "-5")]):
        lim.update_from_headers(junk)  # never raises, changes nothing
    assert (lim.requests.capacity, lim.requests.level) == before


# --- Gemini batch shapes (on the SDK's own types; no Gemini endpoint here) ----------------------


def test_gemini_batch_requests_and_results_use_the_sdk_types():
    from google.genai import types

    from traitforge.llm.batch.base import BatchItem
    from traitforge.llm.batch.gemini import GeminiBatch, parse_inlined
    from traitforge.llm.providers.gemini import GeminiBackend

    g = GeminiBatch(GeminiBackend("gemini-2.5-flash", base_url="http://127.0.0.1:9"))
    item = BatchItem("k1", (Message("system", "Be brief."), Message("user", "hi")),
                     GenerateParams(max_tokens=20, stop=("END",), json_schema={"type": "object"}))
    req = types.InlinedRequest.model_validate(g.encode(item))
    assert req.config.system_instruction == "Be brief." and req.config.max_output_tokens == 20
    assert req.contents[0].parts[0].text == "hi" and req.metadata == {"key": "k1"}
    job = types.BatchJob(state="JOB_STATE_SUCCEEDED", dest=types.BatchJobDestination(inlined_responses=[
        types.InlinedResponse(response=types.GenerateContentResponse(
            candidates=[types.Candidate(content=types.Content(role="model", parts=[types.Part(text="ok")]))],
            usage_metadata=types.GenerateContentResponseUsageMetadata(prompt_token_count=3, candidates_token_count=1))),
        types.InlinedResponse(error=types.JobError(message="quota", code=8))]))
    out = parse_inlined(job, ["k1", "k2"])
    assert out["k1"].kind == "succeeded" and out["k1"].text == "ok" and out["k1"].input_tokens == 3
    assert out["k2"].kind == "errored" and "quota" in out["k2"].error
