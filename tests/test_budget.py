"""Budgets (a hard limit per run, checked before every backend call, resumable), the estimate a
stage prints first, adaptive rate limits from response headers, and Gemini batch request shapes."""

import asyncio
import io
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fake_batch_server import FakeBatchServer  # noqa: E402

from traitforge.config import ModelSpec  # noqa: E402
from traitforge.errors import BudgetExceeded, InputError  # noqa: E402
from traitforge.jsonl import append_jsonl, iter_jsonl_dicts  # noqa: E402
from traitforge.llm.base import GenerateParams, Message  # noqa: E402
from traitforge.llm.budget import Budget, announce, estimate_stage  # noqa: E402
from traitforge.llm.limits import Limiter  # noqa: E402
from traitforge.llm.registry import make_llm  # noqa: E402
from traitforge.progress import gather_progress  # noqa: E402
from traitforge.runstore import RunStore  # noqa: E402

PARAMS = GenerateParams(max_tokens=10, temperature=0.0)


async def resumable_stage(llm, store, units, out):
    """A stage as the contracts describe it: skip rows already written, append rows as they finish."""
    path = store.path("generated", "rows.jsonl")
    done = {r["id"] for r in iter_jsonl_dicts(path)}
    todo = [u for u in units if u not in done]
    announce(estimate_stage(llm, [(f"item {u}", PARAMS) for u in todo], stage="rows", store=store,
                            prices_file=llm.budget.prices_file), llm.budget, file=out)
    sem = asyncio.Semaphore(3)

    async def work(u):
        async with sem:
            return await llm.generate_one(f"item {u}", PARAMS)

    def on_result(i, text):
        append_jsonl(path, [{"id": todo[i], "text": text}])

    try:
        await gather_progress([work(u) for u in todo], "rows", on_result=on_result)
    finally:
        store.record_llm_usage("rows", llm, llm.budget.prices_file)
        await llm.aclose()


def test_stage_stops_at_the_budget_and_resumes_without_losing_rows(tmp_path):
    prices = tmp_path / "prices.yaml"
    prices.write_text("gpt-4o-mini: {input: 1000000, output: 1000000}\n")  # $1 per token
    units = [f"{i:02d}" for i in range(10)]
    with FakeBatchServer() as srv:
        def llm_with(max_usd):
            llm = make_llm(ModelSpec(model="openai:gpt-4o-mini", base_url=srv.url + "/v1"),
                           cache=tmp_path / "cache.sqlite")
            llm.budget = Budget(max_usd, store=RunStore(tmp_path / "run"), prices_file=str(prices))
            return llm

        # Each call: worst case 2 in + 10 out = $12 reserved; the server bills 1 in + 5 out = $6.
        llm = llm_with(40.0)
        out = io.StringIO()
        with pytest.raises(BudgetExceeded, match="raise budget.max_usd"):
            asyncio.run(resumable_stage(llm, llm.budget.store, units, out))
        assert "estimate rows" in out.getvalue() and "estimate is over" in out.getvalue()
        first_calls = len(srv.live_calls)
        assert 0 < first_calls < 10
        assert llm.budget.spent_usd <= 40.0  # never past the limit
        assert llm.budget.spent_usd == pytest.approx(6.0 * first_calls)
        assert len(llm.cache) == first_calls  # every call paid for is kept
        store = RunStore(tmp_path / "run")
        assert store.manifest["budget"]["spent_usd"] == pytest.approx(6.0 * first_calls)

        llm2 = llm_with(1000.0)  # the budget raised: the same stage resumes
        asyncio.run(resumable_stage(llm2, llm2.budget.store, units, io.StringIO()))
        rows = list(iter_jsonl_dicts(tmp_path / "run" / "generated" / "rows.jsonl"))
        assert sorted(r["id"] for r in rows) == units  # every row, none twice
        assert len(srv.live_calls) == 10  # nothing paid for was asked again
        assert llm2.budget.spent_usd == pytest.approx(60.0)


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
    assert lim.tokens.capacity == 90000 and lim.tokens.level == 1200

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
    assert lim.requests.capacity == 1000 and lim.requests.level == 7
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
