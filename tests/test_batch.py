"""Provider batch APIs against a local fake of the OpenAI files+batches, Anthropic Message Batches
and Gemini batch-mode REST APIs, driven through the official SDKs: results land in the cache under the live keys,
a killed process re-attaches instead of resubmitting, errored items are retried, expired batches
are resubmitted once."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fake_batch_server import FakeBatchServer  # noqa: E402

from traitforge.config import ModelSpec  # noqa: E402
from traitforge.errors import BudgetExceeded  # noqa: E402
from traitforge.llm.base import GenerateParams  # noqa: E402
from traitforge.llm.batch import BatchRunner, prefetch_batch  # noqa: E402
from traitforge.llm.budget import Budget  # noqa: E402
from traitforge.llm.pricing import estimate_cost  # noqa: E402
from traitforge.llm.registry import make_llm  # noqa: E402
from traitforge.runstore import RunStore  # noqa: E402

MODELS = {"openai": ("openai:gpt-4o-mini", "/v1"), "anthropic": ("anthropic:claude-haiku-4-5", ""),
          "gemini": ("gemini:gemini-2.5-flash", "")}


@pytest.fixture
def server():
    with FakeBatchServer() as srv:
        yield srv


def llm_for(api, srv, tmp_path):
    model, suffix = MODELS[api]
    return make_llm(ModelSpec(model=model, base_url=srv.url + suffix), cache=tmp_path / "cache.sqlite")


def requests_(n, fail=(), max_tokens=16):
    return [(f"question {i}" + (" FAIL" if i in fail else ""), GenerateParams(max_tokens=max_tokens))
            for i in range(n)]


def run_batch(llm, store, reqs, **kw):
    async def go():
        try:
            return await BatchRunner(llm, store, "gen", poll_interval_s=0.02, quiet=True, **kw).run(reqs)
        finally:
            await llm.aclose()
    return asyncio.run(go())


def live_generate(llm, reqs):
    async def go():
        try:
            return [await llm.generate(m, p) for m, p in reqs]
        finally:
            await llm.aclose()
    return asyncio.run(go())


@pytest.mark.parametrize("api", ["openai", "anthropic", "gemini"])
def test_results_are_cached_under_live_keys_and_errors_retried_live(api, server, tmp_path):
    reqs = requests_(5, fail={3}) + [("sampled twice", GenerateParams(max_tokens=16, n=2))]
    store = RunStore(tmp_path / "run")
    report = run_batch(llm_for(api, server, tmp_path), store, reqs)
    assert [c[2] for c in server.created] == [7]  # one batch, one item per sample
    assert report.succeeded == 6 and report.retried_live == 1 and len(server.live_calls) == 1
    entry = store.manifest["batches"]["gen"][0]
    assert {"id", "provider", "status", "request"} <= entry.keys() and entry["collected"]
    assert entry["id"] == server.created[0][1] and entry["provider"] == api
    # Batch usage is charged at half price in the manifest.
    u = store.manifest["usage"]["gen"][MODELS[api][0]]
    assert u["calls"] == 6
    assert u["cost_usd"] == pytest.approx(estimate_cost(MODELS[api][0], u["input_tokens"], u["output_tokens"],
                                                        batch=True), abs=1e-6)
    # A later live run (a fresh client on the same cache) is served entirely from the cache.
    llm2 = llm_for(api, server, tmp_path)
    texts = live_generate(llm2, reqs)
    assert llm2.usage.calls == 0 and llm2.usage.cached == 7 and len(server.live_calls) == 1
    assert texts[0] == ["reply to: question 0"] and texts[3] == ["reply to: question 3 FAIL"]
    assert len(texts[5]) == 2


@pytest.mark.parametrize("api", ["openai", "anthropic", "gemini"])
def test_expired_batch_is_resubmitted_once(api, server, tmp_path):
    server.expire_next, server.expire_partial = 1, 2
    report = run_batch(llm_for(api, server, tmp_path), RunStore(tmp_path / "run"), requests_(5))
    assert [c[2] for c in server.created] == [5, 3]  # the 3 it never reached, once
    assert report.succeeded == 5 and report.expired == 0 and not server.live_calls


def test_batch_expiring_twice_is_reported_not_resubmitted_again(server, tmp_path):
    server.expire_next, server.expire_partial = 2, 0
    store = RunStore(tmp_path / "run")
    llm = llm_for("openai", server, tmp_path)
    report = run_batch(llm, store, requests_(4))
    assert [c[2] for c in server.created] == [4, 4]
    assert report.expired == 4 and report.succeeded == 0
    entries = store.manifest["batches"]["gen"]
    assert [e["status"] for e in entries] == ["expired", "expired"] and entries[1]["resubmit_of"] == entries[0]["id"]
    assert len(llm.cache) == 0  # nothing faked into the cache: the stage's live calls will do these


def test_many_errors_go_to_a_smaller_batch_then_live(server, tmp_path):
    report = run_batch(llm_for("openai", server, tmp_path), RunStore(tmp_path / "run"),
                       requests_(6, fail={1, 2, 4}), live_retry_max=2)
    assert [c[2] for c in server.created] == [6, 3]  # errored items once more as a batch...
    assert len(server.live_calls) == 3 and report.retried_live == 3  # ...which fails again: live


def test_requests_are_chunked_to_the_batch_size_limit(server, tmp_path):
    llm = llm_for("openai", server, tmp_path)
    report = run_batch(llm, RunStore(tmp_path / "run"), requests_(5), max_requests=2)
    assert [c[2] for c in server.created] == [2, 2, 1] and report.succeeded == 5
    # A second pass finds everything cached and submits nothing.
    again = run_batch(llm_for("openai", server, tmp_path), RunStore(tmp_path / "run"), requests_(5))
    assert again.cached == 5 and again.submitted == 0 and len(server.created) == 3


def test_prefetch_is_a_no_op_for_providers_without_batches(tmp_path):
    llm = make_llm("scripted:x", cache=tmp_path / "c.sqlite")
    assert asyncio.run(prefetch_batch(llm, requests_(2), RunStore(tmp_path / "run"), "gen")) is None


KILLED = textwrap.dedent("""
    import asyncio, sys
    from traitforge.config import ModelSpec
    from traitforge.llm.base import GenerateParams
    from traitforge.llm.batch import BatchRunner
    from traitforge.llm.registry import make_llm
    from traitforge.runstore import RunStore
    model, url, root, cache = sys.argv[1:5]
    llm = make_llm(ModelSpec(model=model, base_url=url), cache=cache)
    reqs = [(f"question {i}", GenerateParams(max_tokens=16)) for i in range(5)]
    # A long poll interval: the process is killed while it waits.
    asyncio.run(BatchRunner(llm, RunStore(root), "gen", poll_interval_s=3600, quiet=True).run(reqs))
""")


@pytest.mark.parametrize("api", ["openai", "anthropic", "gemini"])
def test_a_killed_process_reattaches_to_its_batch_instead_of_resubmitting(api, server, tmp_path):
    root, cache = tmp_path / "run", tmp_path / "cache.sqlite"
    model, suffix = MODELS[api]
    proc = subprocess.Popen([sys.executable, "-c", KILLED, model, server.url + suffix, str(root), str(cache)])
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not server.polls:  # submitted and recorded, now polling
            time.sleep(0.05)
        assert server.polls, "the runner never got to polling"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert len(server.created) == 1
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["batches"]["gen"][0]["id"] == server.created[0][1]  # written before polling
    store = RunStore(root)
    report = run_batch(llm_for(api, server, tmp_path), store, requests_(5))
    assert len(server.created) == 1  # re-attached, not submitted twice
    assert report.reattached == [server.created[0][1]] and report.succeeded == 5 and report.submitted == 0
    llm = llm_for(api, server, tmp_path)
    live_generate(llm, requests_(5))
    assert llm.usage.calls == 0 and not server.live_calls


def test_batch_budget_submits_what_fits_then_resumes(server, tmp_path):
    prices = tmp_path / "prices.yaml"
    prices.write_text("gpt-4o-mini: {input: 1000000, output: 1000000}\n")  # $1 per token: round numbers
    store = RunStore(tmp_path / "run")
    reqs = requests_(6, max_tokens=10)  # worst case per item at batch price: (2 + 10) / 2 = $6
    budget = Budget(20.0, store=store, prices_file=str(prices))
    with pytest.raises(BudgetExceeded, match="raise budget.max_usd"):
        run_batch(llm_for("openai", server, tmp_path), store, reqs, budget=budget)
    assert [c[2] for c in server.created] == [3]
    assert budget.spent_usd <= 20.0 and store.manifest["budget"]["spent_usd"] == pytest.approx(budget.spent_usd)
    bigger = Budget(100.0, store=RunStore(tmp_path / "run"), prices_file=str(prices))
    assert bigger.spent_usd == pytest.approx(budget.spent_usd)  # the ledger survives the restart
    report = run_batch(llm_for("openai", server, tmp_path), RunStore(tmp_path / "run"), reqs, budget=bigger)
    assert [c[2] for c in server.created] == [3, 3] and report.cached == 3 and report.succeeded == 3
