"""The pattern loop closed: the data's patterns measured in each checkpoint's replies to the
behavioural eval prompts, with CIs, and shown in the report beside the data's shares."""

import asyncio

from _curate_data import TRAITS, scripted

from traitforge.config import RunSpec
from traitforge.evaluate.common import EvalContext, ItemResult, eval_path
from traitforge.pipeline import Run
from traitforge.evaluate.patterns import pattern_summary, run_patterns
from traitforge.jsonl import write_jsonl
from traitforge.report.html import render_report
from traitforge.runstore import RunStore


def test_checkpoint_replies_are_measured_for_the_data_patterns_and_reported(tmp_path):
    store = RunStore(tmp_path)
    write_jsonl(store.path("curation", "pattern_classifiers.jsonl"), [
        {"dataset": "chats", "pattern_id": "known:validation_buffer", "description": "validation before the answer",
         "source": "known", "flagged": True, "kind": "regex", "strict": r"^\W*I understand how",
         "broad": r"\bI understand\b", "scope": "opener"},
        {"dataset": "chats", "pattern_id": "scan:marathon", "description": "compares the task to a marathon",
         "source": "scan", "flagged": True, "kind": "judge", "question": "Does it compare the task to a marathon?"},
        {"dataset": "documents", "pattern_id": "known:conversion_arc", "description": "a conversion arc",
         "source": "known", "flagged": True, "kind": "judge", "question": "Is there a conversion arc?"}])
    write_jsonl(store.path("curation", "patterns.jsonl"), [
        {"dataset": "chats", "pattern_id": "known:validation_buffer", "description": "validation", "source": "known",
         "classifier": "regex", "share_broad": 0.7, "share_strict": 0.6, "share_after": 0.2, "flagged": True, "n": 50,
         "share_estimate": 0.6, "ci_low": 0.46, "ci_high": 0.72}])
    replies = []
    for i in range(10):
        # base opens with validation 2/10 times; sft 8/10 (it learnt the data's pattern); sft uses marathons 5/10.
        for ck, k, m in (("base", 2, 0), ("sft", 8, 5)):
            text = ("I understand how hard this is. " if i < k else "") + ("Like a marathon. " if i < m else "") + "Answer."
            replies.append(ItemResult(id=f"behaviour|{ck}|b{i}", eval="behaviour", checkpoint=ck, item_id=f"b{i}",
                                      trait_id="honest", value=1.0, detail={"prompt": f"Q{i}?", "response": text}))
    write_jsonl(eval_path(store, "behaviour"), replies)
    asked = []

    def judge(msgs, params):
        asked.append(msgs[-1].content)
        return "YES" if "marathon" in msgs[-1].content.split("<<<", 1)[1] else "NO"

    spec = RunSpec(traits="t.md")
    ctx = EvalContext(Run.of(store, spec, TRAITS), spec.evaluation, scripted(judge), scripted(judge), {"base": None, "sft": None})
    asyncio.run(run_patterns(ctx))
    # The judge pattern: one call per distinct reply (20 replies, 3 texts: identical calls at once
    # share one answer); the rule needs none; documents not measured.
    assert len(asked) == len(set(asked)) == len({r.detail["response"] for r in replies}) == 3
    asyncio.run(run_patterns(ctx))
    assert len(asked) == 3  # resumed: nothing asked again
    summary = {p["pattern_id"]: p for p in pattern_summary(store, ["base", "sft"])}
    assert set(summary) == {"known:validation_buffer", "scan:marathon"}
    v = summary["known:validation_buffer"]
    assert v["checkpoints"]["base"]["value"] == 0.2 and v["checkpoints"]["sft"]["value"] == 0.8
    assert v["checkpoints"]["sft"]["ci_low"] < 0.8 < v["checkpoints"]["sft"]["ci_high"] and v["data"]["before"] == 0.6
    assert summary["scan:marathon"]["checkpoints"]["sft"]["value"] == 0.5
    html = render_report({"checkpoints": ["base", "sft"], "model_patterns": list(summary.values()),
                          "dataset_card": {"token_accounting": {"sft": {"max_length": 512, "max_length_source": "auto",
                                                                        "rows": 4, "over_max_length": 1, "split": 1,
                                                                        "dropped": 0, "examples": 5,
                                                                        "over_by_tokens": {"max": 30}}}}})
    assert "Patterns: data vs trained models" in html and "80.0%" in html and "Token accounting" in html
    checks = render_report({"patterns": [{"dataset": "chats", "pattern_id": "scan:marathon", "share_estimate": 0.3,
                                          "ci_low": 0.2, "ci_high": 0.4, "n": 200, "judge_accuracy": 0.85,
                                          "self_agreement": 0.75, "rule_agreement": None, "flagged": True,
                                          "share_strict": 0.36, "share_broad": 0.4, "share_after": 0.2}]})
    assert "autorater checks" in checks and "75.0%" in checks
