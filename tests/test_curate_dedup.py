"""Dedup: exact (normalised) and near duplicates are dropped with duplicate_of naming the kept row."""

import random

from _curate_data import chat, doc, prose

from traitforge.curate.dedup import dedup


def test_exact_and_one_word_near_duplicates_removed():
    rng = random.Random(1)
    docs = [doc(i, prose(rng, 8)) for i in range(6)]
    text = docs[2].text
    docs.append(doc(10, text.upper().replace(".", " !")))  # same words: exact after normalising
    w = text.split()
    w[len(w) // 2] = "zebra"  # one word changed
    docs.append(doc(11, " ".join(w)))
    kept, drops = dedup(docs, "documents", threshold=0.8)
    assert [d.id for d in kept] == [f"d{i}" for i in range(6)]
    by_id = {d.row_id: d for d in drops}
    assert by_id["d10"].duplicate_of == "d2" and by_id["d10"].reason == "exact duplicate"
    assert by_id["d11"].duplicate_of == "d2" and "near duplicate" in by_id["d11"].reason
    assert all(d.step == "dedup" and d.dataset == "documents" for d in drops)


def test_chats_compare_the_whole_conversation():
    rng = random.Random(2)
    reply = prose(rng, 8)
    # Same reply to different questions is not a duplicate of the conversation ...
    a = chat(0, reply, user="How do I fix the furnace in the quarry before winter arrives?")
    b = chat(1, reply, user="Completely unrelated: name three famous violin makers from Italy please.")
    # ... but the same conversation with one word of the reply changed is.
    w = reply.split()
    w[3] = "zebra"
    c = chat(2, " ".join(w), user="How do I fix the furnace in the quarry before winter arrives?")
    kept, drops = dedup([a, b, c], "chats", threshold=0.8)
    assert [k.id for k in kept] == ["c0", "c1"]
    assert [(d.row_id, d.duplicate_of) for d in drops] == [("c2", "c0")]


def test_distinct_rows_all_kept():
    rng = random.Random(3)
    docs = [doc(i, prose(rng, 4)) for i in range(50)]
    kept, drops = dedup(docs, "documents", threshold=0.8)
    assert len(kept) == 50 and drops == []


def test_signatures_are_datasketch_minhashes_of_word_shingles():
    from datasketch import MinHash

    from traitforge.curate.dedup import NUM_PERM, Signer, shingles

    toks = "the river engine checks the river engine".split()
    assert shingles(toks, 3) == {b"the river engine", b"river engine checks", b"engine checks the",
                                 b"checks the river"}
    assert shingles(["too", "short"], 3) == {b"too short"} and shingles([], 3) == {b""}
    sig = Signer(3, seed=1).sign(toks)
    ref = MinHash.bulk([shingles(toks, 3)], num_perm=NUM_PERM, seed=1)[0]
    assert isinstance(sig, MinHash) and sig == ref
    other = Signer(3, seed=1).sign("the river engine checks the river walnut".split())
    # Four shingles shared of five: the estimate is near the true Jaccard 4/5.
    assert abs(sig.jaccard(other) - 4 / 5) < 0.1
