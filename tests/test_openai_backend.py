"""The `openai:` backend against a real llama.cpp OpenAI-compatible server on the embedded model.

Small max_tokens throughout: the server runs on 2 shared CPU cores.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from llama_server import MODEL_ALIAS, free_port
from pydantic import BaseModel

from traitforge.config import ModelSpec
from traitforge.llm.cache import LLMCache
from traitforge.llm.client import LLM
from traitforge.llm.registry import make_llm

MODEL = f"openai:{MODEL_ALIAS}"


class Person(BaseModel):
    name: str
    age: int


def llm_for(base_url: str | list[str], cache: LLMCache | None = None) -> LLM:
    return make_llm(ModelSpec(model=MODEL, base_url=base_url, timeout_s=120, max_retries=2), cache=cache)


async def _closing(llm: LLM, coro):
    try:
        return await coro
    finally:
        await llm.aclose()


def test_chat_reports_text_and_usage(llama_server, tmp_path):
    llm = llm_for(llama_server, LLMCache(tmp_path / "c.sqlite"))
    text = asyncio.run(_closing(llm, llm.generate_one("Say hello to Ada.", max_tokens=12, temperature=0)))
    assert isinstance(text, str) and text.strip()
    assert llm.usage.calls == 1
    # The prompt (with the chat template) is more than the 5 words; the reply is capped at 12 tokens.
    assert llm.usage.input_tokens > 5 and 0 < llm.usage.output_tokens <= 12


def test_n_samples_are_distinct_at_temperature_one(llama_server, tmp_path):
    cache = LLMCache(tmp_path / "c.sqlite")
    llm = llm_for(llama_server, cache)
    texts = asyncio.run(_closing(llm, llm.generate("Write a short sentence about cats.", n=3,
                                                   temperature=1.0, max_tokens=16)))
    assert len(texts) == 3 and len(set(texts)) == 3
    assert len(cache) == 3
    # llama.cpp ignores n: one request, then two make-up requests; usage counts all three.
    assert llm.usage.calls == 1 and llm.usage.output_tokens > 16


def test_structured_output_is_valid_json(llama_server, tmp_path):
    llm = llm_for(llama_server, LLMCache(tmp_path / "c.sqlite"))
    person = asyncio.run(_closing(llm, llm.generate_json(
        "Invent a person. Reply as JSON with a name and an age.", Person, max_tokens=48, temperature=0)))
    assert isinstance(person, Person) and person.name
    # llama-cpp-python refuses response_format json_schema; the backend switched to its dialect.
    assert llm.backend.servers[0].json_mode == "json_object"  # type: ignore[attr-defined]


def test_stop_sequence_cuts_the_reply(llama_server, tmp_path):
    llm = llm_for(llama_server, LLMCache(tmp_path / "c.sqlite"))
    prompt = "Count from 1 to 10, separated by commas."

    async def both() -> tuple[str, str]:
        full = await llm.generate_one(prompt, max_tokens=40, temperature=0)
        cut = await llm.generate_one(prompt, max_tokens=40, temperature=0, stop=["5"])
        return full, cut

    full, cut = asyncio.run(_closing(llm, both()))
    assert "5" in full, f"precondition: greedy reply should reach 5: {full!r}"
    assert "5" not in cut and cut.strip() and full.startswith(cut.rstrip())


def test_cached_second_run_makes_no_backend_calls(llama_server, tmp_path):
    path = tmp_path / "c.sqlite"
    prompts = ["Name a colour.", "Name a fruit."]

    def run() -> tuple[list[list[str]], LLM]:
        llm = llm_for(llama_server, LLMCache(path))

        async def go() -> list[list[str]]:
            return await asyncio.gather(*(llm.generate(p, n=2, temperature=1.0, max_tokens=8) for p in prompts))

        return asyncio.run(_closing(llm, go())), llm

    first, llm1 = run()
    second, llm2 = run()
    assert llm1.usage.calls == 2 and llm1.usage.cached == 0
    assert llm2.usage.calls == 0 and llm2.usage.cached == 4
    assert second == first


def test_a_dead_server_in_the_list_is_skipped(llama_server, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    llm = llm_for([dead, llama_server], LLMCache(tmp_path / "c.sqlite"))
    prompts = [f"Say the number {i}." for i in range(4)]

    async def go() -> list[str]:
        return await asyncio.gather(*(llm.generate_one(p, max_tokens=6, temperature=0) for p in prompts))

    texts = asyncio.run(_closing(llm, go()))
    assert len(texts) == 4 and all(isinstance(t, str) for t in texts)
    assert llm.usage.calls == 4
    dead_server, live_server = llm.backend.servers  # type: ignore[attr-defined]
    assert dead_server.dead_until > time.monotonic() and live_server.dead_until == 0


@pytest.mark.parametrize("n", [1, 2])
def test_same_llm_works_across_event_loops(llama_server, tmp_path, n):
    # Stages may call asyncio.run more than once with one LLM; clients are rebuilt per loop.
    llm = llm_for(llama_server)
    for i in range(n):
        assert asyncio.run(llm.generate_one(f"Say {i}.", max_tokens=4, temperature=0)) is not None
    assert llm.usage.calls == n
