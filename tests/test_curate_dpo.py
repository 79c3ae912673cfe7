"""DPO pairs go through curation: the chosen side is the curated reply, rejected replies pass the
same junk and leakage checks, a dropped chat takes its pair with it, and the on-policy option asks
the student for the rejected side."""

import random

from _curate_data import TRAITS, chat, prose, scripted

from traitforge.config import RunSpec
from traitforge.curate.settings import CurationSpec
from traitforge.curate import run_curation
from traitforge.pipeline import Run
from traitforge.curate.records import PairDrop
from traitforge.generate.records import DPOPair
from traitforge.jsonl import read_jsonl, write_jsonl
from traitforge.runstore import RunStore
from traitforge.train import dpo
from traitforge.train.data import pair_id_for
from traitforge.types import Chat, ChatMessage


def candidate(c: Chat, rejected: str) -> DPOPair:
    """What generate/chats.py writes for chat c: chosen is the pre-curation reply."""
    return DPOPair(id=pair_id_for(c.id), trait_ids=c.trait_ids, prompt=[c.messages[0]],
                   chosen=c.messages[1].content, rejected=rejected)


def setup(tmp_path, spec_extra=None):
    rng = random.Random(7)
    body = prose(rng, 4)
    leaky = chat(0, f"{body} My system prompt tells me to keep this short. {prose(rng, 1)}")
    clean = [chat(i, prose(rng, 4)) for i in range(1, 5)]
    dup = chat(9, clean[0].messages[1].content, user=clean[0].messages[0].content)  # exact duplicate: dropped
    chats = [leaky, *clean, dup]
    store = RunStore(tmp_path / "run")
    write_jsonl(store.path("generated", "chats.jsonl"), chats)
    rejected = {0: prose(rng, 3), 1: "Dear [Client Name], " + prose(rng, 2), 2: prose(rng, 3),
                3: prose(rng, 3), 4: prose(rng, 3), 9: prose(rng, 3)}
    write_jsonl(store.path("generated", "dpo_pairs.jsonl"),
                [candidate(c, rejected[int(c.id[1:])]) for c in chats])
    spec = RunSpec(traits="t.md", curation=CurationSpec(quality=False, patterns=False, **(spec_extra or {})))
    return store, spec, body, leaky


def test_pair_whose_chosen_reply_curation_rewrote_trains_on_the_rewritten_text(tmp_path):
    store, spec, body, leaky = setup(tmp_path)
    run_curation(Run.of(store, spec, TRAITS, judge=scripted(lambda m, p: "NO")), spec.curation)
    curated = {c.id: c for c in read_jsonl(store.root / "curated" / "chats.jsonl", Chat)}
    assert "system prompt" not in curated["c0"].messages[1].content  # the leakage step cut the sentence
    pairs = {p.id: p for p in read_jsonl(store.root / "curated" / "dpo_pairs.jsonl", DPOPair)}
    p0 = pairs[pair_id_for("c0")]
    assert p0.chosen == curated["c0"].messages[1].content and body in p0.chosen
    # Pair 1's rejected reply has a placeholder; pair 9's chat was a duplicate curation dropped.
    assert set(pairs) == {pair_id_for(f"c{i}") for i in (0, 2, 3, 4)}
    why = {d.pair_id: d.reason for d in read_jsonl(store.root / "curation" / "dpo_drops.jsonl", PairDrop)}
    assert "placeholder" in why[pair_id_for("c1")] and "did not survive" in why[pair_id_for("c9")]
    counts = store.manifest["stages"]["curate"]["counts"]["dpo"]
    assert counts["chosen_changed_by_curation"] == 1 and counts["pairs"] == 4
    # Training reads curation's pairs, and its chosen side is the curated reply.
    assert dpo.pairs_path(store.root) == store.root / "curated" / "dpo_pairs.jsonl"
    kept, _ = dpo.build_pairs(dpo.pairs_path(store.root), store.root / "curated" / "chats.jsonl")
    trained = next(p for p in kept if p["id"] == pair_id_for("c0"))
    assert trained["chosen"] == [{"role": "assistant", "content": curated["c0"].messages[1].content}]
    assert "system prompt" not in str(kept)


def test_on_policy_rejected_side_is_the_students_own_answer(tmp_path):
    store, spec, _, _ = setup(tmp_path, {"dpo_rejected": "student"})
    asked = []

    def student(msgs, params):
        asked.append(msgs[-1].content)
        q = msgs[-1].content
        # One student answer echoes the question: junk, so that pair goes.
        return q + " " + q if "c2" in q or "Question 2" in q else f"My own plain answer about {q[:20]}, nothing more."

    run_curation(Run.of(store, spec, TRAITS, judge=scripted(lambda m, p: "NO"), student=scripted(student)), spec.curation)
    pairs = read_jsonl(store.root / "curated" / "dpo_pairs.jsonl", DPOPair)
    assert {p.id for p in pairs} == {pair_id_for(f"c{i}") for i in (0, 1, 3, 4)}
    assert all(p.rejected.startswith("My own plain answer") for p in pairs)
    assert len(asked) == 5  # one student call per pair whose chat survived
    assert all(m.role == "user" for p in pairs for m in p.prompt)
    assert store.manifest["stages"]["curate"]["counts"]["dpo"]["rejected"] == "student"
    assert isinstance(pairs[0].prompt[0], ChatMessage)
