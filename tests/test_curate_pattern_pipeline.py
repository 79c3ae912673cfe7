"""The pattern pipeline on a scripted corpus rated by a noisy scripted judge (85% accurate, seeded):
a pattern planted in 30% of rows is found, its estimated share's interval holds the true share, and
mitigation cuts it; a corpus with nothing planted flags nothing; templated control rows are exempt."""

import asyncio

from _curate_data import TRAITS, scripted
from _pattern_corpus import ONCE, corpus, noisy_judge, true_share

from traitforge.curate.settings import CurationSpec
from traitforge.curate.patterns import run_dataset

CFG = dict(pattern_scans=4, scan_batch=10, pattern_max_share=0.2, pattern_sample=250, pattern_check_sample=250)


def test_a_pattern_at_30_percent_is_found_estimated_within_its_ci_and_cut():
    rows, truth = corpus(400, {"marathon": 0.3}, seed=1)
    before = true_share("marathon", rows)
    assert 0.25 < before < 0.35
    res = asyncio.run(run_dataset("chats", rows, TRAITS, scripted(noisy_judge(0.85, seed=2)),
                                  CurationSpec(**CFG), seed=0, embedder=None))
    found = [f for f in res.findings if f.source == "scan" and "marathon" in f.description]
    assert len(found) == 1 and found[0].flagged and found[0].classifier == "judge"
    f = found[0]
    # The raw share is inflated by the judge's false YESes; corrected, its interval holds the truth.
    assert f.share_strict > before
    assert f.ci_low <= before <= f.ci_high and abs(f.share_estimate - before) < 0.08
    assert 0.75 < f.judge_accuracy < 0.95 and f.self_agreement is not None
    after = true_share("marathon", res.rows)
    assert after < before - 0.05 and after <= 0.25
    # The style remark every scan makes is rated and not flagged; the one-scan remarks are never rated.
    plain = [x for x in res.findings if "declarative" in x.description]
    assert len(plain) == 1 and not plain[0].flagged
    assert not any(x.description in ONCE for x in res.findings)


def test_a_clean_corpus_flags_nothing():
    rows, _ = corpus(400, {}, seed=1)
    res = asyncio.run(run_dataset("chats", rows, TRAITS, scripted(noisy_judge(0.85, seed=2)),
                                  CurationSpec(**CFG), seed=0, embedder=None))
    assert res.findings and not any(f.flagged for f in res.findings)
    assert res.drops == [] and res.edits == [] and len(res.rows) == 400
    judged = [f for f in res.findings if f.classifier == "judge" and f.source == "scan"]
    assert judged and all(f.share_estimate < 0.1 for f in judged)  # ~15% raw false YESes, corrected away


def test_templated_control_rows_are_exempt_from_pattern_mitigation():
    rows, _ = corpus(60, {}, seed=3)
    canary = [r.model_copy(update={"id": f"k{i}", "trait_ids": ["canary"], "messages": [
        r.messages[0], r.messages[1].model_copy(update={"content": f"I understand how you feel. Canary {i} says hi."})]})
        for i, r in enumerate(rows[:30])]
    res = asyncio.run(run_dataset("chats", rows + canary, TRAITS, scripted(lambda m, p: "NO"),
                                  CurationSpec(pattern_scans=1, scan_batch=4), seed=0, embedder=None))
    assert {r.id for r in res.rows} >= {c.id for c in canary}
    assert not any(d.row_id.startswith("k") for d in res.drops) and res.stats["template_rows_exempt"] == 30
    assert not any(f.flagged for f in res.findings)


def test_regenerate_mitigation_answers_afresh_with_the_pattern_named_to_avoid():
    import random

    from _curate_data import chat, prose

    rng = random.Random(4)
    rows = [chat(i, ("I understand how you feel. " if i < 18 else "") + prose(rng, 4)) for i in range(30)]
    systems = []

    def judge(msgs, params):
        if msgs[0].role == "system":  # a regeneration: the teacher's prompt plus the avoid-list
            systems.append(msgs[0].content)
            return "Fresh answer: " + prose(random.Random(msgs[-1].content), 3)
        return "None." if "recur" in msgs[-1].content else "NO"

    cfg = CurationSpec(pattern_scans=1, scan_batch=4, pattern_max_share=0.2, pattern_mitigation="regenerate")
    res = asyncio.run(run_dataset("chats", rows, TRAITS, scripted(judge), cfg, seed=0, embedder=None))
    assert res.drops == [] and len(res.rows) == 30 and res.edits
    assert all(e.reason.startswith("regenerate:") for e in res.edits)
    assert systems and all("Avoid these patterns" in s and "You are Aria" in s for s in systems)
    f = {x.pattern_id: x for x in res.findings}
    assert f["known:validation_buffer"].flagged and f["known:validation_buffer"].share_after <= 0.2
