"""The side-by-side capability eval: prompts loaded, verdicts parsed, the two orders combined (a
judge that always prefers position A cancels to exactly 50%, one that prefers the checkpoint gives
100%), unscored replies kept out of the rate, and the eval on the evaluation's step engine with
scripted models."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from _eval_fixtures import TRAITS

from traitforge.config import RunSpec
from traitforge.errors import InputError
from traitforge.evaluate import eval_context
from traitforge.evaluate.common import ItemResult, eval_path
from traitforge.evaluate.side_by_side import (DEFAULT_FILE, LOSS, TIE, WIN, SideBySideSpec, combine, compare,
                                              load_prompts, parse_verdict, side_by_side_eval, side_by_side_results,
                                              side_by_side_section)
from traitforge.jsonl import read_jsonl
from traitforge.llm.client import LLM
from traitforge.llm.errors import Refused
from traitforge.llm.providers.scripted import ScriptedBackend
from traitforge.pipeline import Run
from traitforge.report.judged import render_side_by_side
from traitforge.runstore import RunStore


def _answers(msgs) -> tuple[str, str]:
    text = msgs[-1].content
    a = text.split("Answer A:", 1)[1].split("Answer B:", 1)[0]
    b = text.split("Answer B:", 1)[1]
    return a, b


def prefers_a(msgs, params) -> str:
    return "Both answers are fine; the first reads well.\nVERDICT: A"


def prefers_checkpoint(msgs, params) -> str:
    a, _ = _answers(msgs)
    return "The answer from the trained one is better.\nVERDICT: " + ("A" if "TRAINED" in a else "B")


def base_model(msgs, params) -> str:
    return "BASE reply to: " + msgs[-1].content[:40]


def trained_model(msgs, params) -> str:
    return "TRAINED reply to: " + msgs[-1].content[:40]


def test_the_shipped_prompts_are_everyday_and_load(tmp_path: Path) -> None:
    prompts, source = load_prompts()
    assert 55 <= len(prompts) <= 70 and source == "package everyday prompts"
    assert len({p.id for p in prompts}) == len(prompts) and all(len(p.text) > 15 for p in prompts)
    assert load_prompts(n=5)[0] == prompts[:5]
    user = tmp_path / "mine.jsonl"
    user.write_text('{"id": "q1", "prompt": "How do I fold a fitted sheet?"}\n{"text": "Name a prime."}\n')
    got, src = load_prompts(str(user))
    assert [p.id for p in got][0] == "q1" and got[1].text == "Name a prime." and src == str(user)
    user.write_text('{"id": "q1"}\n')
    with pytest.raises(InputError, match=r"mine.jsonl:1: needs a non-empty 'prompt'"):
        load_prompts(str(user))
    with pytest.raises(InputError, match="generic_heldout needs the generic-prompts step's held-out share"):
        load_prompts("generic_heldout", run_dir=tmp_path)
    assert DEFAULT_FILE.suffix == ".txt"  # packaged with the other *.txt data


def test_verdicts_parsed_after_reasoning_and_orders_combined() -> None:
    assert parse_verdict("A is longer but B is right.\nVERDICT: B") == ("B", "")
    assert parse_verdict("verdict: a ... on reflection\nVerdict: tie")[0] == "tie"
    assert parse_verdict('{"reasoning": "x", "verdict": "A"}')[0] == "A"
    assert parse_verdict("thinking...\nB")[0] == "B"
    assert parse_verdict("")[0] is None and parse_verdict("")[1] == "empty judge reply"
    assert parse_verdict("I cannot decide between them.")[1].startswith("unparseable judge reply")
    assert combine("A", "B") == WIN and combine("B", "A") == LOSS  # consistent preferences
    assert combine("A", "A") == TIE and combine("B", "B") == TIE  # followed the position: a tie
    assert combine("A", "tie") == WIN and combine("tie", "A") == LOSS and combine("tie", "tie") == TIE


def test_position_bias_cancels_and_a_real_preference_shows() -> None:
    judge = LLM(ScriptedBackend(model="judge", responses=prefers_a))
    c = asyncio.run(compare(judge, "How do I boil an egg?", "TRAINED: 7 minutes", "BASE: 10 minutes"))
    assert c.outcome == TIE and c.verdicts == ("A", "A") and c.value == 0.5
    judge = LLM(ScriptedBackend(model="judge2", responses=prefers_checkpoint))
    c = asyncio.run(compare(judge, "How do I boil an egg?", "TRAINED: 7 minutes", "BASE: 10 minutes"))
    assert c.outcome == WIN and c.verdicts == ("A", "B")

    def refuses(msgs, params):
        raise Refused("judge", "refused", "policy")

    c = asyncio.run(compare(LLM(ScriptedBackend(model="judge3", responses=refuses)), "q", "x", "y"))
    assert c.outcome is None and c.value is None and "judge refused: policy" in c.reason


def _run_eval(tmp_path: Path, judge_fn, n: int = 12) -> dict:
    spec = RunSpec.model_validate({"traits": "traits.md", "output_dir": str(tmp_path / "run"),
                                   "evaluation": {"bootstrap": 200}})
    judge = LLM(ScriptedBackend(model="judge", responses=judge_fn))
    cks = {"base": LLM(ScriptedBackend(model="base", responses=base_model)),
           "sft": LLM(ScriptedBackend(model="trained", responses=trained_model))}
    store = RunStore(tmp_path / "run")
    run = Run.of(store, spec, TRAITS, judge=judge, auditor=judge)
    sbs = SideBySideSpec(n=n)
    prompts, _ = load_prompts(n=sbs.n)
    with run.stage("evaluate") as st:
        ctx = eval_context(run, spec.evaluation, cks)
        st.run(side_by_side_eval(ctx, sbs, prompts).run())
    rows = read_jsonl(eval_path(store, "side_by_side"), ItemResult)
    section = side_by_side_section(rows, ["base", "sft"], boot=200)
    assert side_by_side_results(store, ["base", "sft"], boot=200) == section
    return {"rows": rows, "section": section}


def test_a_judge_that_always_prefers_position_a_gives_exactly_50(tmp_path: Path) -> None:
    got = _run_eval(tmp_path, prefers_a)
    rows, sec = got["rows"], got["section"]
    assert len(rows) == 12 and {r.checkpoint for r in rows} == {"sft"}  # the reference is not compared with itself
    f = sec["by_checkpoint"]["sft"]
    assert f["win_rate"]["value"] == 0.5 and f["win_rate"]["n"] == 12
    assert f["win_rate"]["ci_low"] == 0.5 and f["win_rate"]["ci_high"] == 0.5
    assert (f["wins"], f["ties"], f["losses"], f["position_ties"]) == (0, 12, 0, 12)
    r = rows[0]
    assert r.detail["answer"].startswith("TRAINED") and r.detail["reference_answer"].startswith("BASE")
    assert r.detail["verdicts"] == {"checkpoint_as_A": "A", "checkpoint_as_B": "A"}
    assert sec["reference"] == "base"
    html = render_side_by_side(sec)
    assert "Side-by-side against base" in html and "50%" in html and "n=12" in html


def test_a_judge_that_prefers_the_checkpoint_gives_100_and_unscored_stay_out(tmp_path: Path) -> None:
    calls = {"n": 0}

    def mostly_prefers_checkpoint(msgs, params):
        calls["n"] += 1
        if "egg" in msgs[-1].content:  # one prompt's verdicts are unreadable
            return "Hard to say."
        return prefers_checkpoint(msgs, params)

    got = _run_eval(tmp_path, mostly_prefers_checkpoint, n=62)
    f = got["section"]["by_checkpoint"]["sft"]
    assert f["win_rate"]["value"] == 1.0 and f["wins"] == f["win_rate"]["n"]
    assert f["unscored"] == 1 and f["win_rate"]["n"] == 61
    assert "unparseable judge reply" in f["unscored_reasons"][0]
    # Resumable: a second pass makes no new judge calls and adds no rows.
    before, n_calls = len(got["rows"]), calls["n"]
    again = _run_eval(tmp_path, mostly_prefers_checkpoint, n=62)
    assert len(again["rows"]) == before and json.dumps(again["section"]) == json.dumps(got["section"])
    assert calls["n"] == n_calls  # every prompt has its row, the unscored one included


class _ScoresA:
    """A scorer whose judge always likes the line "VERDICT: A" best (a position-following judge)."""

    def __init__(self) -> None:
        self.requests: list = []

    def score(self, reqs):
        from traitforge.shared.logprob import LogProb

        self.requests += reqs
        return [LogProb(-1.0 if cont.endswith(": A") else -5.0, 3) for _, cont in reqs]


def test_logprob_verdicts_score_the_three_lines_in_both_orders_and_the_swap_cancels_position() -> None:
    from traitforge.evaluate.side_by_side import compare_by_logprob

    scorer = _ScoresA()
    c = asyncio.run(compare_by_logprob(scorer, "How do I boil an egg?", "TRAINED: 7 minutes", "BASE: 10 minutes"))
    assert c.verdicts == ("A", "A") and c.outcome == TIE and c.value == 0.5
    assert [cont for _, cont in scorer.requests] == ["VERDICT: A", "VERDICT: B", "VERDICT: tie"] * 2
    first, second = scorer.requests[0][0], scorer.requests[3][0]
    assert first.index("TRAINED") < first.index("BASE") and second.index("BASE") < second.index("TRAINED")
    assert json.loads(c.replies[0]) == {"A": -1.0, "B": -5.0, "tie": -5.0}  # kept in the row's judge_replies


class _LeansAButLikesTrained(_ScoresA):
    """Always likes "VERDICT: A" best, by 4 nats, but 1 nat less when the TRAINED answer is B."""

    def score(self, reqs):
        from traitforge.shared.logprob import LogProb

        self.requests += reqs
        out = []
        for msgs, cont in reqs:
            text = msgs if isinstance(msgs, str) else str(msgs)
            trained_is_a = text.index("TRAINED") < text.index("BASE")
            a = -1.0 if trained_is_a else -2.0
            out.append(LogProb(a if cont.endswith(": A") else -5.0, 3))
        return out


def test_logprob_outcome_is_the_position_debiased_margin() -> None:
    """A judge whose likeliest line is always "A" (so both text verdicts would be a position tie)
    still leans to the trained answer once its lean to position A cancels: margin (4) + (-3) = 1."""
    from traitforge.evaluate.side_by_side import compare_by_logprob, debiased_margin

    c = asyncio.run(compare_by_logprob(_LeansAButLikesTrained(), "Boil an egg?", "TRAINED: 7 minutes", "BASE: 10"))
    assert c.verdicts == ("A", "A") and c.margin == 1.0 and c.outcome == WIN and c.value == 1.0
    c = asyncio.run(compare_by_logprob(_LeansAButLikesTrained(), "Boil an egg?", "BASE: 10", "TRAINED: 7 minutes"))
    assert c.margin == -1.0 and c.outcome == LOSS
    assert debiased_margin({"A": -1, "B": -3}, {"A": -1, "B": -3}) == 0  # pure position lean: a tie


def test_logprob_verdicts_need_a_local_judge_and_say_which_field(tmp_path: Path) -> None:
    from traitforge.evaluate.side_by_side import local_judge_scorer

    with pytest.raises(InputError, match=r"side_by_side\.verdict: logprob needs a local judge .* use verdict: text"):
        local_judge_scorer(LLM(ScriptedBackend(model="judge", responses=prefers_a)))


def test_the_embedded_judge_by_logprob_never_prefers_one_of_two_identical_answers() -> None:
    """The real 135M judge: with the same answer in both places the two orders are one question, so
    whatever line it likes, the outcome is a tie (a win or loss here would be a pairing bug)."""
    from traitforge.evaluate.side_by_side import CHOICES, compare_by_logprob
    from traitforge.shared.logprob import scorer_for

    c = asyncio.run(compare_by_logprob(scorer_for("smollm2-135m"), "Name a prime number.", "7 is prime.",
                                       "7 is prime."))
    assert c.outcome == TIE and c.verdicts[0] == c.verdicts[1] and c.verdicts[0] in CHOICES
    scores = json.loads(c.replies[0])
    assert set(scores) == set(CHOICES) and all(s < 0 for s in scores.values())
    assert c.verdicts[0] == max(scores, key=scores.get)


def test_the_report_says_when_verdicts_were_read_from_log_probabilities() -> None:
    sec = {"reference": "base", "verdict_method": "logprob", "by_checkpoint": {
        "sft": {"win_rate": {"value": 0.5, "ci_low": 0.3, "ci_high": 0.7, "n": 6}, "wins": 1, "ties": 4, "losses": 1,
                "position_ties": 4, "unscored": 0}}}
    assert "Verdicts by log-probability" in render_side_by_side(sec)
    assert "Verdicts by log-probability" not in render_side_by_side({**sec, "verdict_method": "text"})
