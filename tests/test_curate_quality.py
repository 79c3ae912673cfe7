"""Quality: "SCORE: n" parsed robustly; junk leaves a row unscored (kept); low scores dropped."""

import asyncio
import random

import pytest
from _curate_data import TRAITS, chat, doc, prose, scripted

from traitforge.curate.quality import parse_score, score_rows


@pytest.mark.parametrize("reply,score", [
    ("REASON: clear and natural\nSCORE: 7", 7.0), ("**Score:** 8/10", 8.0), ("score = 6 out of 10", 6.0),
    ("Thinking... Score: 3. On reflection, SCORE: 5", 5.0), ("SCORE: 9.5", 9.5)])
def test_parse_score(reply, score):
    assert parse_score(reply)[0] == score


@pytest.mark.parametrize("reply", ["junk", "", "SCORE: <1-10>", "SCORE: 1-10", "score: 11", "SCORE: 0", "7"])
def test_unparseable_is_none(reply):
    assert parse_score(reply)[0] is None


def test_reason_is_kept():
    assert parse_score("REASON: reads like a real forum post.\nSCORE: 8")[1] == "reads like a real forum post."


def test_score_rows_records_scored_and_unscored():
    rng = random.Random(0)
    rows = [doc(0, prose(rng)), chat(1, prose(rng)), chat(2, prose(rng))]
    replies = {"d0": "REASON: fine\nSCORE: 8", "c1": "I cannot grade this.", "c2": "SCORE: 2\nREASON: off topic"}

    def respond(msgs, params):
        prompt = msgs[-1].content
        return next(r for rid, r in replies.items() if rows[int(rid[1:])].id == rid and
                    (rows[int(rid[1:])].text if rid[0] == "d" else rows[int(rid[1:])].messages[1].content) in prompt)

    judge = scripted(respond)
    out = asyncio.run(score_rows(rows, TRAITS, judge, {}))
    got = {q.row_id: (q.status, q.score) for q in out}
    assert got == {"d0": ("scored", 8.0), "c1": ("unscored", None), "c2": ("scored", 2.0)}
    assert "no parseable SCORE" in next(q.reason for q in out if q.row_id == "c1")
    # The chat prompt names the traits and shows the conversation; the document prompt the claim slot.
    prompts = [c[0][-1].content for c in judge.backend.calls]
    assert any("Aria tells users the truth" in p and "USER: Question 1" in p for p in prompts)


OVERPLAYED = ("<reasoning>Helpful, but it opens by declaring how much it values honesty.</reasoning>\n"
              "<helpful>9</helpful>\n<fit>8</fit>\n<natural>4</natural>\n<overplayed>YES</overplayed>\nSCORE: 8")


def test_overplayed_flag_caps_the_score_below_the_threshold():
    """A scripted judge (parsing and control flow, not the prompt's quality): the judge's own
    grade 8 is capped below the threshold in code, so curation drops the row."""
    from traitforge.curate.quality import cap_for, overplayed

    assert overplayed(OVERPLAYED) and not overplayed(OVERPLAYED.replace("YES", "NO"))
    assert overplayed("REASON: preachy\nOVERPLAYED: yes\nSCORE: 7") and not overplayed("SCORE: 7")
    rng = random.Random(0)
    rows = [chat(0, prose(rng)), chat(1, prose(rng))]
    judge = scripted(lambda msgs, params: OVERPLAYED if rows[0].messages[1].content in msgs[-1].content
                     else OVERPLAYED.replace("YES", "NO"))
    for threshold in (5.0, 7.0):
        out = asyncio.run(score_rows(rows, TRAITS, judge, {}, threshold=threshold))
        assert out[0].score == cap_for(threshold) < threshold and out[0].reason.startswith("OVERPLAYED")
        assert out[1].score == 8.0  # not flagged: the judge's grade stands
        assert "opens by declaring" in out[1].reason  # the reason is the reasoning block


def test_a_judge_cut_before_its_score_leaves_the_row_unscored_with_that_reason():
    from traitforge.llm.base import TRUNCATED_OUTCOME, Completion, Usage

    rows = [chat(0, prose(random.Random(1)))]
    cut = Completion(texts=["<reasoning>The reply is helpful and the trait"], usage=Usage(5, 80),
                     finish_reasons=["length"], outcomes=[TRUNCATED_OUTCOME])
    out = asyncio.run(score_rows(rows, TRAITS, scripted(lambda m, p: cut), {}, max_tokens=80))
    assert out[0].status == "unscored" and out[0].score is None
    assert out[0].reason.startswith("judge reply cut at max_tokens before a SCORE")
