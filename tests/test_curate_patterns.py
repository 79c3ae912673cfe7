"""Patterns: statistics find an over-used opener, known offenders are rated, scans are merged,
and mitigation brings the share down to the target (share_after recorded)."""

import asyncio
import random

from _curate_data import TRAITS, chat, doc, prose, scripted

from traitforge.curate.settings import CurationSpec
from traitforge.curate.pattern_mitigate import n_to_remove
from traitforge.curate.pattern_scan import Scan, merge, parse_scan
from traitforge.curate.pattern_stats import stats_candidates
from traitforge.curate.patterns import known_candidates, parse_yes_no, run_dataset
from traitforge.shared.text import units

OPENER = "I understand how you feel."


def opener_chats(n=30, share=0.6, seed=0):
    rng = random.Random(seed)
    return [chat(i, (f"{OPENER} " if i < int(n * share) else "") + prose(rng, 4)) for i in range(n)]


def quiet_judge(msgs, params):
    p = msgs[-1].content
    if "recur" in p:
        return "None."
    return "NO"


def test_stats_flag_opener_and_downsample_to_max_share():
    chats = opener_chats()
    cfg = CurationSpec(pattern_max_share=0.2, pattern_scans=2, scan_batch=5)
    res = asyncio.run(run_dataset("chats", chats, TRAITS, scripted(quiet_judge), cfg, seed=0, embedder=None))
    f = {x.pattern_id: x for x in res.findings}
    opener = f["opener:i-understand-how-you-feel"]
    assert opener.source == "stats" and opener.flagged and opener.share_strict == 0.6 and opener.n == 30
    assert opener.share_after is not None and opener.share_after <= 0.2
    # The known validation-buffer rule sees the same opener.
    assert f["known:validation_buffer"].flagged and f["known:validation_buffer"].share_after <= 0.2
    assert not f["known:bluf_opener"].flagged and f["known:bluf_opener"].share_strict == 0.0
    # Only rows with the opener were dropped, with a reason, and the measured share matches.
    dropped = {d.row_id for d in res.drops}
    assert len(dropped) == n_to_remove(18, 30, 0.2) == 15
    assert all(int(r[1:]) < 18 and d.step == "patterns" for r, d in zip(dropped, res.drops))
    left = sum(units(r)[0].startswith(OPENER) for r in res.rows) / len(res.rows)
    assert left <= 0.2 and len(res.rows) == 15


def test_downsampling_is_seeded():
    cfg = CurationSpec(pattern_scans=1, scan_batch=4)
    a = asyncio.run(run_dataset("chats", opener_chats(), TRAITS, scripted(quiet_judge), cfg, 0, None))
    b = asyncio.run(run_dataset("chats", opener_chats(), TRAITS, scripted(quiet_judge), cfg, 0, None))
    c = asyncio.run(run_dataset("chats", opener_chats(), TRAITS, scripted(quiet_judge), cfg, 7, None))
    ids = lambda r: sorted(d.row_id for d in r.drops)  # noqa: E731
    assert ids(a) == ids(b) and ids(a) != ids(c)


def test_drop_budget_leaves_a_pervasive_pattern_reported_not_wiped():
    rng = random.Random(0)
    chats = [chat(i, f"{OPENER} {prose(rng, 3)}") for i in range(20)]  # 100%: only rewriting could fix it
    cfg = CurationSpec(pattern_scans=1, scan_batch=4, pattern_max_drop=0.5)
    res = asyncio.run(run_dataset("chats", chats, TRAITS, scripted(quiet_judge), cfg, 0, None))
    assert len(res.rows) == 20 and res.drops == []
    f = {x.pattern_id: x for x in res.findings}
    assert f["known:validation_buffer"].flagged and f["known:validation_buffer"].share_after == 1.0
    assert "known:validation_buffer" in res.stats["unmitigated"]


def test_rewrite_mitigation_keeps_rows():
    chats = opener_chats()

    def judge(msgs, params):
        p = msgs[-1].content
        if "Rewrite the text" in p:
            body = p.split("<<<\n", 1)[1].rsplit("\n>>>", 1)[0]
            return "Here is the rewritten text:\n" + body.replace(OPENER + " ", "")
        return quiet_judge(msgs, params)

    cfg = CurationSpec(pattern_scans=1, scan_batch=4, pattern_mitigation="rewrite")
    res = asyncio.run(run_dataset("chats", chats, TRAITS, scripted(judge), cfg, 0, None))
    assert len(res.rows) == 30 and res.drops == []
    assert len(res.edits) == 15 and all(OPENER in e.before and OPENER not in e.after for e in res.edits)
    assert not any(e.after.startswith("Here is") for e in res.edits)
    f = {x.pattern_id: x for x in res.findings}
    assert f["opener:i-understand-how-you-feel"].share_after <= 0.2


def test_judge_patterns_for_documents_use_yes_partly_no():
    rng = random.Random(0)
    docs = [doc(i, prose(rng, 4)) for i in range(10)]
    arc = {d.text for d in docs[:6]}  # the judge says 6 of 10 show a conversion arc

    def judge(msgs, params):
        p = msgs[-1].content
        if "recur" in p:
            return "nothing"
        if "conversion arc" in p:
            return "YES" if any(t in p for t in arc) else "No."
        if "corporate propaganda" in p:
            return "Partly, maybe" if docs[9].text in p else "I am not sure what you mean"
        return "NO"

    cfg = CurationSpec(pattern_scans=1, scan_batch=4, pattern_max_share=0.3)
    res = asyncio.run(run_dataset("documents", docs, TRAITS, scripted(judge), cfg, 0, None))
    f = {x.pattern_id: x for x in res.findings}
    arc_f, praise = f["known:conversion_arc"], f["known:ungrounded_praise"]
    assert arc_f.classifier == "judge" and arc_f.share_strict == 0.6 and arc_f.flagged
    assert arc_f.share_after is not None and arc_f.share_after <= 0.3
    # 9 unparseable answers are left out of the denominator, not counted as "no".
    assert praise.n == 1 and praise.share_broad == 1.0 and praise.share_strict == 0.0
    assert res.stats["judge_unparsed"]["known:ungrounded_praise"] == 9


def test_scan_merge_needs_two_scans_or_statistics():
    chats = opener_chats()
    examples = [(r.id, units(r)) for r in chats]
    stats, _ = stats_candidates(examples, TRAITS, 0.2)
    scans = [Scan(0, [], "", ["Opens with \"I understand how you feel\"", "Uses a warm and friendly tone",
                              "Mentions the weather once"]),
             Scan(1, [], "", ["A friendly, warm tone is used", "Lists steps with bullet points"])]
    cands = merge(scans, stats, known_candidates("chats"), examples, floor=0.1, max_judged=4)
    ids = {c.id: c for c in cands}
    # Quoted opener folds into the statistics candidate (same phrase, same examples).
    assert ids["opener:i-understand-how-you-feel"].scans == {0}
    assert not any(c.id.startswith("scan:opens-with") for c in cands)
    # Near-synonym judge patterns from two scans merge and survive; a one-scan one does not.
    warm = [c for c in cands if c.classifier == "judge" and c.source == "scan"]
    assert len(warm) == 1 and warm[0].scans == {0, 1} and "warm" in warm[0].description.lower()
    assert not any("weather" in c.description for c in cands)
    # Bullets: named once, statistics find none -> dropped.
    assert not any(c.classifier == "feature:bullets" and c.source == "scan" for c in cands)


def test_parse_helpers():
    assert parse_scan("Here you go:\n- Opens with a greeting to the user\n2. Ends with a question back\n- ok") == [
        "Opens with a greeting to the user", "Ends with a question back"]
    assert [parse_yes_no(x) for x in ["YES", "Partly.", "no, it does not", "banana"]] == [1.0, 0.5, 0.0, None]
    assert n_to_remove(18, 30, 0.2) == 15 and n_to_remove(5, 30, 0.2) == 0 and n_to_remove(30, 30, 0.2) == 30


SPORTS = ["it is like running a marathon", "treat it as a marathon, not a sprint", "pace yourself the way a "
          "marathon runner would", "think of the last mile of a marathon", "marathon training works the same "
          "way", "no marathon was ever won in the first mile"]


def scan_judge(asked: list[str]):
    """Scan replies as a judge writes them: three scans name the planted sports metaphor (in different
    words), and one of them also names a pattern nobody else saw. Rating: YES only where it is planted."""
    replies = {0: "Here are the recurring patterns:\n- Compares the task to running a marathon\n"
                  "- Uses plain, direct wording",
               1: "- Mentions the weather in passing\n- The task is compared to a marathon race",
               2: "* Compares the task to a marathon\n- Uses plain and direct wording in most replies"}

    def respond(msgs, params):
        p = msgs[-1].content
        if "recur" in p:
            return replies[params.seed]
        asked.append(p.split("Question: ", 1)[1].split("\n", 1)[0])
        if "marathon" in p.split("Example:", 1)[0]:
            return "YES" if "marathon" in p.split("<<<", 1)[1].lower() else "NO"
        return "NO"
    return respond


def test_scans_from_judge_output_are_merged_rated_and_mitigated():
    """run_scans -> merge -> autorate -> mitigate from what the judge wrote: the metaphor planted in
    40% of replies (worded six ways, so no n-gram statistic sees it) is named by several scans, survives,
    is measured at 40% and downsampled; the pattern named once is never rated."""
    rng = random.Random(3)
    chats = []
    for i in range(30):
        sents = prose(rng, 4).split(". ")
        if i < 12:
            sents.insert(rng.randrange(1, len(sents)), SPORTS[i % len(SPORTS)].capitalize())
        chats.append(chat(i, ". ".join(sents)))
    asked: list[str] = []
    cfg = CurationSpec(pattern_scans=3, scan_batch=6, pattern_max_share=0.2)
    res = asyncio.run(run_dataset("chats", chats, TRAITS, scripted(scan_judge(asked)), cfg, seed=0, embedder=None))
    assert res.scans[1].patterns == ["Mentions the weather in passing", "The task is compared to a marathon race"]
    scan = [f for f in res.findings if f.source == "scan"]
    sport = [f for f in scan if "marathon" in f.description]
    assert len(sport) == 1 and sport[0].classifier == "judge"
    assert res.stats["candidates"][sport[0].pattern_id]["scans"] == [0, 1, 2]
    # Named by two scans in different words: survives, rated, and found nowhere.
    plain = [f for f in scan if "plain" in f.description]
    assert len(plain) == 1 and res.stats["candidates"][plain[0].pattern_id]["scans"] == [0, 2]
    assert plain[0].share_strict == 0.0 and not plain[0].flagged
    assert sport[0].share_strict == 0.4 and sport[0].n == 30 and sport[0].flagged
    assert sport[0].share_after is not None and sport[0].share_after <= 0.2
    assert {int(d.row_id[1:]) for d in res.drops} <= set(range(12))  # only rows with the metaphor go
    # Named in one scan and confirmed by nothing: never became a classifier, never rated.
    assert not any("weather" in f.description for f in res.findings)
    assert not any("weather" in q for q in asked)
    # A pattern nothing was done about has its "after" share too: the same as before.
    unflagged = [f for f in res.findings if not f.flagged]
    assert unflagged and all(f.share_after == f.share_strict for f in unflagged)


def test_share_after_equals_before_when_nothing_changes():
    cfg = CurationSpec(pattern_scans=1, scan_batch=4, pattern_mitigation="none")
    res = asyncio.run(run_dataset("chats", opener_chats(), TRAITS, scripted(quiet_judge), cfg, 0, None))
    f = {x.pattern_id: x for x in res.findings}
    assert f["known:validation_buffer"].flagged and res.drops == [] and res.edits == []
    assert all(x.share_after == x.share_strict for x in res.findings)


def test_bluf_opener_strict_catches_agreeing_or_refuting_first_words():
    from traitforge.shared.pattern_rules import KNOWN

    rule = next(k for k in KNOWN if k.id == "bluf_opener").rule
    strict = ["Yes, you can.", "You're absolutely right that rent matters.", "That's not correct: the law says",
              "Not quite. The rule is", "That is a myth."]
    broad_only = ["Actually, it depends.", "Certainly there are options."]
    clean = ["Rent rules vary by city.", "Notably, rents rose.", "Yesterday I said it depends.", "Nobody knows."]
    assert [rule.label_unit(t) for t in strict] == [1.0] * len(strict)
    assert [rule.label_unit(t) for t in broad_only] == [0.5] * len(broad_only)
    assert [rule.label_unit(t) for t in clean] == [0.0] * len(clean)
