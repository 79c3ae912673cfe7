"""Batch mode (generation.batch): a generation stage's requests go to the provider's batch API
(here a local fake of OpenAI's files+batches API, through the official SDK), the results fill the
cache, and the stage writes as many rows as a live run, with no live calls."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import fake_batch_server  # noqa: E402
from fake_batch_server import FakeBatchServer  # noqa: E402
from scripted_generator import good_responder, make_spec, make_traits, scripted_llm  # noqa: E402

from traitforge.pipeline import Run
from traitforge.config import ModelSpec  # noqa: E402
from traitforge.generate.documents import run_documents  # noqa: E402
from traitforge.jsonl import read_jsonl  # noqa: E402
from traitforge.llm.base import Message  # noqa: E402
from traitforge.llm.registry import make_llm  # noqa: E402
from traitforge.runstore import RunStore  # noqa: E402
from traitforge.types import Document  # noqa: E402


@pytest.fixture
def server(monkeypatch):
    # The fake answers like the scripted generator, so batch and live runs can be compared.
    monkeypatch.setattr(fake_batch_server, "reply_text", lambda messages, seed=None: good_responder(
        [Message(m["role"], m["content"]) for m in messages], None))
    with FakeBatchServer() as srv:
        yield srv


def test_documents_stage_in_batch_mode_matches_live_and_makes_no_live_calls(server, tmp_path):
    traits = make_traits(2)
    live_spec = make_spec(tmp_path / "live")
    run_documents(Run.of(RunStore(tmp_path / "live" / "run"), live_spec, traits, generator=scripted_llm()), live_spec.generation)
    live_docs = read_jsonl(tmp_path / "live" / "run" / "generated" / "documents.jsonl", Document)

    spec = make_spec(tmp_path / "batch", batch=True, batch_poll_s=0.02)
    store = RunStore(tmp_path / "batch" / "run")
    llm = make_llm(ModelSpec(model="openai:gpt-4o-mini", base_url=server.url + "/v1"),
                   cache=tmp_path / "batch" / "cache.sqlite")
    run_documents(Run.of(store, spec, traits, generator=llm), spec.generation)
    docs = read_jsonl(tmp_path / "batch" / "run" / "generated" / "documents.jsonl", Document)

    assert server.created, "no batch was submitted"
    assert server.live_calls == []
    # Same plan, same number of documents kept (texts carry prompt hashes, which differ by path).
    assert len(docs) == len(live_docs) > 0
    assert sorted(d.doc_type for d in docs) == sorted(d.doc_type for d in live_docs)
    # Every batch id went into the manifest, each collected.
    entries = [e for stage in store.manifest["batches"].values() for e in stage]
    assert len(entries) == len(server.created) and all(e["collected"] for e in entries)

    # A re-run is served from the cache: no new batches, no live calls.
    before = len(server.created)
    run_documents(Run.of(RunStore(tmp_path / "batch" / "run"), spec, traits, generator=make_llm(ModelSpec(model="openai:gpt-4o-mini", base_url=server.url + "/v1"),                            cache=tmp_path / "batch" / "cache.sqlite")), spec.generation)
    assert len(server.created) == before and server.live_calls == []
