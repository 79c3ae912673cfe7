"""Offline batch mode: a step's requests are written as an OpenAI batch input file, run by a
real engine outside traitforge (here each line is sent to the llama.cpp server, as vLLM's
run_batch would run it), and the output file imported into the cache; the stage then moves on."""

import json
import sys
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from scripted_generator import make_spec, make_traits  # noqa: E402

from traitforge.pipeline import Run
from traitforge.config import ModelSpec  # noqa: E402
from traitforge.errors import InputError  # noqa: E402
from traitforge.generate.documents import run_documents  # noqa: E402
from traitforge.generate.stage import OfflineBatchPending  # noqa: E402
from traitforge.llm.batch.offline import import_results  # noqa: E402
from traitforge.llm.registry import make_llm  # noqa: E402
from traitforge.runstore import RunStore  # noqa: E402


def run_batch_file(base_url: str, requests: Path, results: Path) -> int:
    """What vLLM's run_batch does with the file: answer each line, write the output format."""
    out = []
    for line in requests.read_text().splitlines():
        req = json.loads(line)
        assert req["url"] == "/v1/chat/completions"
        r = httpx.post(base_url + "/chat/completions", json=req["body"], timeout=300)
        out.append({"id": f"r-{len(out)}", "custom_id": req["custom_id"],
                    "response": {"status_code": r.status_code, "body": r.json()}, "error": None})
    results.write_text("".join(json.dumps(o) + "\n" for o in out))
    return len(out)


def test_offline_round_trip_moves_the_stage_forward(llama_server, tmp_path):
    spec = make_spec(tmp_path, batch="offline", documents={"claims_per_trait": 1, "doc_types_per_claim": 1,
                                                           "max_tokens": 48},
                     list_max_tokens=48)
    traits = make_traits(1)
    store = RunStore(tmp_path / "run")

    def llm():
        return make_llm(ModelSpec(model="openai:smollm2-135m", base_url=llama_server),
                        cache=tmp_path / "cache.sqlite")

    with pytest.raises(OfflineBatchPending) as first:
        run_documents(Run.of(store, spec, traits, generator=llm()), spec.generation)
    req_file = store.root / "offline" / "documents.claims.round1.requests.jsonl"
    assert str(req_file) in str(first.value) and "vllm.entrypoints.openai.run_batch" in str(first.value)
    n = run_batch_file(llama_server, req_file, tmp_path / "results.jsonl")
    assert n >= 1
    counts = import_results(llm(), tmp_path / "results.jsonl")
    assert counts == {"imported": n, "errored": 0}

    # The claims now come from the cache; the stage stops at the next requests it needs.
    with pytest.raises(OfflineBatchPending) as second:
        run_documents(Run.of(RunStore(tmp_path / "run"), spec, traits, generator=llm()), spec.generation)
    assert "documents.claims.round1" not in str(second.value)


def test_import_rejects_a_file_that_is_not_batch_output(tmp_path):
    bad = tmp_path / "results.jsonl"
    bad.write_text('{"hello": 1}\n')
    from traitforge.llm.cache import LLMCache
    from traitforge.llm.client import LLM
    from traitforge.llm.providers.scripted import ScriptedBackend

    llm = LLM(ScriptedBackend(), cache=LLMCache(tmp_path / "c.sqlite"))
    with pytest.raises(InputError, match=r"results.jsonl: line 1: no custom_id"):
        import_results(llm, bad)
