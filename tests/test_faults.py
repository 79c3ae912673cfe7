"""Error mapping of the network backends against a fault-injection server on 127.0.0.1.

Transient faults (429, 5xx, hangs, garbage or truncated bodies) are retried until they succeed;
permanent ones (401/403/404/400) fail at once with a BackendError that says what to fix; nothing
from a failed call is ever cached.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Iterator

import pytest
from fault_server import FaultServer

from traitforge.llm.base import Backend
from traitforge.llm.cache import LLMCache
from traitforge.llm.client import LLM
from traitforge.llm.errors import BackendError, MissingAPIKey
from traitforge.llm.limits import Limiter
from traitforge.llm.providers.anthropic import AnthropicBackend
from traitforge.llm.providers.gemini import GeminiBackend
from traitforge.llm.providers.openai_compat import OpenAIBackend
from traitforge.llm.registry import make_llm

PROVIDERS = ["openai", "anthropic", "gemini"]
EXPECTED = {"openai": "hello 0", "anthropic": "hello from anthropic", "gemini": "hello from gemini 0"}
BACKEND_TIMEOUT_S = 0.4


@pytest.fixture(scope="module")
def fault() -> Iterator[FaultServer]:
    with FaultServer(retry_after="0.15", hang_s=1.5) as fs:
        yield fs


@pytest.fixture(autouse=True)
def _no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    # The dummy-key path for a base_url server, and error messages naming the default env vars.
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(var, raising=False)


def backend(provider: str, fs: FaultServer, **kw: Any) -> Backend:
    if provider == "openai":
        return OpenAIBackend("fault-model", base_url=kw.pop("base_url", fs.url + "/v1"),
                             timeout_s=BACKEND_TIMEOUT_S, **kw)
    cls = AnthropicBackend if provider == "anthropic" else GeminiBackend
    return cls("fault-model", base_url=fs.url, timeout_s=BACKEND_TIMEOUT_S, **kw)


def llm_for(provider: str, fs: FaultServer, cache: LLMCache, max_retries: int = 3, **kw: Any) -> LLM:
    return LLM(backend(provider, fs, **kw), cache=cache, max_retries=max_retries, backoff_base_s=0.01,
               timeout_s=10)


async def _one(llm: LLM, prompt: str = "hi") -> str:
    try:
        return await llm.generate_one(prompt, max_tokens=8)
    finally:
        await llm.aclose()


async def _many(llm: LLM, n: int) -> list[str]:
    """n different prompts at once."""
    try:
        return await asyncio.gather(*(llm.generate_one(f"q{i}", max_tokens=8) for i in range(n)))
    finally:
        await llm.aclose()


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("fault_kind", ["429", "500", "503", "hang", "garbage", "truncated"])
def test_transient_faults_are_retried_until_success(fault, tmp_path, provider, fault_kind):
    cache = LLMCache(tmp_path / "c.sqlite")
    llm = llm_for(provider, fault, cache)
    fault.plan(fault_kind, fault_kind)
    text = asyncio.run(_one(llm))
    assert text == EXPECTED[provider]
    assert len(fault.requests) == 3  # two faults, then the success
    assert llm.usage.calls == 1 and llm.usage.input_tokens == 7
    assert len(cache) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
def test_retry_after_header_is_honoured(fault, tmp_path, provider):
    llm = llm_for(provider, fault, LLMCache(tmp_path / "c.sqlite"))
    fault.plan("429", "429")
    start = time.monotonic()
    assert asyncio.run(_one(llm)) == EXPECTED[provider]
    # Retry-After 0.15 s (jittered x0.5..1.5) twice; exponential backoff alone would wait ~0.03 s.
    assert time.monotonic() - start >= 0.15


@pytest.mark.parametrize("provider", PROVIDERS)
def test_gives_up_after_max_retries_and_caches_nothing(fault, tmp_path, provider):
    cache = LLMCache(tmp_path / "c.sqlite")
    llm = llm_for(provider, fault, cache, max_retries=2)
    fault.plan("500", "500", "500", "500")
    with pytest.raises(BackendError, match="gave up after 3 attempts.*500"):
        asyncio.run(_one(llm))
    assert len(fault.requests) == 3
    assert len(cache) == 0 and llm.usage.calls == 0


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("status,needle", [
    ("401", "{env}"), ("403", "{env}"), ("404", "model 'fault-model'"), ("400", "max_tokens too large")])
def test_permanent_errors_fail_at_once_with_a_clear_message(fault, tmp_path, provider, status, needle):
    cache = LLMCache(tmp_path / "c.sqlite")
    llm = llm_for(provider, fault, cache)
    fault.plan(status)
    env = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY", "gemini": "GEMINI_API_KEY"}[provider]
    with pytest.raises(BackendError) as err:
        asyncio.run(_one(llm))
    message = str(err.value)
    assert needle.format(env=env) in message and status in message
    assert "\n" not in message
    assert len(fault.requests) == 1  # not retried
    assert len(cache) == 0


def test_custom_api_key_env_is_named_on_401(fault, tmp_path):
    llm = llm_for("openai", fault, LLMCache(tmp_path / "c.sqlite"), api_key_env="MY_VLLM_KEY")
    fault.plan("401")
    with pytest.raises(BackendError, match=r"\$MY_VLLM_KEY"):
        asyncio.run(_one(llm))


@pytest.mark.parametrize("spec,env", [("openai:gpt-4o-mini", "OPENAI_API_KEY"),
                                      ("anthropic:claude-sonnet-4-5", "ANTHROPIC_API_KEY"),
                                      ("gemini:gemini-2.5-flash", "GEMINI_API_KEY or GOOGLE_API_KEY")])
def test_missing_api_key_is_a_clear_error(spec, env):
    with pytest.raises(MissingAPIKey) as err:
        make_llm(spec)
    assert env in str(err.value)


def test_openai_tops_up_when_the_server_ignores_n(fault, tmp_path):
    cache = LLMCache(tmp_path / "c.sqlite")
    llm = llm_for("openai", fault, cache)
    fault.plan("fewer")  # first reply has 1 choice though 3 were asked for

    async def run() -> list[str]:
        try:
            return await llm.generate("hi", n=3, max_tokens=8, seed=5)
        finally:
            await llm.aclose()

    texts = asyncio.run(run())
    assert len(texts) == 3 and len(cache) == 3
    assert [body.get("n") for _, body in fault.requests] == [3, None, None]
    # Make-up calls get their own seeds, so a fixed seed does not repeat the first sample.
    assert sorted(body["seed"] for _, body in fault.requests) == [5, 6, 7]


def test_requests_carry_system_prompt_and_params(fault, tmp_path):
    msgs = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"}, {"role": "user", "content": "again"}]

    async def run(provider: str) -> dict[str, Any]:
        llm = llm_for(provider, fault, LLMCache(tmp_path / f"{provider}.sqlite"))
        fault.plan()
        try:
            await llm.generate(msgs, n=2, max_tokens=9, stop=["END"], temperature=0.5)
        finally:
            await llm.aclose()
        return fault.requests[0][1]

    oa = asyncio.run(run("openai"))
    assert oa["messages"] == msgs and oa["n"] == 2 and oa["stop"] == ["END"] and oa["max_tokens"] == 9
    an = asyncio.run(run("anthropic"))
    assert an["system"] == "Be terse." and [m["role"] for m in an["messages"]] == ["user", "assistant", "user"]
    assert an["stop_sequences"] == ["END"] and an["max_tokens"] == 9
    ge = asyncio.run(run("gemini"))
    assert ge["systemInstruction"]["parts"][0]["text"] == "Be terse."
    assert [c["role"] for c in ge["contents"]] == ["user", "model", "user"]
    assert ge["generationConfig"]["candidateCount"] == 2 and ge["generationConfig"]["stopSequences"] == ["END"]


# --- rate limits and sick servers -------------------------------------------------------------

RATE_HEADERS = {
    "openai": {"x-ratelimit-limit-requests": "600", "x-ratelimit-remaining-requests": "0",
               "x-ratelimit-reset-requests": "250ms", "x-ratelimit-limit-tokens": "90000",
               "x-ratelimit-remaining-tokens": "1200", "x-ratelimit-reset-tokens": "6m0s"},
    "anthropic": {"anthropic-ratelimit-requests-limit": "600", "anthropic-ratelimit-requests-remaining": "0",
                  "anthropic-ratelimit-requests-reset": "0.25", "anthropic-ratelimit-tokens-limit": "90000",
                  "anthropic-ratelimit-tokens-remaining": "1200"},
}


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
def test_rate_limit_headers_of_a_successful_call_adjust_the_limiter(tmp_path, provider):
    # Gemini sends no such headers itself; its SDK hands over the response headers all the same.
    headers = RATE_HEADERS["anthropic" if provider == "anthropic" else "openai"]
    with FaultServer(rate_headers=headers) as fs:
        llm = llm_for(provider, fs, LLMCache(tmp_path / "c.sqlite"))
        assert llm.limiter.requests is None and llm.limiter.tokens is None  # no rpm/tpm configured

        async def two_calls() -> None:
            try:
                await llm.generate_one("first", max_tokens=8)
                lim = llm.limiter
                assert lim.requests.capacity == 600 and lim.requests.level <= 0.01
                assert lim.tokens.capacity == 90000 and lim.tokens.level <= 1200
                await llm.generate_one("second", max_tokens=8)
            finally:
                await llm.aclose()

        asyncio.run(two_calls())
        (t1, _), (t2, _) = fs.log
    assert t2 - t1 >= 0.2  # remaining 0: nobody calls before the 250 ms reset


def test_a_429_without_retry_after_pauses_every_caller(tmp_path):
    with FaultServer(retry_after=None) as fs:
        fs.plan("429")
        # One request at a time, so every request after the 429 was sent after the client saw it.
        llm = LLM(backend("openai", fs), cache=LLMCache(tmp_path / "c.sqlite"), limiter=Limiter(1),
                  backoff_base_s=0.3, timeout_s=10)
        assert asyncio.run(_many(llm, 4)) == ["hello 0"] * 4
        log = list(fs.log)
    (t429, fault), later = log[0], log[1:]
    assert fault == "429" and len(later) == 4  # three other callers and the retry
    assert all(t - t429 >= 0.28 for t, _ in later), [round(t - t429, 3) for t, _ in later]


# A server that refuses connections is out at once; one that answers 5xx or hangs, after two
# failures in a row. The client's timeout equals the backend's, as make_llm sets them.
@pytest.mark.parametrize("sick", ["refused", "503", "hang"])
def test_openai_sick_server_is_skipped(fault, tmp_path, sick):
    from llama_server import free_port

    with contextlib.ExitStack() as stack:
        bad = None if sick == "refused" else stack.enter_context(FaultServer(default=sick, hang_s=1.0))
        bad_url = f"http://127.0.0.1:{free_port()}/v1" if bad is None else bad.url + "/v1"
        llm = LLM(backend("openai", fault, base_url=[bad_url, fault.url + "/v1"]),
                  cache=LLMCache(tmp_path / "c.sqlite"), limiter=Limiter(4), backoff_base_s=0.01,
                  timeout_s=BACKEND_TIMEOUT_S)
        fault.plan()
        assert asyncio.run(_many(llm, 12)) == ["hello 0"] * 12
        assert len(fault.requests) == 12 and llm.usage.calls == 12
        if bad is not None:
            # Two failures in a row put it out; requests already on their way there add at most two.
            assert 2 <= len(bad.requests) <= 4
        servers = llm.backend.servers  # type: ignore[attr-defined]
        assert servers[0].dead_until > time.monotonic() and servers[1].dead_until == 0


@pytest.mark.parametrize("provider", PROVIDERS)
def test_one_client_across_runs_closes_its_pools_in_their_own_loop(fault, tmp_path, provider, caplog):
    """A stage is one asyncio.run; the pipeline shares an LLM across stages. run_closing closes the SDK
    clients inside the loop that owns them, so no pool is left for the garbage collector to close
    on a dead loop ("Task exception was never retrieved ... Event loop is closed")."""
    import gc

    from traitforge.llm.client import run_closing

    llm = llm_for(provider, fault, LLMCache(tmp_path / "c.sqlite"))

    async def stage(prompt: str) -> str:
        out = await llm.generate_one(prompt, max_tokens=8)
        gc.collect()  # inside a running loop: where an unclosed pool of an earlier loop would fail
        await asyncio.sleep(0.05)
        return out

    with caplog.at_level("ERROR", logger="asyncio"):
        texts = [run_closing(stage(f"stage {i}"), llm) for i in range(3)]  # a new loop each: new clients
    assert all(texts) and llm.usage.calls == 3
    assert not [r for r in caplog.records if "Event loop is closed" in r.getMessage() + str(r.exc_info)]
