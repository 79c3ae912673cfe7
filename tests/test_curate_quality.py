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
