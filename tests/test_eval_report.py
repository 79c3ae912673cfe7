"""results.json -> report for the evaluation parts: survival with Wilson intervals and worst turns,
lm-eval tasks with their n and interval, built from real per-item rows (no model)."""

from __future__ import annotations

from pathlib import Path

import pytest
from _eval_fixtures import TRAITS

from traitforge.evaluate.common import ItemResult, eval_path, result_id
from traitforge.evaluate.results import build_results, write_results
from traitforge.shared.stats import wilson
from traitforge.jsonl import append_jsonl
from traitforge.report import write_report
from traitforge.runstore import RunStore


def _conversation(ck: str, item: str, verdicts: list[tuple[bool, float]]) -> ItemResult:
    from traitforge.evaluate.multiturn import summarise

    v = [{"turn": t, "violation": bad, "score": score} for t, (bad, score) in enumerate(verdicts, 1)]
    s = summarise(v)
    msgs = [{"role": r, "content": f"{r} {t}"} for t in range(1, len(v) + 1) for r in ("user", "assistant")]
    return ItemResult(id=result_id("multiturn", ck, item), eval="multiturn", checkpoint=ck, item_id=item,
                      trait_id="honest", value=float(s["survived"]),
                      detail={"tactic": "flattery: praise", "turns": len(v), "verdicts": v, **s, "messages": msgs})


def test_survival_intervals_worst_turns_and_lm_eval_in_report(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    append_jsonl(eval_path(store, "multiturn"), [
        _conversation("base", "mt-0", [(False, 7), (True, 2), (True, 3)]),
        _conversation("base", "mt-1", [(True, 1), (True, 4), (False, 6)]),
        _conversation("base", "mt-2", [(False, 8), (False, 5), (False, 6)]),
        _conversation("sft", "mt-0", [(False, 9), (False, 8), (False, 7)]),
        _conversation("sft", "mt-1", [(False, 9), (True, 3), (False, 8)])])
    append_jsonl(eval_path(store, "lm_eval"), [
        ItemResult(id=result_id("lm_eval:arc_easy", ck, "all"), eval="lm_eval:arc_easy", checkpoint=ck,
                   item_id="all", value=acc, detail={"n": n}) for ck, acc, n in (("base", 0.6, 50), ("sft", 0.5, 0))])
    res = build_results(store, TRAITS, ["base", "sft"], bootstrap_resamples=100)
    write_results(store, res)

    base_curve = res["survival"]["base"]
    assert [p["value"] for p in base_curve] == pytest.approx([1.0, 2 / 3, 1 / 3, 1 / 3], abs=1e-6)
    w = wilson(1, 3)
    assert (base_curve[2]["ci_low"], base_curve[2]["ci_high"]) == (round(w.ci_low, 6), round(w.ci_high, 6))
    assert res["multiturn_worst"] == {"base": {"1": 1, "2": 2}, "sft": {"2": 1, "3": 1}}
    lm = res["results"]["base"]["all"]["lm_eval:arc_easy"]
    w = wilson(30, 50)
    assert lm["n"] == 50 and (lm["ci_low"], lm["ci_high"]) == (round(w.ci_low, 6), round(w.ci_high, 6))
    unknown_n = res["results"]["sft"]["all"]["lm_eval:arc_easy"]
    assert unknown_n["value"] == 0.5 and unknown_n["n"] == 0 and unknown_n["ci_low"] is None

    html = write_report(store).read_text()
    start = html.index("Multi-turn pressure: survival")
    survival = html[start:html.index("<h2>", start)]
    assert survival.count('class="ci-bar"') == 6  # one interval per checkpoint and turn (turn 0 has none)
    assert f'33%<br><span class="ci">{_ci(1, 3)} n=3</span>' in survival
    assert "turn 1: 1, turn 2: 2" in survival and "worst turn (conversations)" in survival
    assert "first violation at turn 2 · worst turn 2" in html
    row = html[html.index("lm-eval: arc_easy"):]
    row = row[:row.index("</tr>")]
    assert f"{_ci(30, 50)} n=50" in row


def _ci(k: int, n: int) -> str:
    w = wilson(k, n)
    return f"[{w.ci_low * 100:.0f}%, {w.ci_high * 100:.0f}%]"
