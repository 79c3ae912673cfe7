"""`with run.stage(name)`: the one place a pipeline stage's LLM usage is recorded, its prompt kit
made active and its clients closed (also when the stage raises), with the pooled clients usable by
the next stage."""

from __future__ import annotations

import asyncio
import logging

import pytest
from scripted_generator import calls, good_responder, make_spec, make_traits, scripted_llm

from traitforge.config import ModelSpec, RunSpec
from traitforge.pipeline import Run, stage_generate
from traitforge.prompts import PromptKit, current
from traitforge.runstore import RunStore


def closes_in(llm, into: list) -> None:
    """Record the event loop each aclose of this client's backend runs in (a spy: the backend's own
    aclose still runs)."""
    own = llm.backend.aclose

    async def aclose() -> None:
        into.append(asyncio.get_running_loop())
        await own()
    llm.backend.aclose = aclose


def judged_run(tmp_path) -> tuple[RunStore, object, Run, list]:
    """A run whose judge is a scripted client, and the loops its closes ran in."""
    store = RunStore(tmp_path / "run")
    judge = scripted_llm(lambda m, p: "fine")
    closed: list = []
    closes_in(judge, closed)
    return store, judge, Run.of(store, RunSpec(traits="t.md"), make_traits(), judge=judge), closed


def test_a_stage_records_its_usage_once_and_closes_its_clients_in_each_loop(tmp_path):
    store, judge, run, closed = judged_run(tmp_path)
    loops: list = []

    async def ask(prompt: str) -> str:
        loops.append(asyncio.get_running_loop())
        return await run.llm("judge").generate_one(prompt, max_tokens=64)

    with run.stage("curate") as st:
        st.run(ask("one"))
        with run.stage("curate") as inner:  # a stage entry point called inside the stage: the same stage
            assert inner is st
            inner.run(ask("two"))
    # Each asyncio.run closed the client inside its own loop (where its connection pool lives).
    assert closed == loops and loops[0] is not loops[1]
    usage = store.manifest["usage"]
    assert list(usage) == ["curate"]
    assert usage["curate"]["scripted:test"]["calls"] == calls(judge) == 2
    assert judge.usage.calls == 0  # drained: nothing left to count a second time
    assert RunStore(store.root).manifest["usage"] == usage  # saved
    assert "curate" in store.status_text() and "calls=2" in store.status_text()


def test_a_failing_stage_still_closes_its_clients_and_records_what_it_spent(tmp_path):
    store, judge, run, closed = judged_run(tmp_path)

    async def ask_then_fail() -> None:
        await judge.generate_one("one", max_tokens=64)
        raise RuntimeError("the stage broke")

    with pytest.raises(RuntimeError, match="the stage broke"):
        with run.stage("evaluate") as st:
            st.run(ask_then_fail())
    assert len(closed) == 1
    assert store.manifest["usage"]["evaluate"]["scripted:test"]["calls"] == 1
    assert run._scope is None  # the next stage is a stage of its own
    with run.stage("report") as st:
        st.run(judge.generate_one("two", max_tokens=64))
    assert store.manifest["usage"]["report"]["scripted:test"]["calls"] == 1 and len(closed) == 2


def test_the_stage_makes_the_runs_prompt_kit_active(tmp_path):
    (tmp_path / "prompts").mkdir()
    kit = PromptKit(tmp_path / "prompts")
    run = Run(spec=RunSpec(traits="t.md"), store=RunStore(tmp_path / "run"), traits=make_traits(), prompts=kit)
    seen = []

    async def look() -> None:
        seen.append(current())

    with run.stage("generate") as st:
        seen.append(current())
        st.run(look())
    assert seen == [kit, kit] and current() is not kit


def test_generation_usage_is_counted_once_across_its_steps(tmp_path):
    """stage_generate: each generation step records its own usage (the per-step rows of the status
    table); the stage adds nothing twice, and a finished stage run again records nothing."""
    spec = make_spec(tmp_path)
    store = RunStore(spec.output_path)
    llm = scripted_llm(good_responder, cache=tmp_path / "cache.sqlite")
    run = Run.of(store, spec, make_traits(), generator=llm)
    stage_generate(run, "documents")
    recorded = sum(u["calls"] for models in store.manifest["usage"].values() for u in models.values())
    assert recorded == calls(llm) > 0
    before = {k: dict(v) for k, v in store.manifest["usage"].items()}
    stage_generate(run, "documents")  # done: no calls, no new usage
    assert calls(llm) == recorded
    assert {k: dict(v) for k, v in store.manifest["usage"].items()} == before


@pytest.mark.slow
def test_two_stages_in_a_row_share_one_pooled_http_client(llama_server, tmp_path, caplog):
    """A real HTTP client (openai: on llama.cpp) pooled by the run: the first stage closes its
    connection pool in its own loop, the second stage opens a new one on the same client, and no pool
    is left for the garbage collector to close on a dead loop."""
    import gc

    from llama_server import MODEL_ALIAS

    spec = RunSpec.model_validate({"traits": "t.md", "models": {"judge": {
        "model": f"openai:{MODEL_ALIAS}", "base_url": llama_server, "timeout_s": 120, "max_retries": 2}}})
    store = RunStore(tmp_path / "run")
    run = Run.of(store, spec, make_traits())
    judge = run.llm("judge")
    assert run.client(ModelSpec(model=f"openai:{MODEL_ALIAS}", base_url=llama_server, timeout_s=120,
                                max_retries=2)) is judge  # the pool: one client per model

    async def ask(prompt: str) -> str:
        out = await run.llm("judge").generate_one(prompt, max_tokens=16, temperature=0.0)
        gc.collect()  # inside a running loop: where a pool left open by the earlier loop would fail
        await asyncio.sleep(0.05)
        return out

    gc.collect()  # other tests' garbage is not this test's business (see the test below for the race)
    with caplog.at_level("ERROR", logger="asyncio"):
        for name in ("curate", "evaluate"):
            with run.stage(name) as st:
                assert st.run(ask(f"Say one word about {name}.")).strip()
            assert judge.backend._loop is None and all(s.client.is_closed() for s in judge.backend.servers)
    assert run.llm("judge") is judge
    assert {name: store.manifest["usage"][name][judge.name]["calls"] for name in ("curate", "evaluate")} == \
        {"curate": 1, "evaluate": 1}
    assert not [r for r in caplog.records if "Event loop is closed" in r.getMessage() + str(r.exc_info)]


def _chat_completion(text: str) -> dict:
    """A reply body built from the installed SDK's own type (openai.types.chat.ChatCompletion)."""
    from openai.types.chat import ChatCompletion

    return ChatCompletion.model_validate({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}).model_dump(mode="json")


def test_a_pool_left_open_by_its_loop_is_closed_inside_that_loop_not_by_the_gc_on_another(tmp_path):
    """The race behind "Task exception was never retrieved ... AsyncClient.aclose() ... Event loop is
    closed", made deterministic: a caller runs the real OpenAI SDK client in a plain asyncio.run
    and never closes it (a library caller, a thread building items), so its pool, opened on that
    loop, outlives the loop. The next loop makes new clients, and the garbage collector, run inside
    it, finds the old one: the SDK's __del__ schedules its aclose on the *new* loop, which fails on
    the dead one's sockets. Every pool must be closed inside the loop that opened it."""
    import gc
    import sys
    import weakref

    from replay_server import ReplayServer, Reply

    gc.collect()  # other tests' garbage is not this test's business
    errors: list[str] = []
    unraisable = sys.unraisablehook
    sys.unraisablehook = lambda u: errors.append(f"{u.exc_value!r} in {u.object!r}")
    logger = logging.getLogger("asyncio")
    handler = _Collect(errors)
    logger.addHandler(handler)
    try:
        with ReplayServer() as server:
            server.route("POST", r"/chat/completions$", Reply(200, _chat_completion("word")))
            spec = RunSpec.model_validate({"traits": "t.md", "models": {"judge": {
                "model": "openai:m", "base_url": server.url, "max_retries": 0}}})
            run = Run.of(RunStore(tmp_path / "run"), spec, make_traits())
            judge = run.llm("judge")
            # A plain loop that ends without closing the client.
            assert asyncio.run(judge.generate_one("first", max_tokens=4)) == "word"
            first = weakref.ref(judge.backend.servers[0].client)

            async def ask(prompt: str) -> str:
                out = await run.llm("judge").generate_one(prompt, max_tokens=4)
                gc.collect()  # inside the next running loop: where a pool left open would be closed
                await asyncio.sleep(0.05)  # and where the task that closes it would fail
                return out

            for name in ("curate", "evaluate"):
                with run.stage(name) as st:
                    assert st.run(ask(f"about {name}")) == "word"
                assert judge.backend._loop is None and all(s.client.is_closed() for s in judge.backend.servers)
            gc.collect()
            assert first() is None or first().is_closed()
            assert len(server.calls("/chat/completions")) == 3
    finally:
        logger.removeHandler(handler)
        sys.unraisablehook = unraisable
    assert not errors, errors


class _Collect(logging.Handler):
    def __init__(self, into: list[str]):
        super().__init__(logging.ERROR)  # not -X dev's slow-callback warnings
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record.getMessage() + (f" {record.exc_info[1]!r}" if record.exc_info else ""))


def test_every_sdk_client_closes_inside_its_own_loop_when_the_loop_ends(monkeypatch):
    """Live backends (OpenAI, Anthropic, Gemini) and batch providers alike: a client made in a plain
    asyncio.run is closed by that loop's shutdown, in that loop; an explicit aclose closes it once."""
    from traitforge.llm.batch.anthropic import AnthropicBatch
    from traitforge.llm.batch.gemini import GeminiBatch
    from traitforge.llm.batch.openai import OpenAIBatch
    from traitforge.llm.providers import _http
    from traitforge.llm.registry import make_llm

    closed: list = []
    real = _http.closing_with_loop

    def spy(close):
        async def recorded():
            closed.append(asyncio.get_running_loop())
            await close()
        return real(recorded)

    monkeypatch.setattr(_http, "closing_with_loop", spy)
    for mod in ("traitforge.llm.providers.openai_compat", "traitforge.llm.batch.base"):
        monkeypatch.setattr(f"{mod}.closing_with_loop", spy)
    url = "http://127.0.0.1:9"  # never called
    backends = [make_llm(ModelSpec(model=f"{p}:m", base_url=url)).backend for p in ("openai", "anthropic", "gemini")]
    providers = [cls(b) for cls, b in zip((OpenAIBatch, AnthropicBatch, GeminiBatch), backends)]
    opened = [(b, b._ensure_clients if hasattr(b, "_ensure_clients") else b._get_client) for b in backends]
    opened += [(p, p._sdk) for p in providers]
    for owner, make in opened:
        closed.clear()

        async def use() -> asyncio.AbstractEventLoop:
            make()
            return asyncio.get_running_loop()
        loop = asyncio.run(use())  # ends without closing: its shutdown closes the client
        assert closed == [loop], owner

        closed.clear()

        async def use_and_close() -> asyncio.AbstractEventLoop:
            make()
            await owner.aclose()
            await owner.aclose()
            return asyncio.get_running_loop()
        loop = asyncio.run(use_and_close())
        assert closed == [loop], owner  # once, in its loop, not again at shutdown
    openai_client = backends[0].servers[0].client
    assert openai_client.is_closed()
