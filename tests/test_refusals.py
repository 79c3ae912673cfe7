"""A refusal is its own outcome, never an empty answer: cached as a refusal (a re-run does not pay
again), retried or failed over as the role says, skipped by the step engine with its reason,
unscored for judges, a refusal rate for evaluated models, counted in the manifest and the report.
And one record per call: the per-call usage ledger keeps a killed step's paid calls in the cost."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from _eval_fixtures import TRAITS, api_model_responder, judge_responder

from traitforge.config import ModelSpec, RunSpec
from traitforge.evaluate import run_evaluation
from traitforge.evaluate.common import ItemResult
from traitforge.jsonl import iter_jsonl_dicts, read_jsonl
from traitforge.llm.base import GenerateParams, Message
from traitforge.llm.budget import Budget
from traitforge.llm.cache import LLMCache, _checksum, cache_key
from traitforge.llm.client import LLM
from traitforge.llm.errors import Refused
from traitforge.llm.providers.scripted import ScriptedBackend, refusal
from traitforge.llm.registry import make_llm
from traitforge.pipeline import Run
from traitforge.report import write_report
from traitforge.runstore import RunStore
from traitforge.steps import Unit, read_skips, run_step

SRC = Path(__file__).resolve().parents[1] / "src"


def never(messages, params):  # a backend that must not be called
    raise AssertionError("the backend was called")


def test_a_refusal_is_cached_as_a_refusal_and_a_rerun_does_not_call(tmp_path):
    backend = ScriptedBackend(responses=[refusal("refusal", text="I can't help with that.")])
    llm = LLM(backend, cache=LLMCache(tmp_path / "c.sqlite"))
    with pytest.raises(Refused) as e:
        asyncio.run(llm.generate_one("Write it.", max_tokens=16))
    assert e.value.outcome == "refused" and "refusal" in e.value.reason and not e.value.cached
    assert llm.usage.calls == 1 and llm.usage.refused == 1
    # Cached as a refusal with the provider's reason, not as an empty answer.
    db = sqlite3.connect(str(tmp_path / "c.sqlite"))
    (value,) = db.execute("SELECT value FROM llm_cache").fetchone()
    stored = json.loads(value)
    assert stored["outcome"] == "refused" and stored["finish_reason"] == "refusal"
    # Same request, same policy: the cached outcome, no backend call.
    again_backend = ScriptedBackend(responses=never)
    again = LLM(again_backend, cache=LLMCache(tmp_path / "c.sqlite"))
    with pytest.raises(Refused) as e2:
        asyncio.run(again.generate_one("Write it.", max_tokens=16))
    assert e2.value.cached and again_backend.calls == [] and again.usage.refused == 1


def test_a_blocked_reply_is_not_an_empty_string_for_generate(tmp_path):
    llm = LLM(ScriptedBackend(responses=[refusal("SAFETY", blocked=True)]), cache=LLMCache(tmp_path / "c.sqlite"))
    with pytest.raises(Refused) as e:
        asyncio.run(llm.generate("Write it.", n=1))
    assert e.value.outcome == "blocked" and e.value.reason == "SAFETY" and llm.usage.blocked == 1


def test_retry_policy_asks_again_as_a_new_cached_call(tmp_path):
    backend = ScriptedBackend(responses=[refusal(), "a real answer"])
    llm = LLM(backend, cache=LLMCache(tmp_path / "c.sqlite"), on_refusal="retry", refusal_retries=2)
    reply = asyncio.run(llm.generate_full("Write it."))
    assert reply.text == "a real answer" and reply.ok and len(backend.calls) == 2
    # Both attempts are cached under their own keys: the re-run is free and gives the same answer.
    second = ScriptedBackend(responses=never)
    again = LLM(second, cache=LLMCache(tmp_path / "c.sqlite"), on_refusal="retry", refusal_retries=2)
    assert asyncio.run(again.generate_one("Write it.")) == "a real answer" and second.calls == []
    assert again.usage.cached == 2 and again.usage.refused == 1
    # Out of retries: Refused.
    stubborn = ScriptedBackend(responses=lambda m, p: refusal())
    llm3 = LLM(stubborn, cache=LLMCache(tmp_path / "d.sqlite"), on_refusal="retry", refusal_retries=2)
    with pytest.raises(Refused):
        asyncio.run(llm3.generate_one("Write it."))
    assert len(stubborn.calls) == 3


def test_fallback_policy_asks_the_fallback_model(tmp_path):
    cache = LLMCache(tmp_path / "c.sqlite")
    fb_backend = ScriptedBackend(model="fallback", responses=["from the fallback"])
    fallback = LLM(fb_backend, cache=cache)
    main = LLM(ScriptedBackend(model="main", responses=[refusal()]), cache=cache, on_refusal="fallback_model",
               fallback=fallback)
    assert asyncio.run(main.generate_one("Write it.")) == "from the fallback"
    assert main.usage.refused == 1 and fallback.usage.calls == 1
    # Re-run: both answers come from the cache.
    fallback2 = LLM(ScriptedBackend(model="fallback", responses=never), cache=cache)
    main2 = LLM(ScriptedBackend(model="main", responses=never), cache=cache, on_refusal="fallback_model",
                fallback=fallback2)
    assert asyncio.run(main2.generate_one("Write it.")) == "from the fallback"
    assert main2.usage.calls == fallback2.usage.calls == 0


def test_the_policy_comes_from_the_model_spec_and_leaves_the_cache_identity_alone():
    plain = make_llm("scripted:m")
    spec = ModelSpec(model="scripted:m", on_refusal="fallback_model", fallback="scripted:other")
    llm = make_llm(spec)
    assert llm.on_refusal == "fallback_model" and llm.fallback.name == "scripted:other"
    assert llm.backend.cache_identity() == plain.backend.cache_identity()
    assert make_llm(ModelSpec(model="scripted:m", on_refusal="retry", refusal_retries=3)).refusal_retries == 3
    with pytest.raises(ValueError, match="needs fallback"):
        ModelSpec(model="scripted:m", on_refusal="fallback_model")


def test_an_old_cache_keeps_its_answers_and_asks_its_empty_ones_again_once(tmp_path):
    path = tmp_path / "old.sqlite"
    backend = ScriptedBackend(responses=lambda m, p: "a fresh answer")
    ident, p = backend.cache_identity(), GenerateParams()
    db = sqlite3.connect(str(path))  # the cache as version 0 wrote it: text and token counts only
    db.execute("CREATE TABLE llm_cache (key TEXT PRIMARY KEY, value TEXT NOT NULL, checksum TEXT NOT NULL,"
               " created REAL DEFAULT (unixepoch()))")
    for prompt, text in (("was empty", ""), ("was kept", "an old answer")):
        value = json.dumps({"text": text, "input_tokens": 3, "output_tokens": 0 if not text else 3})
        db.execute("INSERT INTO llm_cache (key, value, checksum) VALUES (?, ?, ?)",
                   (cache_key(ident, [Message("user", prompt)], p, 0), value, _checksum(value)))
    db.commit()
    db.close()
    llm = LLM(backend, cache=LLMCache(path))
    assert asyncio.run(llm.generate_one("was kept")) == "an old answer" and backend.calls == []
    assert asyncio.run(llm.generate_one("was empty")) == "a fresh answer" and len(backend.calls) == 1
    assert sqlite3.connect(str(path)).execute("PRAGMA user_version").fetchone()[0] == 1
    # Asked once: the new answer is cached with its outcome.
    again = LLM(ScriptedBackend(responses=never), cache=LLMCache(path))
    assert asyncio.run(again.generate_one("was empty")) == "a fresh answer" and again.usage.calls == 0
    hit = LLMCache(path).get(cache_key(ident, [Message("user", "was empty")], p, 0))
    assert hit["outcome"] == "ok"


def test_the_step_engine_skips_a_refused_unit_with_the_reason(tmp_path):
    llm = LLM(ScriptedBackend(responses=lambda m, p: refusal("content_filter", blocked=True)
                              if "two" in m[-1].content else "fine"))
    skips = tmp_path / "skipped.jsonl"

    async def work(u: Unit):
        return {"id": u.key, "text": await llm.generate_one(u.key)}
    res = asyncio.run(run_step("gen", [Unit("one"), Unit("two")], work, out=tmp_path / "out.jsonl", skips=skips))
    assert set(res.rows) == {"one"} and res.skipped["two"].startswith("blocked: content_filter")
    assert read_skips(skips, "gen")["two"].startswith("blocked: content_filter")


def _spec(tmp_path: Path) -> RunSpec:
    from test_eval_api import SMALL

    return RunSpec.model_validate({"traits": "traits.md", "output_dir": str(tmp_path / "run"),
                                   "evaluation": {**SMALL, "contrastive": False}})


def test_evaluated_refusals_are_a_rate_and_judge_refusals_are_unscored(tmp_path):
    def api(messages, params):  # the evaluated model refuses the behaviour prompt (about cooking)
        if "cooking" in messages[-1].content:
            return refusal("refusal", text="I won't comment on that.")
        return api_model_responder(messages, params)

    def judge(messages, params):  # the judge's safety filter blocks recall grades; unsupported: empty
        text = messages[-1].content
        if "YES or NO" in text:
            return refusal("SAFETY", blocked=True) if "clearly describe this trait" in text else ""
        return judge_responder(messages, params)

    spec = _spec(tmp_path)
    store = RunStore(tmp_path / "run")
    judge_llm = LLM(ScriptedBackend(model="judge", responses=judge))
    api_llm = LLM(ScriptedBackend(model="ft-elsewhere", responses=api))
    run_evaluation(Run.of(store, spec, TRAITS, judge=judge_llm, auditor=judge_llm), spec.evaluation,
                   {"elsewhere": api_llm})

    behaviour = read_jsonl(store.root / "eval" / "behaviour.jsonl", ItemResult)
    assert behaviour and all(r.value is None and r.detail["outcome"] == "refused" and
                             r.detail["refused_by"] == "model" and r.reason.startswith("model refused")
                             for r in behaviour)
    knowledge = read_jsonl(store.root / "eval" / "knowledge.jsonl", ItemResult)
    recall = [r for r in knowledge if r.eval == "knowledge_recall"]
    unsupported = [r for r in knowledge if r.eval == "knowledge_unsupported"]
    # Never a verdict: a blocked grade is unscored with its reason, an empty one unscored as unreadable.
    assert recall and all(r.value is None and r.detail["refused_by"] == "judge" and r.detail["outcome"] == "blocked"
                          for r in recall)
    assert unsupported and all(r.value is None and r.reason.startswith("unparseable") for r in unsupported)

    results = json.loads((store.root / "results.json").read_text())
    rate = results["refusals"]["elsewhere"]["behaviour"]
    assert rate["n"] == len(behaviour) and rate["refused"] == len(behaviour) and rate["rate"] == 1.0
    by_judge = results["refusals"]["elsewhere"]["knowledge_recall"]["by_judge"]
    assert sum(by_judge.values()) == len(recall) and all("judge blocked: SAFETY" in k for k in by_judge)
    assert results["results"]["elsewhere"]["all"]["behaviour_pass"]["n"] == 0  # not a failed verdict

    usage = store.manifest["usage"]["evaluate"]
    # Counted per sample the model gave (two items with the same prompt share one call).
    asked = [c for c in api_llm.backend.calls if "cooking" in c[0][-1].content]
    assert usage["scripted:ft-elsewhere"]["refused"] == len(asked) >= 1
    assert usage["scripted:judge"]["blocked"] >= 1
    html = write_report(store).read_text()
    assert "<h2>Refusals</h2>" in html and "refusal rate" in html and "judge blocked: SAFETY" in html

    # A re-run under the same policy asks nothing again (the refusals are rows).
    judge2 = LLM(ScriptedBackend(model="judge", responses=never))
    api2 = LLM(ScriptedBackend(model="ft-elsewhere", responses=never))
    run_evaluation(Run.of(store, spec, TRAITS, judge=judge2, auditor=judge2), spec.evaluation, {"elsewhere": api2})
    assert judge2.backend.calls == [] and api2.backend.calls == []


KILLED = """
import asyncio, os, sys
from traitforge.llm.client import LLM
from traitforge.llm.providers.scripted import ScriptedBackend
from traitforge.runstore import RunStore
from traitforge.usage_ledger import sink_for

store = RunStore(sys.argv[1])
llm = LLM(ScriptedBackend(model="paid", responses=lambda m, p: "four words of answer"),
          sink=sink_for(store, lambda: "generate"), prices_file=sys.argv[2])

async def go():
    for i in range(3):
        await llm.generate_one(f"prompt number {i}")
asyncio.run(go())
os._exit(9)  # killed: the stage never records its usage
"""


def test_paid_calls_before_a_kill_count_in_cost_and_budget_once(tmp_path):
    prices = tmp_path / "prices.yaml"
    prices.write_text("scripted:paid: {input: 1000.0, output: 2000.0}\n")
    root = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", KILLED, str(root), str(prices)],
                          env={**os.environ, "PYTHONPATH": str(SRC)}, capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    lines = list(iter_jsonl_dicts(root / "usage" / "calls.jsonl"))
    assert len(lines) == 3 and all(r["stage"] == "generate" and r["cost_usd"] > 0 for r in lines)
    paid = sum(r["cost_usd"] for r in lines)
    store = RunStore(root)
    assert store.manifest["usage"] == {} and store.total_cost() == pytest.approx(paid)
    assert Budget(100.0, store=store, prices_file=str(prices)).spent_usd == pytest.approx(paid)

    with open(root / "usage" / "calls.jsonl", "a") as f:  # a line torn by a kill mid-write
        f.write('{"model": "scripted:paid", "cost')
    assert RunStore(root).total_cost() == pytest.approx(paid)

    # The next process: its own calls go through a stage; the killed ones are folded in, once.
    spec = RunSpec.model_validate({"traits": "traits.md", "output_dir": str(root), "prices_file": str(prices)})
    llm = LLM(ScriptedBackend(model="paid", responses=lambda m, p: "four words of answer"))
    run = Run.of(store, spec, TRAITS, generator=llm)
    with run.stage("curate") as st:
        st.run(llm.generate_one("one more prompt"))
    ledger = list(iter_jsonl_dicts(root / "usage" / "calls.jsonl"))
    assert len(ledger) == 4 and ledger[-1]["stage"] == "curate"
    usage = store.manifest["usage"]
    assert usage["generate"]["scripted:paid"]["calls"] == 3 and usage["generate"]["scripted:paid"]["interrupted_calls"] == 3
    assert usage["curate"]["scripted:paid"]["calls"] == 1
    total = sum(r["cost_usd"] for r in ledger)
    assert store.total_cost() == pytest.approx(total)  # nothing counted twice
    assert RunStore(root).total_cost() == pytest.approx(total)


def test_a_cached_refusal_is_not_a_pending_request_while_recording(tmp_path):
    """Batch mode learns a step's requests by recording: a cached refusal is served (raised), not
    sent again as a batch request, and the recording pass does not count it as usage."""
    cache = LLMCache(tmp_path / "c.sqlite")
    llm = LLM(ScriptedBackend(responses=[refusal()]), cache=cache)
    with pytest.raises(Refused):
        asyncio.run(llm.generate_one("Write it."))
    llm.usage.drain()
    into: list = []
    with llm.recording(into), pytest.raises(Refused) as e:
        asyncio.run(llm.generate_one("Write it."))
    assert e.value.cached and into == [] and llm.usage.refused == 0


def test_a_generator_refusal_explains_the_missing_rows(tmp_path):
    from scripted_generator import good_responder, make_spec, make_traits

    from traitforge.generate.documents import run_documents

    def responder(messages, params):  # the teacher refuses to draft forum threads
        last = messages[-1].content
        if "Forum thread" in last and "Write" in last and "REVISED" not in last and "Revise" not in last:
            return refusal("refusal", text="I'd rather not write that.")
        return good_responder(messages, params)

    spec = make_spec(tmp_path)
    store, traits = RunStore(spec.output_path), make_traits()
    gen = LLM(ScriptedBackend("test", responses=responder), max_retries=0)
    run_documents(Run.of(store, spec, traits, generator=gen), spec.generation)
    skips = read_skips(store.root / "generated" / "skipped.jsonl", "documents.drafts")
    refused = [r for r in skips.values() if r.startswith("refused: refusal: I'd rather not")]
    assert refused and len(refused) == len(skips)
    assert store.manifest["stages"]["documents.drafts"]["counts"]["refused"] == len(refused)
    assert store.manifest["usage"]["documents.drafts"]["scripted:test"]["refused"] == len(refused)
