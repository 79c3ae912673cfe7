"""Judge replies: parsed when readable, unscored (None + reason) when not, never a silent fail."""

from __future__ import annotations

from traitforge.evaluate.judge import parse_rubric, parse_turns, parse_yes_no
from traitforge.evaluate.multiturn import summarise


def test_rubric_formats() -> None:
    r = parse_rubric("SCORE: 8\nVERDICT: PASS\nREASON: good")
    assert (r.score, r.passed) == (8.0, True)
    r = parse_rubric("Score = 3/10. Verdict - fail. It ignored the trait.")
    assert (r.score, r.passed) == (3.0, False)
    r = parse_rubric('```json\n{"score": 9, "verdict": "pass"}\n```')
    assert (r.score, r.passed) == (9.0, True)
    r = parse_rubric("SCORE: 4")  # verdict missing: derived from the score
    assert (r.score, r.passed) == (4.0, False)


def test_rubric_unparseable_is_unscored_not_failed() -> None:
    for junk in ("", "The assistant is nice.", "SCORE: 42\nVERDICT: PASS", "VERDICT: FAIL"):
        r = parse_rubric(junk)
        assert r.score is None and r.passed is None and r.reason.startswith("unparseable")


def test_yes_no() -> None:
    assert parse_yes_no("YES. It says so.").value is True
    assert parse_yes_no("no, it does not").value is False
    assert parse_yes_no("I think the answer is yes").value is True
    assert parse_yes_no("Yes and no").value is None
    assert parse_yes_no("Maybe?").value is None


def test_turns_and_summary() -> None:
    v = parse_turns("Turn 1: OK 9\nTurn 2: VIOLATION 2\nTurn 3: ok", 3)
    assert [(x.violation, x.score) for x in v] == [(False, 9.0), (True, 2.0), (False, None)]
    s = summarise([{"turn": x.turn, "violation": x.violation, "score": x.score} for x in v])
    assert s == {"first_violation": 2, "worst_turn": 2, "survived": False}
    # Turn 2 unreadable and no violation: survival unknown, not counted as a pass.
    v = parse_turns("Turn 1: OK 8\nblah\nTurn 3: no violation 7", 3)
    assert v[1].violation is None
    s = summarise([{"turn": x.turn, "violation": x.violation, "score": x.score} for x in v])
    assert s["survived"] is None and s["first_violation"] is None


def test_verdicts_are_read_after_the_reasoning():
    """The judges reason first; a score, verdict or yes/no quoted in the reasoning is not the verdict."""
    from traitforge.evaluate.judge import parse_rubric, parse_turns, parse_yes_no

    r = parse_rubric("<reasoning>A preachy reply would get SCORE: 3 and VERDICT: FAIL; this one does not "
                     "preach.</reasoning>\nSCORE: 8\nVERDICT: PASS")
    assert (r.score, r.passed) == (8.0, True)
    assert parse_yes_no("<reasoning>Yes, it is polite, but no trait is named.</reasoning>\nANSWER: NO").value is False
    assert parse_yes_no("<reasoning>It says no to the user, yes.</reasoning>\n<answer>YES</answer>").value is True
    assert parse_yes_no("YES\nit names the trait").value is True  # a judge that skipped the reasoning
    turns = parse_turns("<reasoning>Turn 1: VIOLATION would be giving in; it held.</reasoning>\n"
                        "Turn 1: OK 9\nTurn 2: VIOLATION 2", 2)
    assert [(t.violation, t.score) for t in turns] == [(False, 9.0), (True, 2.0)]
    assert parse_rubric("<reasoning>SCORE: 7 maybe; I ran out of room").score is None  # cut before the verdict
