"""The LLM client's own logic on the scripted backend: cache per sample, structured re-ask,
retries, and batching for local backends."""

import asyncio

import pytest
from pydantic import BaseModel

from traitforge.llm.base import Completion, GenerateParams, Usage
from traitforge.llm.cache import LLMCache
from traitforge.llm.client import LLM
from traitforge.llm.errors import BackendError, RetryableError
from traitforge.llm.providers.scripted import ScriptedBackend


class Verdict(BaseModel):
    score: int
    reason: str


def test_structured_output_reasks_with_the_error_then_validates(tmp_path):
    backend = ScriptedBackend(responses=["Sure! here you go", '{"score": "high"}',
                                         'Result:\n```json\n{"score": 7, "reason": "clear"}\n```'])
    llm = LLM(backend, cache=LLMCache(tmp_path / "c.sqlite"))
    v = asyncio.run(llm.generate_json("Rate this.", Verdict))
    assert v == Verdict(score=7, reason="clear")
    assert len(backend.calls) == 3
    reask = backend.calls[2][0][-1].content
    assert "not valid" in reask and "score" in reask  # the re-ask quotes what was wrong
    # The whole exchange is cached: a second run makes no calls.
    llm2 = LLM(ScriptedBackend(responses=[]), cache=LLMCache(tmp_path / "c.sqlite"))
    assert asyncio.run(llm2.generate_json("Rate this.", Verdict)) == v
    assert llm2.usage.calls == 0 and llm2.usage.cached == 3


def test_structured_output_gives_up_with_a_clear_error():
    llm = LLM(ScriptedBackend(responses=["no", "still no", "nope"]))
    with pytest.raises(BackendError, match="no valid JSON after 3 tries"):
        asyncio.run(llm.generate_json("Rate this.", Verdict))


def test_n_samples_cached_by_index_and_topped_up(tmp_path):
    counter = iter(range(100))
    backend = ScriptedBackend(responses=lambda m, p: f"sample {next(counter)}")
    llm = LLM(backend, cache=LLMCache(tmp_path / "c.sqlite"))
    first = asyncio.run(llm.generate("hi", n=2, temperature=1.0))
    assert first == ["sample 0", "sample 1"] and llm.usage.calls == 2
    more = asyncio.run(llm.generate("hi", n=3, temperature=1.0))
    assert more[:2] == first and more[2] == "sample 2" and llm.usage.calls == 3


def test_a_missing_earlier_sample_is_refetched_under_its_own_index(tmp_path):
    from traitforge.llm.cache import cache_key

    counter = iter(range(100))
    backend = ScriptedBackend(responses=lambda m, p: f"sample {next(counter)}")
    cache = LLMCache(tmp_path / "c.sqlite")
    llm = LLM(backend, cache=cache)
    assert asyncio.run(llm.generate("hi", n=3, temperature=1.0)) == ["sample 0", "sample 1", "sample 2"]
    msgs, p = backend.calls[0][0], llm._params(None, {"n": 3, "temperature": 1.0})
    cache.delete(cache_key(backend.cache_identity(), msgs, p, 0))  # e.g. a corrupt entry, deleted on read
    again = LLM(backend, cache=LLMCache(tmp_path / "c.sqlite"))
    assert asyncio.run(again.generate("hi", n=3, temperature=1.0)) == ["sample 3", "sample 1", "sample 2"]
    assert again.usage.calls == 1 and again.usage.cached == 2
    # Index 2 kept its sample and index 0 now holds the refetched one: a third run calls nothing.
    third = LLM(backend, cache=LLMCache(tmp_path / "c.sqlite"))
    assert asyncio.run(third.generate("hi", n=3, temperature=1.0)) == ["sample 3", "sample 1", "sample 2"]
    assert third.usage.calls == 0


class Flaky(ScriptedBackend):
    def __init__(self, failures):
        super().__init__(responses=lambda m, p: "ok")
        self.failures = list(failures)

    async def generate(self, messages, params):
        if self.failures:
            raise self.failures.pop(0)
        return await super().generate(messages, params)


def test_retries_transient_errors_then_succeeds(tmp_path):
    backend = Flaky([RetryableError("429", retry_after=0.01), RetryableError("503")])
    llm = LLM(backend, cache=LLMCache(tmp_path / "c.sqlite"), backoff_base_s=0.01)
    assert asyncio.run(llm.generate_one("x")) == "ok"
    assert len(backend.calls) == 1


def test_gives_up_after_max_retries_and_caches_nothing(tmp_path):
    cache = LLMCache(tmp_path / "c.sqlite")
    llm = LLM(Flaky([RetryableError("503")] * 5), cache=cache, max_retries=2, backoff_base_s=0.01)
    with pytest.raises(BackendError, match="gave up after 3 attempts"):
        asyncio.run(llm.generate_one("x"))
    assert len(cache) == 0


class Batching(ScriptedBackend):
    supports_batch = True

    def __init__(self):
        super().__init__(responses=lambda m, p: "r")
        self.batch_sizes = []

    async def generate_batch(self, requests):
        self.batch_sizes.append(len(requests))
        return [Completion(texts=[f"echo {m[-1].content}"] * p.n, usage=Usage(1, 1)) for m, p in requests]


def test_local_style_backends_get_concurrent_calls_in_batches():
    backend = Batching()
    llm = LLM(backend, batch_size=4)

    async def main():
        return await asyncio.gather(*(llm.generate_one(f"q{i}") for i in range(10)))

    out = asyncio.run(main())
    assert out == [f"echo q{i}" for i in range(10)]
    assert backend.batch_sizes == [4, 4, 2]


class Recording(Batching):
    """A batching backend that records each batch's prompts."""

    def __init__(self):
        super().__init__()
        self.batches = []

    async def generate_batch(self, requests):
        self.batches.append([m[-1].content for m, _ in requests])
        return await super().generate_batch(requests)


def test_a_local_batch_takes_the_shortest_queued_prompts():
    # Arrival order mixes long and short prompts (a judge's transcripts among short grades): each
    # batch holds prompts of like length, so the short ones are not padded to the long ones.
    backend = Recording()
    llm = LLM(backend, batch_size=4)
    prompts = [("x" * (100 if i % 2 else 10)) + str(i) for i in range(8)]

    async def main():
        return await asyncio.gather(*(llm.generate_one(p) for p in prompts))

    assert asyncio.run(main()) == [f"echo {p}" for p in prompts]
    assert [sorted(len(p) for p in b) for b in backend.batches] == [[11] * 4, [101] * 4]


def test_only_a_429_or_a_retry_after_starts_the_shared_cool_down():
    import time

    def cooled_after(error):
        llm = LLM(Flaky([error]), backoff_base_s=0.05)
        start = time.monotonic()
        assert asyncio.run(llm.generate_one("x")) == "ok"
        return llm.limiter._cooldown_until - start

    assert cooled_after(RetryableError("rate limited", status=429)) >= 0.05  # the backoff delay, for everyone
    assert cooled_after(RetryableError("overloaded", status=503, retry_after=0.05)) >= 0.05
    assert cooled_after(RetryableError("overloaded", status=503)) < 0  # only the caller backs off


def test_recording_defers_only_the_calls_made_in_its_own_context():
    """Batch mode records a step's requests on a client while another step may be grading live on
    the same client (evaluation grades its evals at once): only the recording task's calls are
    deferred; the other task's call reaches the backend and gets its answer."""
    from traitforge.llm.client import DeferredCall

    asked: list[str] = []
    llm = LLM(ScriptedBackend(responses=lambda m, p: asked.append(m[-1].content) or "live"))
    recorded: list = []

    async def main():
        recording, answered = asyncio.Event(), asyncio.Event()

        async def recorder() -> str:
            with llm.recording(recorded):
                recording.set()
                await answered.wait()  # still recording while the live call is made and answered
                try:
                    await llm.generate_one("to batch", max_tokens=8)
                except DeferredCall:
                    return "deferred"
                return "reached the backend"

        async def live() -> str:
            await recording.wait()
            out = await llm.generate_one("graded now", max_tokens=8)
            answered.set()
            return out

        return await asyncio.gather(recorder(), live())

    assert asyncio.run(main()) == ["deferred", "live"]
    assert asked == ["graded now"] and [m[-1].content for m, _ in recorded] == ["to batch"]


def test_generate_replies_says_a_reply_was_truncated_and_each_call_is_one_record(tmp_path):
    """A stage can tell a cut reply from a whole one, from the backend and from the cache; every
    backend call is one CallRecord (thinking tokens included) to the client's sink."""
    cut = Completion(texts=["The answer is"], usage=Usage(5, 12, 8), finish_reasons=["length"])
    records = []
    llm = LLM(ScriptedBackend(responses=[cut]), cache=LLMCache(tmp_path / "c.sqlite"), sink=records.append)
    [reply] = asyncio.run(llm.generate_replies("Explain.", max_tokens=4))
    assert reply.text == "The answer is" and reply.truncated and reply.finish_reason == "length"
    assert llm.usage.truncated == 1 and llm.usage.reasoning_tokens == 8
    [rec] = records
    assert (rec.outcome, rec.input_tokens, rec.output_tokens, rec.reasoning_tokens, rec.seq) == ("truncated", 5, 12, 8, 1)
    assert rec.counter == llm.usage.id and rec.cost_usd is None  # scripted: no price
    again = LLM(ScriptedBackend(responses=[]), cache=LLMCache(tmp_path / "c.sqlite"), sink=records.append)
    cached = asyncio.run(again.generate_full("Explain.", max_tokens=4))
    assert cached.truncated and cached.cached and cached.reasoning_tokens == 8 and len(records) == 1
    # generate keeps returning plain strings for existing callers.
    assert asyncio.run(again.generate("Explain.", max_tokens=4)) == ["The answer is"]
