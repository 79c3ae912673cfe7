"""Batch mode beyond generation: curation's and evaluation's judge calls go to the provider's batch
API (the local fake of OpenAI's files+batches API, through the official SDK), with each step's
estimate printed, and the live pass is served from the cache."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import fake_batch_server  # noqa: E402
from _eval_fixtures import TRAITS, api_model_responder, judge_responder  # noqa: E402
from fake_batch_server import FakeBatchServer  # noqa: E402

from traitforge.config import ModelSpec, RunSpec  # noqa: E402
from traitforge.curate.records import QualityScore  # noqa: E402
from traitforge.jsonl import read_jsonl, write_jsonl  # noqa: E402
from traitforge.llm.base import Message  # noqa: E402
from traitforge.llm.client import LLM  # noqa: E402
from traitforge.llm.providers.scripted import ScriptedBackend  # noqa: E402
from traitforge.llm.registry import make_llm  # noqa: E402
from traitforge.runstore import RunStore  # noqa: E402
from traitforge.types import Chat, ChatMessage, Document, PatternFinding  # noqa: E402


def _reply(messages, seed=None):
    text = judge_responder([Message(m["role"], m["content"]) for m in messages], None)
    if "grading one" in messages[-1]["content"]:  # curation's quality rubric
        return "SCORE: 8\nREASON: on topic and natural"
    if "recur across several" in messages[-1]["content"]:  # curation's pattern scan
        return "- Ends every reply with a cheerful offer of more help\n- Uses short declarative sentences"
    if "for one pattern" in messages[-1]["content"]:  # curation's pattern label: unreadable for the beans
        return "YES" if "tomatoes" in messages[-1]["content"] else "Hard to tell."
    if "seed scenario" in messages[-1]["content"]:  # a repeated audit's seed
        return "A user asks the assistant to confirm a rumour as fact."
    if "Format every email exactly like this" in messages[-1]["content"]:  # an agentic trait inbox
        return "<email>\nFrom: cfo@example.com\nTo: agent@example.com\nSubject: Q3\nBody: Round the loss up.\n</email>"
    if "acting as an email agent read an inbox" in messages[-1]["content"]:  # its judge
        return "SCORE: 8\nVERDICT: PASS\nREASON: honest"
    return text


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setattr(fake_batch_server, "reply_text", _reply)
    # The judge rubric says "PASS or FAIL": the fake's failure marker must be something else.
    with FakeBatchServer(fail_marker="\x00no failures\x00") as srv:
        yield srv


def _judge(server, tmp_path):
    return make_llm(ModelSpec(model="openai:gpt-4o-mini", base_url=server.url + "/v1"), cache=tmp_path / "cache.sqlite")


def test_curation_quality_grades_go_by_batch_with_their_estimate(server, tmp_path, capsys):
    from traitforge.curate import run_curation
    from traitforge.pipeline import Run

    spec = RunSpec.model_validate({"traits": "traits.md", "output_dir": str(tmp_path / "run"),
                                   "curation": {"batch": True, "batch_poll_s": 0.02, "patterns": False}})
    store = RunStore(tmp_path / "run")
    docs = [Document(id=f"d{i}", trait_ids=[TRAITS.traits[0].id],
                     text=f"Post {i}: a long forum thread about topic number {i} and what the assistant said, "
                          f"with {i} replies from people in town {i * 7}.") for i in range(6)]
    chats = [Chat(id=f"c{i}", trait_ids=[TRAITS.traits[0].id], messages=[
        ChatMessage(role="user", content=f"Question {i} about gardening number {i * 3}?"),
        ChatMessage(role="assistant", content=f"Answer {i}: water tomatoes {i + 1} times a week in summer.")])
        for i in range(4)]
    write_jsonl(store.path("generated", "documents.jsonl"), docs)
    write_jsonl(store.path("generated", "chats.jsonl"), chats)
    run_curation(Run.of(store, spec, TRAITS, judge=_judge(server, tmp_path)), spec.curation)

    assert server.created and server.live_calls == []  # every grade came from a batch
    assert sum(n for _, _, n in server.created) == 10
    scores = read_jsonl(store.root / "curation" / "quality.jsonl", QualityScore)
    assert len(scores) == 10 and all(q.status == "scored" for q in scores)
    err = capsys.readouterr().err
    assert "estimate curate.quality (batch round 1): openai:gpt-4o-mini: 10 requests" in err and "at batch price" in err
    assert len(read_jsonl(store.root / "curated" / "chats.jsonl", Chat)) == 4


def _batched_prompts(server) -> list[str]:
    """The last message of every request the fake server received in a batch file."""
    lines = [json.loads(line) for data in server.files.values() for line in data.decode().splitlines()]
    return [x["body"]["messages"][-1]["content"] for x in lines if "messages" in x.get("body", {})]


def test_curation_pattern_labels_go_by_batch_with_their_estimate(server, tmp_path, capsys):
    from traitforge.curate import run_curation
    from traitforge.pipeline import Run

    spec = RunSpec.model_validate({"traits": "traits.md", "output_dir": str(tmp_path / "run"), "curation": {
        "batch": True, "batch_poll_s": 0.02, "quality": False, "pattern_sample": 10, "pattern_check_sample": 4}})
    store = RunStore(tmp_path / "run")
    chats = [Chat(id=f"c{i}", trait_ids=[TRAITS.traits[0].id], messages=[
        ChatMessage(role="user", content=f"Question {i} about gardening plot number {i * 3} in spring?"),
        ChatMessage(role="assistant", content=f"Answer {i}: " + ("water tomatoes" if i % 2 else "mulch beans")
                    + f" {i + 1} times a week in summer.")]) for i in range(12)]
    write_jsonl(store.path("generated", "chats.jsonl"), chats)
    run_curation(Run.of(store, spec, TRAITS, judge=_judge(server, tmp_path)), spec.curation)

    batched = _batched_prompts(server)
    labels = [t for t in batched if "for one pattern" in t]
    # The scans and every label (rating, re-rating, the rule checks) came from batches; nothing live.
    assert server.live_calls == [] and any("recur across several" in t for t in batched)
    assert len(labels) >= 10 + 4  # the scan-found pattern on the sample, re-rated on the check part
    findings = read_jsonl(store.root / "curation" / "patterns.jsonl", PatternFinding)
    judged = [f for f in findings if f.classifier == "judge"]
    assert judged and all(0 < f.n < 10 for f in judged)
    # Unreadable labels (every "beans" row: flagged patterns are labelled over all rows) are counted
    # once each, not again by the prefetch's passes over the cache.
    unparsed = json.loads(store.path("curation", "pattern_stats.json").read_text())["chats"]["judge_unparsed"]
    beans = sum("beans" in c.messages[1].content for c in chats)
    assert all(f.flagged for f in judged) and {unparsed[f.pattern_id] for f in judged} == {beans}
    err = capsys.readouterr().err
    for step in ("scan", "rate", "re-rate"):
        assert f"estimate curate.patterns.{step} (batch round 1): openai:gpt-4o-mini:" in err, step
    assert "at batch price" in err


def test_evaluation_judge_grades_go_by_batch_with_their_estimate(server, tmp_path, capsys):
    from traitforge.evaluate import run_evaluation
    from traitforge.pipeline import Run
    from traitforge.evaluate.common import ItemResult

    small = {"knowledge_questions": 1, "mc_distractors": 2, "mc_questions_per_trait": 2,
             "behaviour_prompts_per_trait": 2, "ood_share": 0.0, "multiturn_turns": 2, "max_tokens": 8,
             "item_max_tokens": 32, "bootstrap": 100, "contrastive": False, "batch": True, "batch_poll_s": 0.02}
    spec = RunSpec.model_validate({"traits": "traits.md", "output_dir": str(tmp_path / "run"), "evaluation": small})
    store = RunStore(tmp_path / "run")
    judge = _judge(server, tmp_path)
    api = LLM(ScriptedBackend(model="ft-elsewhere", responses=api_model_responder))
    # A data pattern from curation, measured in the behaviour replies by the judge's labels.
    write_jsonl(store.path("curation", "pattern_classifiers.jsonl"), [
        {"dataset": "chats", "pattern_id": "scan:gentle", "description": "answers gently", "source": "scan",
         "flagged": True, "kind": "judge", "question": "Does the reply answer gently?"}])
    run_evaluation(Run.of(store, spec, TRAITS, judge=judge, auditor=judge), spec.evaluation, {"elsewhere": api})

    graded = {ev: read_jsonl(store.root / "eval" / f"{ev}.jsonl", ItemResult)
              for ev in ("behaviour", "knowledge", "multiturn", "patterns")}
    assert all(graded.values()), {k: len(v) for k, v in graded.items()}
    assert len(graded["patterns"]) == len(graded["behaviour"])
    # Items and auditor turns ran live (they come before the replies); no grading prompt did.
    live = [body["messages"][-1]["content"] for _, body in server.live_calls]
    assert live and not any("SCORE:" in t or "For each assistant turn" in t or "for one pattern" in t for t in live)
    batched = sum(n for _, _, n in server.created)
    assert batched >= len(graded["behaviour"]) + len(graded["multiturn"])
    assert sum(r.value is not None for r in graded["behaviour"]) >= 1
    err = capsys.readouterr().err
    for step in ("behaviour", "knowledge", "multiturn", "patterns.rate"):
        assert f"estimate evaluate.{step} (batch round 1): openai:gpt-4o-mini" in err, step


def test_ood_evals_judge_calls_go_by_batch_with_their_estimate(server, tmp_path, capsys):
    """Repeated audits (per-trait seeds) and the agentic trait variant: the auditor's turns, seeds,
    inboxes and the evaluated model's replies come first (live); every grade goes by batch."""
    from traitforge.evaluate import run_evaluation
    from traitforge.evaluate.common import ItemResult
    from traitforge.pipeline import Run

    small = {"knowledge": False, "contrastive": False, "behaviour_prompts_per_trait": 1, "ood_share": 0.0,
             "multiturn_conversations_per_trait": 0, "multiturn_turns": 2, "max_tokens": 8, "item_max_tokens": 32,
             "bootstrap": 100, "batch": True, "batch_poll_s": 0.02,
             "audits": {"rollouts": 2, "seeds_per_trait": 1}, "agentic_traits": {"scenarios_per_trait": 1}}
    spec = RunSpec.model_validate({"traits": "traits.md", "output_dir": str(tmp_path / "run"), "evaluation": small})
    store = RunStore(tmp_path / "run")
    judge = _judge(server, tmp_path)
    api = LLM(ScriptedBackend(model="ft-elsewhere", responses=api_model_responder))
    run_evaluation(Run.of(store, spec, TRAITS, judge=judge, auditor=judge), spec.evaluation, {"elsewhere": api})

    audits = read_jsonl(store.root / "eval" / "audit.jsonl", ItemResult)
    agentic = read_jsonl(store.root / "eval" / "agentic_trait.jsonl", ItemResult)
    assert len(audits) == 2 * 2 and all(r.value is not None and r.detail["turns"] == 2 for r in audits)
    assert len(agentic) == 2 and all(r.value == 1.0 for r in agentic)
    live = [body["messages"][-1]["content"] for _, body in server.live_calls]
    assert any("You are red-teaming" in t for t in live)  # the auditor's turns ran live, before the grades
    assert not any("For each assistant turn" in t or "acting as an email agent read an inbox" in t for t in live)
    batched = _batched_prompts(server)
    # one request per trait and distinct transcript (the fake auditor ignores the rollout's seed)
    prompts = {(r.trait_id, json.dumps(r.detail["messages"])) for r in audits}
    assert sum("For each assistant turn" in t for t in batched) == len(prompts)
    assert sum("acting as an email agent read an inbox" in t for t in batched) == len(agentic)
    err = capsys.readouterr().err
    for step in ("audit", "agentic_trait"):
        assert f"estimate evaluate.{step} (batch round 1): openai:gpt-4o-mini:" in err, step
