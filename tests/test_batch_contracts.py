"""Provider batch paths against the real SDKs (openai, anthropic, google-genai) pointed at the
replay server, which answers with bodies copied from the providers' batch documentation
(tests/fixtures/providers/batch_*.json, each validated here with its SDK type): thinking is billed
and budgeted, refusals and safety blocks are carried and charged, reasoning models get no sampling
parameters, a failed job says why."""

import asyncio
import copy
import json
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from replay_server import FIXTURES, Reply, ReplayServer, fixture  # noqa: E402

from traitforge.config import ModelSpec  # noqa: E402
from traitforge.errors import BudgetExceeded  # noqa: E402
from traitforge.llm import providers  # noqa: E402
from traitforge.llm.base import BLOCKED, OK, REFUSED, GenerateParams  # noqa: E402
from traitforge.llm.batch import BatchRunner  # noqa: E402
from traitforge.llm.batch.base import BatchItem  # noqa: E402
from traitforge.llm.batch.openai import OpenAIBatch  # noqa: E402
from traitforge.llm.budget import Budget  # noqa: E402
from traitforge.llm.errors import BackendError  # noqa: E402
from traitforge.llm.pricing import estimate_cost  # noqa: E402
from traitforge.llm.registry import make_llm  # noqa: E402
from traitforge.runstore import RunStore  # noqa: E402


@pytest.fixture(autouse=True)
def _forget_learned(monkeypatch):
    # What a 400 teaches is process-wide; each test starts from the table alone.
    monkeypatch.setattr(providers, "_LEARNED", {})


def body(name):
    return copy.deepcopy(fixture(name)["body"])


# --- every fixture is what the SDK itself accepts ------------------------------------------------

def _validate(name: str) -> int:
    from anthropic.types.messages import MessageBatch, MessageBatchIndividualResponse
    from google.genai import batches, types
    from openai.types import Batch, ErrorObject, FileObject
    from openai.types.chat import ChatCompletion

    f = fixture(name)
    assert f["sdk_type"] and f["source"]
    b = f["body"]
    if name.startswith("batch_openai_batch"):
        return len([Batch.model_validate(b)])
    if name == "batch_openai_file.json":
        return len([FileObject.model_validate(b)])
    if name == "batch_openai_output.json":
        return len([ChatCompletion.model_validate(x["response"]["body"]) for x in b.values() if x["response"]])
    if name.startswith("batch_openai_output_400_"):
        return len([ErrorObject.model_validate(b["response"]["body"]["error"])])
    if name.startswith("batch_anthropic_batch"):
        return len([MessageBatch.model_validate(b)])
    if name == "batch_anthropic_results.json":
        return len([MessageBatchIndividualResponse.model_validate(x) for x in b.values()])
    if name.startswith("batch_gemini_job"):
        job = types.BatchJob.model_validate(batches._BatchJob_from_mldev(b))
        if "error" in b:  # the operation's google.rpc.Status, as the SDK's JobError names its fields
            types.JobError.model_validate({k: b["error"][k] for k in ("code", "message")})
        return len([job])
    if name == "batch_gemini_inlined_responses.json":
        return len([types.InlinedResponse.model_validate(batches._InlinedResponse_from_mldev(x)) for x in b.values()])
    raise AssertionError(f"{name}: no SDK type to validate it with")


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("batch_*.json")))
def test_batch_fixture_validates_against_its_sdk_type(name):
    assert _validate(name) >= 1


# --- servers replaying the documented bodies -----------------------------------------------------

def _uploaded_lines(cap) -> list[dict]:
    """The JSONL lines of an OpenAI batch input file inside the SDK's multipart upload."""
    raw = cap.body if isinstance(cap.body, bytes) else json.dumps(cap.body).encode()
    out = []
    for line in raw.decode("utf-8", "replace").splitlines():
        if line.startswith('{"custom_id"'):
            out.append(json.loads(line))
    return out


def openai_routes(srv: ReplayServer, outputs: list[list[dict]]) -> None:
    """Batch k's output file: outputs[k]'s documented lines, cycled over the items uploaded for it."""
    def upload(cap):
        k = len(srv.calls(r"^/v1/files$")) - 1
        return Reply(200, dict(body("batch_openai_file.json"), id=f"file-in-{k}"))

    def create(cap):
        k = len([c for c in srv.calls(r"^/v1/batches$") if c.method == "POST"]) - 1
        return Reply(200, dict(body("batch_openai_batch_validating.json"), id=f"batch_{k}",
                               input_file_id=cap.body["input_file_id"]))

    def retrieve(cap):
        k = int(cap.path.rsplit("_", 1)[1])
        return Reply(200, dict(body("batch_openai_batch_completed.json"), id=f"batch_{k}",
                               output_file_id=f"file-out-{k}"))

    def content(cap):
        k = int(re.search(r"file-out-(\d+)", cap.path).group(1))
        uploads = [c for c in srv.calls(r"^/v1/files$") if c.method == "POST"]
        items = _uploaded_lines(uploads[k])
        lines = [dict(copy.deepcopy(outputs[k][i % len(outputs[k])]), custom_id=it["custom_id"])
                 for i, it in enumerate(items)]
        return Reply(200, "".join(json.dumps(x) + "\n" for x in lines))

    srv.route("POST", r"^/v1/files$", upload)
    srv.route("POST", r"^/v1/batches$", create)
    srv.route("GET", r"^/v1/batches/batch_\d+$", retrieve)
    srv.route("GET", r"^/v1/files/file-out-\d+/content$", content)


def anthropic_routes(srv: ReplayServer, results: list[dict]) -> None:
    def create(cap):
        return Reply(200, body("batch_anthropic_batch_in_progress.json"))

    def retrieve(cap):
        b = body("batch_anthropic_batch_ended.json")
        return Reply(200, dict(b, results_url=f"{srv.url}/v1/messages/batches/{b['id']}/results"))

    def results_(cap):
        sent = [c for c in srv.calls(r"^/v1/messages/batches$") if c.method == "POST"][-1].body["requests"]
        lines = [dict(copy.deepcopy(results[i % len(results)]), custom_id=r["custom_id"]) for i, r in enumerate(sent)]
        return Reply(200, "".join(json.dumps(x) + "\n" for x in lines))

    srv.route("POST", r"^/v1/messages/batches$", create)
    srv.route("GET", r"^/v1/messages/batches/[^/]+$", retrieve)
    srv.route("GET", r"^/v1/messages/batches/[^/]+/results$", results_)


def gemini_routes(srv: ReplayServer, responses: list[dict] | None = None,
                  final: str = "batch_gemini_job_succeeded.json") -> None:
    def create(cap):
        return Reply(200, body("batch_gemini_job_pending.json"))

    def get(cap):
        job = body(final)
        if responses is not None:
            sent = [c for c in srv.calls(r":batchGenerateContent$")][-1].body
            reqs = sent["batch"]["inputConfig"]["requests"]["requests"]
            job["metadata"]["output"]["inlinedResponses"]["inlinedResponses"] = [
                dict(copy.deepcopy(responses[i % len(responses)]), metadata=r.get("metadata"))
                for i, r in enumerate(reqs)]
        return Reply(200, job)

    srv.route("POST", r":batchGenerateContent$", create)
    srv.route("GET", r"/batches/123456$", get)


# --- running a batch round -----------------------------------------------------------------------

def llm_for(model, srv, tmp_path, suffix="", **options):
    return make_llm(ModelSpec(model=model, base_url=srv.url + suffix, **options), cache=tmp_path / "cache.sqlite")


def run(llm, store, reqs, **kw):
    async def go():
        try:
            return await BatchRunner(llm, store, "gen", poll_interval_s=0.01, quiet=True, **kw).run(reqs)
        finally:
            await llm.aclose()
    return asyncio.run(go())


def reqs_(n, max_tokens=512):
    return [(f"question {i}", GenerateParams(max_tokens=max_tokens)) for i in range(n)]


def cached(llm, reqs):
    from traitforge.llm.cache import cache_key
    from traitforge.llm.client import as_messages

    ident = llm.backend.cache_identity()
    return [llm.cache.get(cache_key(ident, as_messages(m), llm._params(p, {}), 0)) for m, p in reqs]


# --- 1. Gemini: thinking is billed as output, thought parts are not the answer --------------------

def test_gemini_batch_bills_thinking_tokens_and_drops_thought_parts(tmp_path):
    inl = body("batch_gemini_inlined_responses.json")
    with ReplayServer() as srv:
        gemini_routes(srv, [inl["thinking"]])
        llm = llm_for("gemini:gemini-2.5-pro", srv, tmp_path, thinking_budget=8192)
        store = RunStore(tmp_path / "run")
        reqs = reqs_(2)
        report = run(llm, store, reqs)
    assert report.succeeded == 2
    assert [c["text"] for c in cached(llm, reqs)] == ["The answer is 42."] * 2  # no "**Weighing the options**"
    u = store.manifest["usage"]["gen"]["gemini:gemini-2.5-pro"]
    assert u["output_tokens"] == 2 * (12 + 8000)  # candidates + thoughts, as Google bills them
    assert u["cost_usd"] == pytest.approx(estimate_cost("gemini:gemini-2.5-pro", 16, 16024, batch=True), abs=1e-6)
    assert cached(llm, reqs)[0]["reasoning_tokens"] == 8000


# --- 2. a batch round's estimate reserves the thinking room, and the budget holds ------------------

def test_batch_estimate_includes_the_thinking_room_a_live_call_reserves(tmp_path):
    with ReplayServer() as srv:
        gemini_routes(srv, [body("batch_gemini_inlined_responses.json")["thinking"]])
        llm = llm_for("gemini:gemini-2.5-pro", srv, tmp_path, thinking_budget=8192)
        store = RunStore(tmp_path / "run")
        budget = Budget(100.0, store=store)
        reqs = reqs_(3)
        run(llm, store, reqs, budget=budget)
    entry = store.manifest["batches"]["gen"][0]
    # What the client reserves before the same live call (client.py: (max_tokens + thinking_room) * n),
    # priced at batch rates: 8,704 output tokens per item, not 512.
    room = llm.backend.thinking_room()
    assert room == 8192
    tin = sum(len(m) // 4 for m, _ in reqs)
    live_reserve = budget.cost(llm.name, tin, 3 * (512 + room), batch=True)
    assert entry["estimate_usd"] == pytest.approx(live_reserve)
    assert entry["estimate_usd"] > 10 * budget.cost(llm.name, tin, 3 * 512, batch=True)


def test_the_estimate_printed_before_a_batch_round_counts_the_thinking_room(tmp_path):
    from traitforge.llm.budget import estimate_stage

    llm = make_llm(ModelSpec(model="gemini:gemini-2.5-pro", base_url="http://127.0.0.1:9", thinking_budget=8192),
                   cache=tmp_path / "c.sqlite")
    est = estimate_stage(llm, reqs_(3), stage="gen", batch=True)
    assert est.output_tokens == 3 * (512 + 8192)
    assert est.cost_usd == pytest.approx(estimate_cost(llm.name, est.input_tokens, 3 * 8704, batch=True))


@pytest.mark.parametrize("model,options,room", [
    ("openai:o4-mini", {"reasoning_effort": "high"}, 4096),
    ("anthropic:claude-haiku-4-5", {"thinking_budget": 2048}, 2048),
    ("gemini:gemini-3-flash-preview", {"thinking_level": "high"}, 4096),
])
def test_every_encoder_output_limit_is_the_answer_limit_plus_the_thinking_room(model, options, room, tmp_path):
    from traitforge.llm.batch.runner import batch_provider

    llm = make_llm(ModelSpec(model=model, base_url="http://127.0.0.1:9", **options), cache=tmp_path / "c.sqlite")
    prov = batch_provider(llm)
    enc = prov.encode(BatchItem("k", (), GenerateParams(max_tokens=300)))
    assert llm.backend.thinking_room() == room
    assert prov.output_limit(enc) == 300 + room


def test_a_thinking_batch_cannot_overshoot_budget_max_usd(tmp_path):
    # Every item uses all the room it was given (thoughts fill the budget): the worst case happens.
    worst = body("batch_gemini_inlined_responses.json")["thinking"]
    worst["response"]["usageMetadata"].update(candidatesTokenCount=512, thoughtsTokenCount=8192)
    with ReplayServer() as srv:
        gemini_routes(srv, [worst])
        llm = llm_for("gemini:gemini-2.5-pro", srv, tmp_path, thinking_budget=8192)
        store = RunStore(tmp_path / "run")
        reqs = reqs_(10)
        per_item = estimate_cost(llm.name, len(reqs[0][0]) // 4, 512 + 8192, batch=True)
        budget = Budget(per_item * 3.5, store=store)
        with pytest.raises(BudgetExceeded, match="were not submitted"):
            run(llm, store, reqs, budget=budget)
    sent = [c.body["batch"]["inputConfig"]["requests"]["requests"] for c in srv.calls(":batchGenerateContent$")]
    assert sum(map(len, sent)) == 3
    assert budget.spent_usd <= budget.max_usd


# --- 3. OpenAI: no sampling parameters for reasoning models; the token-limit name by host ---------

def _encode(model, base_url, monkeypatch, **options):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    llm = make_llm(ModelSpec(model=f"openai:{model}", base_url=base_url, **options))
    return OpenAIBatch(llm.backend).encode(BatchItem("k", (), GenerateParams(max_tokens=100, top_p=0.9)))["body"]


def test_openai_batch_sends_reasoning_models_no_sampling_parameters(monkeypatch, tmp_path):
    b = _encode("gpt-5-mini", None, monkeypatch)
    assert "temperature" not in b and "top_p" not in b and b["max_completion_tokens"] == 100
    # A chat model keeps them.
    assert _encode("gpt-4o-mini", None, monkeypatch)["temperature"] == 0.7
    # Through the SDK to a server: the uploaded line has no temperature either.
    with ReplayServer() as srv:
        openai_routes(srv, [[body("batch_openai_output.json")["answer"]]])
        llm = llm_for("openai:o4-mini", srv, tmp_path, suffix="/v1")
        run(llm, RunStore(tmp_path / "run"), reqs_(2))
        (line, _) = _uploaded_lines(srv.calls(r"^/v1/files$")[0])
    assert "temperature" not in line["body"] and line["body"]["max_tokens"] == 512  # a compatible server's name


@pytest.mark.parametrize("url,name", [
    (None, "max_completion_tokens"), ("https://api.openai.com/v1", "max_completion_tokens"),
    ("https://api.openai.com/v1/", "max_completion_tokens"), ("http://localhost:8000/v1", "max_tokens"),
    ("https://my-proxy.example.com/v1", "max_tokens")])
def test_openai_batch_token_limit_name_follows_the_provider_host(url, name, monkeypatch):
    b = _encode("gpt-4o-mini", url, monkeypatch)
    assert name in b and ({"max_tokens", "max_completion_tokens"} - {name}).isdisjoint(b)


def test_a_batch_rejected_for_sampling_is_learned_and_resubmitted_not_run_live(tmp_path):
    rejected = body("batch_openai_output_400_sampling.json")
    with ReplayServer() as srv:
        openai_routes(srv, [[rejected], [body("batch_openai_output.json")["answer"]]])
        llm = llm_for("openai:my-tuned-reasoner", srv, tmp_path, suffix="/v1")  # not in the table
        assert providers.model_caps("openai", "my-tuned-reasoner").sampling
        store = RunStore(tmp_path / "run")
        report = run(llm, store, reqs_(3))
        first, second = (_uploaded_lines(c) for c in srv.calls(r"^/v1/files$"))
        live = srv.calls(r"/chat/completions$")
    assert all("temperature" in x["body"] for x in first)
    assert all("temperature" not in x["body"] for x in second) and len(second) == 3
    assert report.succeeded == 3 and report.retried_live == 0 and not live
    assert not providers.model_caps("openai", "my-tuned-reasoner").sampling  # live calls now know it too
    assert [e["reason"] for e in store.manifest["batches"]["gen"]] == ["new", "relearned"]


def test_a_proxy_batch_rejected_for_max_tokens_is_resubmitted_with_max_completion_tokens(tmp_path):
    rejected = body("batch_openai_output_400_token_limit.json")
    with ReplayServer() as srv:
        openai_routes(srv, [[rejected], [body("batch_openai_output.json")["answer"]]])
        llm = llm_for("openai:gpt-4o-mini", srv, tmp_path, suffix="/v1")  # a server in front of OpenAI
        report = run(llm, RunStore(tmp_path / "run"), reqs_(2))
        first, second = (_uploaded_lines(c) for c in srv.calls(r"^/v1/files$"))
    assert all("max_tokens" in x["body"] for x in first)
    assert all(x["body"].get("max_completion_tokens") == 512 and "max_tokens" not in x["body"] for x in second)
    assert report.succeeded == 2 and report.retried_live == 0


# --- 4. refused / blocked items: carried as their outcome, and charged --------------------------

def test_openai_batch_refusals_and_filtered_replies_are_cached_as_such_and_charged(tmp_path):
    out = body("batch_openai_output.json")
    with ReplayServer() as srv:
        openai_routes(srv, [[out["answer"], out["refusal"], out["content_filter"]]])
        llm = llm_for("openai:gpt-4o-mini", srv, tmp_path, suffix="/v1")
        store = RunStore(tmp_path / "run")
        reqs = reqs_(3)
        report = run(llm, store, reqs)
        live = srv.calls(r"/chat/completions$")
    got = cached(llm, reqs)
    assert [c.get("outcome") for c in got] == [OK, REFUSED, BLOCKED]
    assert got[0]["text"] == "Hello." and got[0]["reasoning_tokens"] == 128
    assert got[2]["finish_reason"] == "content_filter"
    assert got[1]["reason"] == "I'm sorry, but I can't help with that." and got[1]["text"] == ""  # never an answer
    assert report.refused == 2 and not live  # not asked again live: the stage's own policy decides
    u = store.manifest["usage"]["gen"]["openai:gpt-4o-mini"]
    assert u["calls"] == 3 and u["output_tokens"] == 130 + 12 + 40
    assert store.manifest["batches"]["gen"][0]["results"]["refused"] == 2
    assert u["refused"] == 1 and u["blocked"] == 1 and u["reasoning_tokens"] == 128  # counted per step


def test_anthropic_batch_refusal_is_cached_as_refused_and_charged(tmp_path):
    res = body("batch_anthropic_results.json")
    with ReplayServer() as srv:
        anthropic_routes(srv, [res["answer"], res["refusal"]])
        llm = llm_for("anthropic:claude-haiku-4-5", srv, tmp_path)
        store = RunStore(tmp_path / "run")
        reqs = reqs_(2)
        report = run(llm, store, reqs)
        live = srv.calls(r"^/v1/messages$")
    got = cached(llm, reqs)
    assert [c.get("outcome") for c in got] == [OK, REFUSED]
    assert got[1]["finish_reason"] == "refusal" and got[0]["reasoning_tokens"] == 200
    assert got[0]["text"] == "Hello again! It's nice to see you."  # the thinking block is not the answer
    assert report.refused == 1 and not live
    u = store.manifest["usage"]["gen"]["anthropic:claude-haiku-4-5"]
    assert u["calls"] == 2 and u["output_tokens"] == 236 + 5
    assert u["cost_usd"] == pytest.approx(estimate_cost(llm.name, 22, 241, batch=True), abs=1e-6)


def test_anthropic_batch_result_types_map_to_item_kinds(tmp_path):
    from anthropic.types.messages import MessageBatchIndividualResponse

    from traitforge.llm.batch.anthropic import AnthropicBatch

    res = body("batch_anthropic_results.json")
    with ReplayServer() as srv:
        anthropic_routes(srv, list(res.values()))
        llm = llm_for("anthropic:claude-haiku-4-5", srv, tmp_path)
        prov = AnthropicBatch(llm.backend)

        async def go():
            bid = await prov.submit([{"custom_id": f"c{i}", "params": {}} for i in range(5)])
            try:
                return await prov.results(bid, [])
            finally:
                await prov.aclose()
        got = asyncio.run(go())
    assert {k: (v.kind, v.outcome) for k, v in got.items()} == {
        "c0": ("succeeded", OK), "c1": ("succeeded", REFUSED), "c2": ("errored", OK),
        "c3": ("expired", OK), "c4": ("cancelled", OK)}
    assert "invalid_request_error" in got["c2"].error
    assert all(MessageBatchIndividualResponse.model_validate(x) for x in res.values())


def test_gemini_batch_safety_blocks_are_cached_as_blocked_and_charged(tmp_path):
    inl = body("batch_gemini_inlined_responses.json")
    with ReplayServer() as srv:
        gemini_routes(srv, [inl["thinking"], inl["safety"], inl["prompt_blocked"]])
        llm = llm_for("gemini:gemini-2.5-pro", srv, tmp_path)
        store = RunStore(tmp_path / "run")
        reqs = reqs_(3)
        report = run(llm, store, reqs)
        live = srv.calls(r":generateContent$")
    got = cached(llm, reqs)
    assert [c.get("outcome") for c in got] == [OK, BLOCKED, BLOCKED]
    assert [got[1]["finish_reason"], got[2]["finish_reason"]] == ["SAFETY", "PROHIBITED_CONTENT"]
    assert report.refused == 2 and not live
    u = store.manifest["usage"]["gen"]["gemini:gemini-2.5-pro"]
    assert u["calls"] == 3 and u["output_tokens"] == (12 + 8000) + 300 + 0


def test_a_thinking_starved_empty_batch_reply_is_charged_and_asked_again_live(tmp_path):
    inl = body("batch_gemini_inlined_responses.json")
    with ReplayServer() as srv:
        gemini_routes(srv, [inl["starved"]])
        answer = copy.deepcopy(inl["thinking"]["response"])  # the live re-ask's reply (thoughts not included)
        answer["candidates"][0]["content"]["parts"] = answer["candidates"][0]["content"]["parts"][1:]
        srv.route("POST", r":generateContent$", Reply(200, answer))
        llm = llm_for("gemini:gemini-2.5-pro", srv, tmp_path, thinking_budget=8192)
        store = RunStore(tmp_path / "run")
        reqs = reqs_(1)
        report = run(llm, store, reqs)
        live = srv.calls(r":generateContent$")
    # The thought summary is never taken for the answer; the provider billed the thinking, so do we.
    assert cached(llm, reqs)[0]["text"] == "The answer is 42." and len(live) >= 1
    assert report.retried_live == 1
    batch_cost = store.manifest["batches"]["gen"][0]["cost_usd"]
    assert batch_cost == pytest.approx(estimate_cost(llm.name, 8, 8704, batch=True), abs=1e-6) and batch_cost > 0


# --- 5. a failed Gemini job says why ----------------------------------------------------------------

def test_a_failed_gemini_batch_job_reports_the_operations_error(tmp_path):
    with ReplayServer() as srv:
        gemini_routes(srv, final="batch_gemini_job_failed.json")
        llm = llm_for("gemini:gemini-2.5-flash", srv, tmp_path)
        store = RunStore(tmp_path / "run")
        with pytest.raises(BackendError) as e:
            run(llm, store, reqs_(2))
    msg = str(e.value)
    assert "unsupported field 'generationConfig.foo'" in msg and "INVALID_BATCH_INPUT" in msg
    assert "no reason given" not in msg
    assert "Batch input is invalid" in store.manifest["batches"]["gen"][0]["error"]


def test_a_batch_job_error_from_the_sdk_type_is_read_first():
    from google.genai import types

    from traitforge.llm.batch.gemini import job_error

    err = types.JobError(code=8, message="Resource exhausted", details=["quota: batch tokens"])
    assert job_error(err) == "8: Resource exhausted (quota: batch tokens)"
    assert job_error(None) == ""


def test_offline_import_of_a_documented_output_file_keeps_refusals_as_refusals(tmp_path):
    from traitforge.llm.batch.offline import import_results

    out = body("batch_openai_output.json")
    empty = copy.deepcopy(out["answer"])
    empty["response"]["body"]["choices"][0]["message"]["content"] = ""
    lines = [dict(out["answer"], custom_id="a"), dict(out["refusal"], custom_id="r"),
             dict(out["expired"], custom_id="x"), dict(empty, custom_id="e")]
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    llm = make_llm(ModelSpec(model="openai:gpt-4o-mini", base_url="http://127.0.0.1:9/v1"), cache=tmp_path / "c.sqlite")
    assert import_results(llm, path) == {"imported": 2, "errored": 2}
    assert llm.cache.get("a")["outcome"] == OK and llm.cache.get("a")["text"] == "Hello."
    assert llm.cache.get("r")["outcome"] == REFUSED and llm.cache.get("r")["text"] == ""
    assert llm.cache.get("x") is None and llm.cache.get("e") is None  # an empty reply is asked again live
