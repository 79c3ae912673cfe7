"""Contract tests of the live provider backends: the real SDK clients (openai, anthropic,
google-genai, the installed versions) against tests/replay_server.py replaying response bodies
copied from the providers' documentation or built from the SDKs' own types. Every fixture is
validated against the SDK type it names, so a fixture cannot drift from what the SDK parses.

Tested with openai 3.63, anthropic 2.17, google-genai 3.6 (pyproject's floors)."""

from __future__ import annotations

import asyncio
import copy
import importlib
import json
from typing import Any

import pytest
from pydantic import BaseModel

from replay_server import FIXTURES, Reply, ReplayServer, fixture
from traitforge.llm.base import BLOCKED, OK, REFUSED, TRUNCATED_OUTCOME, Completion, GenerateParams, Message
from traitforge.llm.errors import BackendError, RetryableError
from traitforge.llm.providers import _LEARNED, model_caps
from traitforge.llm.providers.anthropic import AnthropicBackend
from traitforge.llm.providers.gemini import GeminiBackend
from traitforge.llm.providers.openai_compat import OpenAIBackend, _Server
from traitforge.llm.registry import make_llm
from traitforge.llm.spec import ModelSpec

MSGS = [Message("user", "Is the claim supported?")]
CHAT = r"/v1/chat/completions$"
MESSAGES = r"/v1/messages$"
GENERATE = r":generateContent$"


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch):
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    learned = dict(_LEARNED)
    yield
    _LEARNED.clear()
    _LEARNED.update(learned)  # what a test's 400 taught stays in that test


def run(backend: Any, params: GenerateParams | None = None) -> Completion:
    async def go() -> Completion:
        try:
            return await backend.generate(MSGS, params or GenerateParams(max_tokens=64))
        finally:
            await backend.aclose()
    return asyncio.run(go())


def openai(server: ReplayServer, model: str = "gpt-4o", **kw: Any) -> OpenAIBackend:
    return OpenAIBackend(model, base_url=server.url + "/v1", timeout_s=5, **kw)


def anthropic(server: ReplayServer, model: str = "claude-sonnet-4-5", **kw: Any) -> AnthropicBackend:
    return AnthropicBackend(model, base_url=server.url, timeout_s=5, **kw)


def gemini(server: ReplayServer, model: str = "gemini-2.5-flash", **kw: Any) -> GeminiBackend:
    return GeminiBackend(model, base_url=server.url, timeout_s=5, **kw)


# --- the fixtures themselves ------------------------------------------------------------------
OWN_FIXTURES = sorted(p.name for p in FIXTURES.glob("*.json") if p.name.split("_")[0] in ("openai", "anthropic",
                                                                                         "gemini"))


def _no_extras(model: Any, where: str = "body") -> None:
    """Every field of the fixture is one the SDK type declares (openai/anthropic models keep
    unknown fields as extras instead of failing)."""
    if isinstance(model, BaseModel):
        assert not model.model_extra, f"{where}: fields the SDK type does not declare: {model.model_extra}"
        for name in type(model).model_fields:
            _no_extras(getattr(model, name), f"{where}.{name}")
    elif isinstance(model, (list, tuple)):
        for i, x in enumerate(model):
            _no_extras(x, f"{where}[{i}]")


@pytest.mark.parametrize("name", OWN_FIXTURES)
def test_every_fixture_validates_against_its_sdk_type(name):
    f = fixture(name)
    assert f["source"] and f["sdk_type"]
    module, _, cls_name = f["sdk_type"].rpartition(".")
    cls = getattr(importlib.import_module(module), cls_name)
    body = f["body"][f["validate"]] if f.get("validate") else f["body"]
    if f["sdk_type"] == "google.genai.errors.APIError":  # not a pydantic type: the SDK's own parse
        err = cls(f["status"], body)
        assert (err.code, err.status, err.message) == (f["status"], body["error"]["status"], body["error"]["message"])
        return
    _no_extras(cls.model_validate(body))


def test_the_suite_has_a_fixture_per_finding():
    assert len(OWN_FIXTURES) >= 17


# --- OpenAI -----------------------------------------------------------------------------------
def test_openai_refusal_is_refused_with_its_text_not_an_empty_answer():
    with ReplayServer() as server:
        server.route("POST", CHAT, Reply.of("openai_chat_refusal.json"))
        comp = run(openai(server))
    assert comp.texts == [""] and comp.outcome(0) == REFUSED
    assert comp.reason(0) == "I'm sorry, I cannot assist with that request."


def test_openai_content_filter_is_blocked():
    with ReplayServer() as server:
        server.route("POST", CHAT, Reply.of("openai_chat_content_filter.json"))
        comp = run(openai(server))
    assert comp.texts == [""] and comp.outcome(0) == BLOCKED and comp.reason(0) == "content_filter"


def test_openai_answer_and_length_outcomes():
    body = fixture("openai_chat_completion.json")["body"]
    cut = copy.deepcopy(body)
    cut["choices"][0]["finish_reason"] = "length"
    with ReplayServer() as server:
        server.route("POST", CHAT, [Reply(body=body), Reply(body=cut)])
        ok, truncated = run(openai(server)), run(openai(server))
    assert ok.outcome(0) == OK and ok.texts[0].startswith("The image shows")
    assert truncated.outcome(0) == TRUNCATED_OUTCOME and truncated.texts == ok.texts


def test_openai_reasoning_model_gets_no_sampling_parameters_and_its_reasoning_tokens_are_read():
    with ReplayServer() as server:
        server.route("POST", CHAT, Reply.of("openai_chat_reasoning.json"))
        comp = run(openai(server, "o4-mini"), GenerateParams(max_tokens=64, temperature=0.3, top_p=0.9))
        body = server.calls(CHAT)[0].body
    assert "temperature" not in body and "top_p" not in body and len(server.calls(CHAT)) == 1
    assert comp.usage.reasoning_tokens == 1024 and comp.usage.output_tokens == 1186 and not comp.usage.estimated


def test_openai_n_is_separate_calls_for_a_model_that_rejects_n():
    with ReplayServer() as server:
        server.route("POST", CHAT, Reply.of("openai_chat_reasoning.json"))
        comp = run(openai(server, "gpt-5-mini"), GenerateParams(max_tokens=64, n=3, seed=7))
        bodies = [c.body for c in server.calls(CHAT)]
    assert len(comp.texts) == 3 and len(bodies) == 3
    assert all("n" not in b for b in bodies)
    assert sorted(b["seed"] for b in bodies) == [7, 8, 9]  # each call its own seed


def test_openai_400_naming_n_is_learned_and_the_samples_made_up():
    reply = fixture("openai_chat_completion.json")["body"]
    with ReplayServer() as server:
        server.route("POST", CHAT, lambda cap: Reply.of("openai_error_n.json") if "n" in cap.body
                     else Reply(body=reply))
        comp = run(openai(server, "new-model"), GenerateParams(max_tokens=64, n=2))
        bodies = [c.body for c in server.calls(CHAT)]
    assert len(comp.texts) == 2 and all(comp.outcome(i) == OK for i in range(2))
    assert bodies[0]["n"] == 2 and all("n" not in b for b in bodies[1:]) and len(bodies) == 3
    assert model_caps("openai", "new-model").takes_n is False  # the batch encoders read it too


def test_openai_400_rejecting_temperature_is_learned_for_the_batch_encoders():
    reply = fixture("openai_chat_completion.json")["body"]
    with ReplayServer() as server:
        server.route("POST", CHAT, lambda cap: Reply.of("openai_error_temperature.json") if "temperature" in cap.body
                     else Reply(body=reply))
        comp = run(openai(server, "some-reasoner"))
        bodies = [c.body for c in server.calls(CHAT)]
    assert comp.outcome(0) == OK and "temperature" in bodies[0] and "temperature" not in bodies[1]
    assert model_caps("openai", "some-reasoner").sampling is False


def test_openai_token_limit_name_follows_the_host(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-own-host-key-000000")
    backend = OpenAIBackend("o4-mini", base_url="https://api.openai.com/v1")
    own = backend._kwargs(MSGS, GenerateParams(max_tokens=64), 1, None, _Server("https://api.openai.com/v1"))
    other = backend._kwargs(MSGS, GenerateParams(max_tokens=64), 1, None, _Server("http://127.0.0.1:8000/v1"))
    default = backend._kwargs(MSGS, GenerateParams(max_tokens=64), 1, None, _Server(None))
    assert own["max_completion_tokens"] == 64 and "max_tokens" not in own
    assert default["max_completion_tokens"] == 64
    assert other["max_tokens"] == 64 and "max_completion_tokens" not in other


# --- Anthropic --------------------------------------------------------------------------------
def test_anthropic_refusal_is_refused_with_its_stop_details():
    with ReplayServer() as server:
        server.route("POST", MESSAGES, Reply.of("anthropic_refusal.json"))
        comp = run(anthropic(server, "claude-opus-4-7"))
    assert comp.texts == [""] and comp.outcome(0) == REFUSED and comp.finish_reasons == ["refusal"]
    assert "cyber" in comp.reason(0) and "declined" in comp.reason(0)


def test_anthropic_context_window_exceeded_is_truncated_with_its_text():
    with ReplayServer() as server:
        server.route("POST", MESSAGES, Reply.of("anthropic_context_window_exceeded.json"))
        comp = run(anthropic(server))
    assert comp.outcome(0) == TRUNCATED_OUTCOME and comp.texts == ["The first part of a long answer"]


def test_anthropic_adaptive_thinking_with_effort_and_thinking_tokens_from_usage():
    with ReplayServer() as server:
        server.route("POST", MESSAGES, Reply.of("anthropic_thinking.json"))
        comp = run(anthropic(server, "claude-opus-4-7", reasoning_effort="medium"))
        body = server.calls(MESSAGES)[0].body
    assert body["thinking"] == {"type": "adaptive"} and body["output_config"] == {"effort": "medium"}
    assert body["max_tokens"] == 64 + 4096 and "temperature" not in body
    assert comp.texts == ["Based on my analysis..."] and comp.outcome(0) == OK
    assert comp.usage.reasoning_tokens == 2190 and comp.usage.output_tokens == 2318 and not comp.usage.estimated


def test_anthropic_thinking_tokens_are_estimated_and_marked_only_where_usage_lacks_them():
    body = copy.deepcopy(fixture("anthropic_thinking.json")["body"])
    del body["usage"]["output_tokens_details"]
    with ReplayServer() as server:
        server.route("POST", MESSAGES, Reply(body=body))
        comp = run(anthropic(server, "claude-sonnet-4-5", thinking_budget=2048))
        sent = server.calls(MESSAGES)[0].body
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2048} and "output_config" not in sent
    assert comp.usage.estimated and comp.usage.reasoning_tokens == -(-len("Let me analyze this step by step...") // 4)


def test_anthropic_budget_thinking_rejected_by_the_model_names_the_option_to_use():
    with ReplayServer() as server:
        server.route("POST", MESSAGES, Reply.of("anthropic_error_thinking_enabled.json"))
        with pytest.raises(BackendError, match=r"\(400\).*reasoning_effort") as err:
            run(anthropic(server, "claude-next", thinking_budget=2048))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("model, option, message", [
    ("anthropic:claude-opus-4-7", {"thinking_budget": 2048}, "does not take budget thinking; set reasoning_effort"),
    ("anthropic:claude-sonnet-4-5", {"reasoning_effort": "high"},
     "does not take adaptive thinking; set thinking_budget"),
    ("anthropic:claude-opus-4-6", {"reasoning_effort": "low", "thinking_budget": 2048}, "not both"),
    ("gemini:gemini-2.5-pro", {"thinking_level": "low"}, "does not take level thinking"),
])
def test_a_thinking_option_the_model_does_not_take_is_an_error_at_load(model, option, message):
    with pytest.raises(ValueError, match=message):
        ModelSpec(model=model, **option)
    ModelSpec(model="anthropic:claude-opus-4-6", reasoning_effort="max")  # 4.6 takes both forms
    ModelSpec(model="anthropic:claude-opus-4-6", thinking_budget=2048)


# --- Gemini -----------------------------------------------------------------------------------
def test_gemini_safety_finish_without_parts_is_blocked_with_its_reason():
    with ReplayServer() as server:
        server.route("POST", GENERATE, Reply.of("gemini_safety_blocked.json"))
        comp = run(gemini(server))
    assert comp.texts == [""] and comp.outcome(0) == BLOCKED and comp.reason(0) == "SAFETY"


@pytest.mark.parametrize("reason", ["RECITATION", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "IMAGE_SAFETY"])
def test_gemini_other_blocking_finish_reasons_are_blocked(reason):
    body = copy.deepcopy(fixture("gemini_safety_blocked.json")["body"])
    body["candidates"][0]["finishReason"] = reason
    with ReplayServer() as server:
        server.route("POST", GENERATE, Reply(body=body))
        comp = run(gemini(server))
    assert comp.outcome(0) == BLOCKED and comp.reason(0) == reason


def test_gemini_blocked_prompt_is_a_blocked_outcome_not_a_retry():
    with ReplayServer() as server:
        server.route("POST", GENERATE, Reply.of("gemini_prompt_blocked.json"))
        comp = run(gemini(server), GenerateParams(max_tokens=64, n=2))
        assert len(server.calls(GENERATE)) == 1
    assert comp.texts == ["", ""] and [comp.outcome(i) for i in range(2)] == [BLOCKED, BLOCKED]
    assert comp.reason(0).startswith("prompt blocked: SAFETY") and comp.usage.input_tokens == 9


def test_gemini_thought_parts_are_not_the_reply_and_thinking_is_billed_as_output():
    with ReplayServer() as server:
        server.route("POST", GENERATE, Reply.of("gemini_thinking.json"))
        comp = run(gemini(server, "gemini-3-flash-preview", thinking_level="low"))
    assert comp.texts == ["Yes"] and comp.outcome(0) == OK
    assert comp.usage.output_tokens == 1 + 731 and comp.usage.reasoning_tokens == 731


def test_gemini_429_retry_delay_in_the_body_is_the_wait():
    with ReplayServer() as server:
        server.route("POST", GENERATE, Reply.of("gemini_error_429.json"))
        with pytest.raises(RetryableError) as err:
            run(gemini(server, "gemini-2.5-pro"))
    assert err.value.status == 429 and err.value.retry_after == 37.0


def test_gemini_3_gets_temperature_1_unless_the_caller_or_spec_sets_one():
    async def ask(llm: Any, **kw: Any) -> None:
        try:
            await llm.generate_one("hi", **kw)
        finally:
            await llm.aclose()

    def sent(model: str, spec_temp: float | None = None, **kw: Any) -> float:
        with ReplayServer() as server:
            server.route("POST", GENERATE, Reply.of("gemini_response.json"))
            llm = make_llm(ModelSpec(model=f"gemini:{model}", base_url=server.url, temperature=spec_temp))
            asyncio.run(ask(llm, **kw))
            return server.calls(GENERATE)[0].body["generationConfig"]["temperature"]

    assert sent("gemini-3-flash-preview") == 1.0
    assert sent("gemini-3-flash-preview", temperature=0.2) == 0.2  # the caller's own
    assert sent("gemini-3-flash-preview", spec_temp=0.5) == 0.5  # the spec's own
    assert sent("gemini-2.5-flash") == 0.7  # no advice: the client's default


def test_fixture_files_are_json_with_a_body():
    for name in OWN_FIXTURES:
        data = json.loads((FIXTURES / name).read_text())
        assert set(data) >= {"source", "sdk_type", "body"}
