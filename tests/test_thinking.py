"""Thinking models on each provider's fake (tests/thinking_server.py, the APIs' documented shapes):
chats are produced, probe verdicts, quality grades and pattern labels parse, a reply starved by
thinking is asked again with more room, and one that stays empty is an error with its reason,
never a silent skip or "unscored"."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from scripted_generator import good_responder, make_spec, make_traits
from thinking_server import ThinkingServer

from traitforge.pipeline import Run
from traitforge.config import ModelSpec, load_spec
from traitforge.curate.patterns import Rater
from traitforge.curate.quality import score_rows
from traitforge.shared.pattern_rules import Candidate, JudgeRule
from traitforge.errors import InputError
from traitforge.generate.chats import run_chats
from traitforge.jsonl import iter_jsonl_dicts, read_jsonl
from traitforge.llm.client import run_closing
from traitforge.llm.errors import BackendError
from traitforge.llm.providers import anthropic as anthropic_provider
from traitforge.llm.registry import make_llm
from traitforge.runstore import RunStore
from traitforge.types import Chat

# Each provider's own reasoning control, as a user would write it in the spec.
OPTIONS = {"openai": {"reasoning_effort": "low"}, "gemini": {"thinking_budget": 2048},
           "anthropic": {"thinking_budget": 2048}}


def responder(messages, params):
    last = messages[-1].content
    if "SCORE: <a whole number" in last:
        return "REASON: a helpful answer that shows the trait.\nSCORE: 8"
    if "<verdict>STRICT, BROAD or NO</verdict>" in last:  # the pattern autorater: reason, then verdict
        return "<reason>It opens with the answer, not praise.</reason>\n<verdict>NO</verdict>"
    return good_responder(messages, params)


@pytest.fixture(autouse=True)
def _no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(var, raising=False)


def spec_for(provider: str, server: ThinkingServer, **options: Any) -> ModelSpec:
    url = server.url + "/v1" if provider == "openai" else server.url
    return ModelSpec(model=f"{provider}:thinker", base_url=url, max_retries=0, **options)


@pytest.mark.parametrize("provider", ["openai", "gemini", "anthropic"])
def test_chats_verdicts_and_grades_with_a_thinking_teacher(tmp_path, provider):
    with ThinkingServer(responder, think=300, reject_sampling=provider == "openai") as server:
        llm = make_llm(spec_for(provider, server, **OPTIONS[provider]))
        spec = make_spec(tmp_path)
        store = RunStore(spec.output_path)
        run_chats(Run.of(store, spec, make_traits(), generator=llm), spec.generation)
        gen = store.root / "generated"
        chats = read_jsonl(gen / "chats.jsonl", Chat)
        skipped = [d["reason"] for d in iter_jsonl_dicts(gen / "skipped.jsonl")]
        assert len(chats) == 4 and not skipped
        probes = list(iter_jsonl_dicts(gen / "probes.jsonl"))
        assert probes and all(p["verdict"] == "missing" for p in probes)
        assert all(m.content for c in chats for m in c.messages)

        judge = make_llm(spec_for(provider, server, **OPTIONS[provider]))
        scores = run_closing(score_rows(chats, make_traits(), judge, {}), judge)
        assert [s.status for s in scores] == ["scored"] * 4 and {s.score for s in scores} == {8.0}

        rater = Rater(make_llm(spec_for(provider, server, **OPTIONS[provider])))
        cand = Candidate("judge:x", "a stock opener", "scan", JudgeRule("Does it open with praise?"))
        labels = run_closing(rater.labels(cand, chats), rater.judge)
        assert set(labels.values()) == {0.0} and not rater.unparsed

        bodies = [b for _, b in server.requests]
        if provider == "openai":
            # reasoning_effort goes out without temperature; the limit leaves room for the answer.
            assert all(b["reasoning_effort"] == "low" and "temperature" not in b for b in bodies)
            assert {b["max_tokens"] for b in bodies} >= {spec.generation.verdict_max_tokens + 4096}
        elif provider == "gemini":
            assert all(b["generationConfig"]["thinkingConfig"] in ({"thinkingBudget": 2048}, {"thinking_budget": 2048})
                       for b in bodies)
            assert all(b["generationConfig"]["maxOutputTokens"] > 2048 for b in bodies)
        else:
            assert all(b["thinking"] == {"type": "enabled", "budget_tokens": 2048} for b in bodies)
            assert all(b["max_tokens"] > 2048 and "temperature" not in b for b in bodies)


async def _ask(llm, prompt: str, max_tokens: int) -> str:
    try:
        return await llm.generate_one(prompt, temperature=0.0, max_tokens=max_tokens)
    finally:
        await llm.aclose()


VERDICT = "Which is true of the reply? Reply with one word."


@pytest.mark.parametrize("provider", ["openai", "gemini"])
def test_a_reply_starved_by_thinking_is_asked_again_with_more_room(provider):
    # No reasoning option in the spec: Gemini 2.5+ and OpenAI reasoning models think anyway.
    with ThinkingServer(responder, think=300, reject_sampling=provider == "openai") as server:
        llm = make_llm(spec_for(provider, server))
        assert asyncio.run(_ask(llm, VERDICT, 24)) == "MISSING"
        bodies = [b for _, b in server.requests]
        if provider == "openai":
            assert "temperature" in bodies[0] and "temperature" not in bodies[1]  # 400, then without
            limits = [b["max_tokens"] for b in bodies[1:]]
        else:
            limits = [b["generationConfig"]["maxOutputTokens"] for b in bodies]
        assert limits[0] == 24 and limits[-1] > 300 and len(limits) == 2


def test_anthropic_thinking_blocks_come_first_and_only_the_text_is_the_reply():
    with ThinkingServer(responder, think=50) as server:
        llm = make_llm(spec_for("anthropic", server, thinking_budget=1024))
        comp = asyncio.run(_complete(llm))
        assert comp.texts == ["MISSING"] and comp.usage.reasoning_tokens >= 50
        body = server.requests[0][1]
        assert body["thinking"]["budget_tokens"] < body["max_tokens"] == 24 + 1024


async def _complete(llm):
    try:
        return await llm.backend.generate([anthropic_provider.Message("user", VERDICT)],
                                          anthropic_provider.GenerateParams(max_tokens=24))
    finally:
        await llm.aclose()


@pytest.mark.parametrize("provider, options", [("openai", {"reasoning_effort": "high"}),
                                               ("gemini", {"thinking_level": "high"}), ("gemini", {})])
def test_a_reply_that_stays_empty_is_an_error_with_the_reason(provider, options):
    # (Anthropic's thinking stops at its budget, which max_tokens always exceeds by the answer limit.)
    with ThinkingServer(responder, think=10**6) as server:
        llm = make_llm(spec_for(provider, server, **options))
        with pytest.raises(BackendError, match="spends its output on thinking"):
            asyncio.run(_ask(llm, VERDICT, 24))
        assert len(server.requests) == 4  # the first try and three with more room
        # The quality step records it as an error with that reason, not as "unscored".
        chat = Chat(id="c1", trait_ids=["candour"], messages=[{"role": "user", "content": "hi"},
                                                              {"role": "assistant", "content": "hello"}])
        judge = make_llm(spec_for(provider, server, **options))
        [score] = run_closing(score_rows([chat], make_traits(), judge, {}), judge)
        assert score.status == "error" and "thinking" in score.reason
        # The pattern judge records the failure (curation stats "judge_errors"), not a "no".
        rater = Rater(make_llm(spec_for(provider, server, **options)))
        cand = Candidate("judge:x", "a stock opener", "scan", JudgeRule("Does it open with praise?"))
        labels = run_closing(rater.labels(cand, [chat]), rater.judge)
        assert labels == {"c1": None} and "thinking" in rater.errors["judge:x"]


def test_anthropic_temperature_follows_the_installed_sdk(monkeypatch):
    from anthropic.resources.messages.messages import AsyncMessages
    import inspect

    installed = "temperature" in inspect.signature(AsyncMessages.create).parameters
    assert anthropic_provider.sends_temperature() is installed
    backend = anthropic_provider.AnthropicBackend("m", base_url="http://127.0.0.1:9")
    params = anthropic_provider.GenerateParams(temperature=0.3, max_tokens=50)
    msgs = [anthropic_provider.Message("user", "hi")]
    assert ("temperature" in backend.request(msgs, params)) is installed
    # An SDK that takes temperature (anthropic < 2) gets it, except with extended thinking.
    monkeypatch.setattr(anthropic_provider, "sends_temperature", lambda: True)
    assert backend.request(msgs, params)["temperature"] == 0.3
    thinking = anthropic_provider.AnthropicBackend("m", base_url="http://127.0.0.1:9", thinking_budget=1024)
    assert "temperature" not in thinking.request(msgs, params)


@pytest.mark.parametrize("option, provider, message", [
    # anthropic takes reasoning_effort (adaptive thinking), with Anthropic's effort values only
    ("reasoning_effort: minimal", "anthropic", "reasoning_effort for anthropic models is one of low, medium"),
    ("thinking_level: high", "openai", "thinking_level is for gemini models"),
    ("thinking_budget: 2048", "local", "thinking_budget is for gemini and anthropic models"),
    ("thinking_budget: 100", "anthropic", ">= 1024"),
])
def test_a_reasoning_option_the_provider_does_not_take_is_one_clear_error(tmp_path, option, provider, message):
    path = tmp_path / "spec.yaml"
    path.write_text(f"traits: t.md\nmodels:\n  generator: {{model: {provider}:m, {option}}}\n")
    with pytest.raises(InputError, match=message) as e:
        load_spec(path)
    assert "models.generator" in str(e.value) and "\n" not in str(e.value)


def test_reasoning_options_are_part_of_the_cache_identity():
    with ThinkingServer(responder) as server:
        plain = make_llm(spec_for("gemini", server)).backend.cache_identity()
        thinking = make_llm(spec_for("gemini", server, thinking_level="low")).backend.cache_identity()
    assert plain == {"provider": "gemini", "model": "thinker"}
    assert thinking == {**plain, "thinking_level": "low"}


def test_batch_requests_carry_the_reasoning_options():
    from traitforge.llm.base import GenerateParams, Message
    from traitforge.llm.batch.anthropic import AnthropicBatch
    from traitforge.llm.batch.base import BatchItem
    from traitforge.llm.batch.gemini import GeminiBatch
    from traitforge.llm.batch.openai import OpenAIBatch
    from traitforge.llm.registry import make_backend

    item = BatchItem("k", (Message("user", "hi"),), GenerateParams(temperature=0.2, max_tokens=50, top_p=0.9))
    url = "http://127.0.0.1:9"
    body = OpenAIBatch(make_backend(ModelSpec(model="openai:o3", base_url=url + "/v1",
                                              reasoning_effort="high"))).encode(item)["body"]
    assert body["reasoning_effort"] == "high" and "temperature" not in body and "top_p" not in body
    assert body["max_tokens"] == 50 + 4096
    params = AnthropicBatch(make_backend(ModelSpec(model="anthropic:c", base_url=url,
                                                   thinking_budget=1500))).encode(item)["params"]
    assert params["thinking"] == {"type": "enabled", "budget_tokens": 1500} and params["max_tokens"] == 1550
    cfg = GeminiBatch(make_backend(ModelSpec(model="gemini:g", base_url=url, thinking_level="low"))).encode(item)["config"]
    assert cfg["thinking_config"] == {"thinking_level": "LOW"} and cfg["max_output_tokens"] == 50 + 4096


def test_an_answer_cut_by_its_own_limit_is_not_starved():
    from traitforge.llm.base import Completion, Usage
    from traitforge.llm.client import starved

    # 2,000 thinking tokens, then a 3,000-token document cut at its limit: what was asked for.
    long = Completion(["A long document ..."], Usage(10, 5000, 2000), ["MAX_TOKENS"])
    assert starved(long, 3000) is None
    # Thinking left the answer 200 of its 3,000 tokens: starved, asked again with more room.
    short = Completion(["A long doc"], Usage(10, 2200, 2000), ["MAX_TOKENS"])
    assert "cut off" in starved(short, 3000)
    assert "empty" in starved(Completion([""], Usage(10, 24, 24), ["length"]), 24)
    assert starved(Completion(["fine"], Usage(10, 30, 20), ["stop"]), 24) is None


def test_the_budget_reserves_the_thinking_room():
    from traitforge.errors import BudgetExceeded
    from traitforge.llm.budget import Budget

    with ThinkingServer(responder, think=10) as server:
        def llm(**options):
            x = make_llm(ModelSpec(model="gemini:gemini-2.5-pro", base_url=server.url, max_retries=0, **options))
            x.budget = Budget(0.01)  # 1,000 output tokens at 10 USD per million
            return x

        assert asyncio.run(_ask(llm(), VERDICT, 24)) == "MISSING"
        with pytest.raises(BudgetExceeded):  # 24 + 2,048 output tokens at worst: over the limit
            asyncio.run(_ask(llm(thinking_budget=2048), VERDICT, 24))
