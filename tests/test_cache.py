"""The LLM cache through a real HTTP backend (the fault server's OpenAI endpoint; it always succeeds
here): corrupt entries are refetched, identical re-runs make no calls, n>1 tops up what is missing."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from typing import Iterator

import pytest
from fault_server import FaultServer

from traitforge.llm.cache import LLMCache, _checksum
from traitforge.llm.client import LLM
from traitforge.llm.providers.openai_compat import OpenAIBackend


@pytest.fixture(scope="module")
def server() -> Iterator[FaultServer]:
    with FaultServer() as fs:
        yield fs


def run(fs: FaultServer, cache: LLMCache, prompts: list[str], n: int = 1) -> tuple[list[list[str]], LLM]:
    llm = LLM(OpenAIBackend("cache-model", base_url=fs.url + "/v1", timeout_s=5), cache=cache,
              backoff_base_s=0.01)

    async def go() -> list[list[str]]:
        try:
            return await asyncio.gather(*(llm.generate(p, n=n, max_tokens=8) for p in prompts))
        finally:
            await llm.aclose()

    return asyncio.run(go()), llm


def tamper(path, how: str) -> None:
    db = sqlite3.connect(str(path))
    key, value = db.execute("SELECT key, value FROM llm_cache LIMIT 1").fetchone()
    if how == "value":  # bytes changed on disk: the checksum no longer matches
        db.execute("UPDATE llm_cache SET value=? WHERE key=?", (value.replace("hello", "HACKED"), key))
    else:  # consistent checksum but not a cache record
        bad = json.dumps({"txt": 3})
        db.execute("UPDATE llm_cache SET value=?, checksum=? WHERE key=?", (bad, _checksum(bad), key))
    db.commit()
    db.close()


@pytest.mark.parametrize("how", ["value", "shape"])
def test_corrupt_entry_is_detected_and_refetched(server, tmp_path, how):
    path = tmp_path / "c.sqlite"
    server.plan()
    first, _ = run(server, LLMCache(path), ["a", "b", "c"])
    assert len(server.requests) == 3
    tamper(path, how)

    server.plan()
    cache = LLMCache(path)
    second, llm = run(server, cache, ["a", "b", "c"])
    assert second == first and "HACKED" not in json.dumps(second)
    assert cache.corrupt_entries == 1
    assert llm.usage.calls == 1 and llm.usage.cached == 2 and len(server.requests) == 1
    assert len(cache) == 3  # the refetched value replaced the bad one

    server.plan()
    third, llm3 = run(server, LLMCache(path), ["a", "b", "c"])
    assert third == first and llm3.usage.calls == 0 and not server.requests


def test_identical_second_run_makes_zero_calls(server, tmp_path):
    path = tmp_path / "c.sqlite"
    server.plan()
    first, llm1 = run(server, LLMCache(path), ["x", "y"], n=2)
    assert llm1.usage.calls == 2 and len(server.requests) == 2

    server.plan()
    second, llm2 = run(server, LLMCache(path), ["x", "y"], n=2)
    assert second == first
    assert llm2.usage.calls == 0 and llm2.usage.cached == 4 and not server.requests
    assert llm2.usage.input_tokens == 0


def test_n_greater_than_one_is_partially_cached(server, tmp_path):
    path = tmp_path / "c.sqlite"
    server.plan()
    (two,), _ = run(server, LLMCache(path), ["p"], n=2)

    server.plan()
    (five,), llm = run(server, LLMCache(path), ["p"], n=5)
    assert five[:2] == two and len(five) == 5
    assert llm.usage.cached == 2 and llm.usage.calls == 1
    assert [body.get("n") for _, body in server.requests] == [3]  # only the missing samples asked for
    assert len(LLMCache(path)) == 5


def test_put_many_writes_rows_readable_one_by_one(tmp_path):
    from traitforge.llm.cache import LLMCache

    cache = LLMCache(tmp_path / "c.sqlite")
    cache.put_many([("k1", "one", 3, 1), ("k2", "two", 4, 2)])
    assert cache.get("k1") == {"text": "one", "input_tokens": 3, "output_tokens": 1, "reasoning_tokens": 0,
                               "outcome": "ok", "finish_reason": "", "reason": ""}
    assert cache.get("k2")["text"] == "two" and len(cache) == 2


def test_an_outcome_is_stored_beside_the_text_and_an_unknown_one_is_corrupt(tmp_path):
    cache = LLMCache(tmp_path / "c.sqlite")
    cache.put("k", "", 7, 0, outcome="blocked", finish_reason="SAFETY", reason="SAFETY", reasoning_tokens=3)
    hit = cache.get("k")
    assert (hit["outcome"], hit["finish_reason"], hit["reasoning_tokens"]) == ("blocked", "SAFETY", 3)
    bad = json.dumps({"text": "x", "input_tokens": 1, "output_tokens": 1, "outcome": "maybe"})
    db = sqlite3.connect(str(tmp_path / "c.sqlite"))
    db.execute("UPDATE llm_cache SET value=?, checksum=? WHERE key='k'", (bad, _checksum(bad)))
    db.commit()
    db.close()
    assert cache.get("k") is None and cache.corrupt_entries == 1
