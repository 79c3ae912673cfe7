"""A whole generation (documents and chats, the tiny preset cut down to one trait) through the chaos
proxy (tests/chaos_proxy.py) in front of the real llama.cpp server, at a 30% fault rate: 429s with
and without Retry-After, 500/503, hangs past the client timeout, connection resets and truncated
JSON. The run completes; every step has as many units done as the fault-free run; the server
answered each cached call exactly once (successful forwarded requests = cache entries: nothing
paid twice); and with one slot and greedy decoding the rows are the fault-free run's, byte for byte.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from chaos_proxy import ChaosProxy
from llama_server import MODEL_ALIAS

from traitforge.jsonl import iter_jsonl_dicts
from traitforge.pipeline import PRESETS_DIR, open_run, stage_generate

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# The client's timeout; a hang lasts longer, so it is always a timeout. Real answers of 64 tokens
# from a queue of at most CONCURRENCY take a few seconds on a busy 2-core CPU, far below this (6 s
# was too close once generation's prompts grew: a clean run lost a unit to timeouts at load 8).
TIMEOUT_S = 10.0
CONCURRENCY = 3

# The tiny preset with shorter outputs, one trait and no top-up rounds. The probe is off: the 135M
# model's verdicts drop every prompt there, and then the response and refine steps would not run.
SMALLER = {"list_max_tokens": 64, "concurrency": CONCURRENCY,
           "documents": {"max_tokens": 48, "topup_rounds": 0, "min_chars": 40},
           "chats": {"scenarios_per_trait": 2, "max_tokens": 48, "topup_rounds": 0, "probe_default": False}}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def generate(tmp_path: Path, name: str, base_url: str) -> tuple[Any, float]:
    """Run the generation stage in tmp_path/name against `base_url`; the Run and its cache size."""
    tiny = yaml.safe_load((PRESETS_DIR / "tiny.yaml").read_text())
    spec = {
        "traits": str(EXAMPLES / "traits.md"), "output_dir": str(tmp_path / name), "seed": 0, "max_traits": 1,
        "models": {"generator": {"model": f"openai:{MODEL_ALIAS}", "base_url": base_url, "temperature": 0,
                                 "timeout_s": TIMEOUT_S, "concurrency": CONCURRENCY, "max_retries": 12}},
        "generation": _merge(tiny["generation"], SMALLER),
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    run = open_run(path)
    stage_generate(run)
    return run, len(run.cache)


def rows(run: Any) -> dict[str, list[str]]:
    """Every generated file's rows (skips included), as canonical JSON sorted by id."""
    out = {}
    for f in sorted((run.store.root / "generated").glob("*.jsonl")):
        out[f.name] = sorted(json.dumps(d, sort_keys=True) for d in iter_jsonl_dicts(f))
    return out


def units_done(run: Any) -> dict[str, tuple[Any, Any]]:
    return {name: (info.get("counts", {}).get("done_units"), info.get("counts", {}).get("rows"))
            for name, info in run.store.manifest["stages"].items() if name.startswith(("documents", "chats"))}


@pytest.mark.slow
def test_tiny_generation_under_30pct_faults_matches_the_fault_free_run(llama_server, tmp_path):
    with ChaosProxy(llama_server, rate=0.0) as clean_proxy:
        clean, clean_cache = generate(tmp_path, "clean", clean_proxy.url)
        clean_counts = clean_proxy.counts()
    assert clean_counts["forwarded"] == clean_counts["forwarded_ok"] + clean_counts["lost_to_client"]
    assert clean_counts["forwarded_ok"] == clean_cache > 0

    with ChaosProxy(llama_server, rate=0.3, seed=7, hang_s=TIMEOUT_S + 1.5, retry_after="0.3") as proxy:
        chaos, chaos_cache = generate(tmp_path, "chaos", proxy.url)
        counts = proxy.counts()

    # Faults of every kind were injected, and the run still finished every step.
    assert counts["injected_total"] >= 0.15 * (counts["injected_total"] + counts["forwarded"]), counts
    assert len(counts["injected"]) >= 4, counts
    assert all(info["status"] == "done" for info in chaos.store.manifest["stages"].values())
    assert units_done(chaos) == units_done(clean)
    # Nothing paid twice: every answer the server gave is in the cache, once. (The one exception a
    # client cannot avoid: a real answer slower than the timeout; the proxy counts those apart.)
    assert counts["forwarded"] == counts["forwarded_ok"] + counts["lost_to_client"], counts
    assert counts["forwarded_ok"] == chaos_cache, counts
    assert chaos_cache == clean_cache
    # One slot, greedy: the same rows as without faults.
    assert rows(chaos) == rows(clean)
    assert any(rows(clean).values())


def test_samples_that_arrived_are_kept_when_a_sibling_sample_fails(tmp_path):
    """n samples from a backend without `n` are n calls; when one fails for good, the others were
    still paid for: they are cached, and the re-run asks only for the missing one."""
    import asyncio

    from traitforge.llm.cache import LLMCache
    from traitforge.llm.client import LLM
    from traitforge.llm.errors import BackendError
    from traitforge.llm.providers.scripted import ScriptedBackend

    seen = {"n": 0}

    def respond(messages, params):
        seen["n"] += 1
        if seen["n"] == 2:
            raise BackendError("scripted: the second sample fails")
        return f"sample {seen['n']}"

    cache = LLMCache(tmp_path / "c.sqlite")
    llm = LLM(ScriptedBackend(responses=respond), cache=cache, max_retries=0)
    with pytest.raises(BackendError, match="second sample fails"):
        asyncio.run(llm.generate("hi", n=3, max_tokens=64))
    assert len(cache) == 2 and seen["n"] == 3
    texts = asyncio.run(llm.generate("hi", n=3, max_tokens=64))
    assert seen["n"] == 4 and len(cache) == 3 and sorted(texts) == ["sample 1", "sample 3", "sample 4"]


def test_a_failed_make_up_call_does_not_resend_the_answers_already_received(tmp_path):
    """A server that ignores n gets make-up calls for the other samples; when one of them fails, the
    client's retry sends only that one again, not the first call (which was answered and paid for)."""
    import asyncio

    from fault_server import FaultServer

    from traitforge.llm.cache import LLMCache
    from traitforge.llm.client import LLM
    from traitforge.llm.providers.openai_compat import OpenAIBackend

    with FaultServer() as fs:
        fs.plan("fewer", "ok", "500", "fewer", "ok", "ok")  # 1 of 3 samples; make-ups: one ok, one fails
        llm = LLM(OpenAIBackend("m", base_url=fs.url + "/v1", timeout_s=5), cache=LLMCache(tmp_path / "c.sqlite"),
                  backoff_base_s=0.01, max_retries=3)

        async def run() -> list[str]:
            try:
                return await llm.generate("hi", n=3, max_tokens=8, seed=5)
            finally:
                await llm.aclose()

        texts = asyncio.run(run())
        bodies = [body for _, body in fs.requests]
    assert len(texts) == 3 and len(llm.cache) == 3
    assert len(bodies) == 4, [b.get("seed") for b in bodies]  # not 6: the first call is not sent again
    assert [b.get("n") for b in bodies] == [3, None, None, None]
    assert sorted(b["seed"] for b in bodies) == [5, 6, 6, 7] or sorted(b["seed"] for b in bodies) == [5, 6, 7, 7]
