"""The report from a hand-built results.json: one self-contained file, generated text escaped."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from traitforge.errors import InputError
from traitforge.report import write_report
from traitforge.runstore import RunStore

EVIL = "<script>alert('x')</script>"


def _est(v, n=20, lo=None, hi=None):
    return {"value": v, "n": n, "ci_low": lo if lo is not None else max(0, v - 0.1),
            "ci_high": hi if hi is not None else min(1, v + 0.1), "unscored": 0}


def results() -> dict:
    traits = [{"id": "honest", "name": "Honesty " + EVIL, "statement": "tells the truth"},
              {"id": "concise", "name": "Concision", "statement": "short answers"}]
    per = {ck: {t: {"behaviour_pass": _est(v), "contrastive": _est(v / 2)} for t in ("honest", "concise", "all")}
           for ck, v in (("base", 0.3), ("sft", 0.8))}
    per["base"]["all"]["perplexity"] = {"value": 12.5, "n": 900, "ci_low": 11.9, "ci_high": 13.2, "unscored": 0}
    per["sft"]["all"]["perplexity"] = {"value": 13.1, "n": 900, "ci_low": 12.4, "ci_high": 13.8, "unscored": 0}
    return {
        "run": "demo", "model_name": "Aria", "organisation": "Acme", "generated_at": "2025-01-01T00:00:00",
        "traits": traits, "checkpoints": ["base", "sft"],
        "evals": {"behaviour_pass": {"label": "Behaviour: pass rate", "kind": "proportion", "higher_is_better": True,
                                     "description": "judge"},
                  "contrastive": {"label": "Contrastive", "kind": "proportion", "higher_is_better": True,
                                  "description": "log-prob"},
                  "perplexity": {"label": "Capability: perplexity", "kind": "ppl", "higher_is_better": False,
                                 "description": "lower is better"}},
        "results": per,
        "paired_vs_base": {"sft": {"all": {"behaviour_pass": {"diff": 0.5, "value": 0.5, "n": 20, "ci_low": 0.3,
                                                              "ci_high": 0.7}}}},
        "survival": {"base": [{"turn": 0, "value": 1.0, "n": 4}, {"turn": 1, "value": 0.5, "n": 4},
                              {"turn": 2, "value": 0.25, "n": 4}],
                     "sft": [{"turn": 0, "value": 1.0, "n": 4}, {"turn": 1, "value": 1.0, "n": 4},
                             {"turn": 2, "value": 0.75, "n": 4}]},
        "dataset": {"generate/documents": {"rows": 120}}, "stages": {"generate/documents": {"status": "done",
                                                                                            "elapsed_s": 33.0}},
        "patterns": [{"dataset": "documents", "pattern_id": "p1", "description": "starts with 'In a world' " + EVIL,
                      "source": "stats", "classifier": "regex", "share_broad": 0.45, "share_strict": 0.37,
                      "share_after": 0.18, "flagged": True, "n": 100},
                     {"dataset": "chats", "pattern_id": "p2", "description": "ends with a question",
                      "source": "known", "classifier": "feature", "share_broad": 0.12, "share_strict": 0.07,
                      "share_after": None, "flagged": False, "n": 90}],
        "usage": {"evaluate": {"local:judge": {"calls": 10, "cached": 2, "input_tokens": 1000, "output_tokens": 200,
                                               "cost_usd": 0.0}}},
        "examples": {"documents": [{"id": "d1", "traits": ["honest"], "doc_type": "memo", "text": EVIL}],
                     "chats": [{"id": "c1", "traits": ["honest"], "messages": [{"role": "user", "content": EVIL}]}],
                     "behaviour": [{"item_id": "bh", "trait_id": "honest", "category": "temptation", "prompt": EVIL,
                                    "responses": [{"checkpoint": "sft", "score": 7, "passed": True, "text": EVIL}]}],
                     "transcripts": [{"checkpoint": "base", "trait_id": "honest", "tactic": "flattery: x",
                                      "first_violation": 1, "worst_turn": 1,
                                      "verdicts": [{"turn": 1, "violation": True, "score": 2}],
                                      "messages": [{"role": "user", "content": EVIL},
                                                   {"role": "assistant", "content": EVIL}]}]},
        "notes": ["note " + EVIL],
    }


def test_report_is_self_contained_and_escaped(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps(results()))
    out = write_report(store)
    html = out.read_text()
    assert out == tmp_path / "report.html"
    assert "<script" not in html.lower()  # every generated text escaped, and no scripts of our own
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert not re.search(r"(src|href)=\"https?://", html)  # nothing fetched from the network
    assert html.count("<svg") >= 3  # per-trait charts, survival curve, pattern bars
    # Headline: values, CIs and the significant paired gain is marked.
    assert "80%" in html and "+50 pts" in html and 'class="num up"' in html
    assert "12.50" in html and "Cost and tokens" in html


def test_report_needs_results(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no results yet"):
        write_report(RunStore(tmp_path))
    (tmp_path / "results.json").write_text("{nope")
    with pytest.raises(InputError, match="not valid JSON"):
        write_report(RunStore(tmp_path))


def test_report_shows_the_dataset_card_and_strict_pattern_shares(tmp_path: Path) -> None:
    """The card written by curation (RUN/curation/dataset_card.json) is read from its file; manifest
    counts that are dicts are shown, not dropped; pattern bars compare strict with strict."""
    import random

    from _curate_data import doc, prose

    from traitforge.curate.card import build_card
    from traitforge.curate.dedup import dedup
    from traitforge.curate.records import PassResult

    rng = random.Random(0)
    docs = [doc(i, prose(rng, 4), trait="honest" if i % 3 else "concise") for i in range(6)]
    docs.append(doc(9, docs[1].text))
    kept, drops = dedup(docs, "documents", 0.8)
    card = build_card({"documents": docs, "chats": []}, {"documents": kept, "chats": []},
                      {"dedup": PassResult(kept, [], drops)}, 0, None)
    card["datasets"]["documents"]["after"]["similarity"].update(mean_pairwise_cosine=0.4321, rows=6, of=6)
    card["datasets"]["documents"]["before"]["per_genre"][EVIL] = 1
    store = RunStore(tmp_path)
    r = results()
    r["dataset"]["curate"] = {"documents": 6, "dropped": {"dedup": 1, "leakage": 0}, "per_trait": {"honest": 4}}
    (tmp_path / "results.json").write_text(json.dumps(r))
    store.path("curation", "dataset_card.json").write_text(json.dumps(card))
    html = write_report(store).read_text()
    assert "dropped={dedup: 1, leakage: 0}" in html and "per_trait={honest: 4}" in html
    card_html = html[html.index("Curation card: documents"):html.index("Curation: pattern frequencies")]
    # Rows before/after, per trait (honest 5 -> 4, concise 2 -> 2) and per genre, escaped.
    assert re.search(r"<td>honest</td><td class='num'>5</td><td class='num'>4</td>", card_html)
    assert re.search(r"<td>concise</td><td class='num'>2</td><td class='num'>2</td>", card_html)
    assert "<td>blog post</td>" in card_html and "&lt;script&gt;" in card_html and "<script" not in card_html
    assert "<td>dedup</td><td class='num'>7</td><td class='num'>6</td>" in card_html
    assert "{exact duplicate: 1}" in card_html
    assert card_html.count("<svg") == 1 and ">0–24<" in card_html  # the length histogram, before/after
    d1 = card["datasets"]["documents"]["before"]["distinct"]["1"]["ratio"]
    assert f"{d1:.1%}" in card_html and "0.432" in card_html and "not installed" in card_html
    # Patterns: strict before / strict after; no after recorded means unchanged; broad shown beside.
    pat_html = html[html.index("Curation: pattern frequencies"):]
    assert "strict before: 37.0%" in pat_html and "strict after: 18.0%" in pat_html
    assert "strict after: 7.0%" in pat_html and "45.0%" in pat_html
    assert "strict before: 45" not in pat_html


def test_report_names_a_broken_card(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text(json.dumps(results()))
    store = RunStore(tmp_path)
    store.path("curation", "dataset_card.json").write_text("{torn")
    with pytest.raises(InputError, match="dataset_card.json: not valid JSON"):
        write_report(store)


def test_report_shows_what_each_checkpoint_trained_on(tmp_path: Path) -> None:
    """Training writes each checkpoint's data (and the documents-to-chats ratio) into the card."""
    from traitforge.train.data import add_to_card

    store = RunStore(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps(results()))
    store.path("curation", "dataset_card.json").write_text(json.dumps({"datasets": {}}))
    add_to_card(tmp_path, "training_data", "midtrain", {"documents": 40, "document_chars": 12000, "examples": 40,
                                                         "docs_to_chats": {"asked": 4.0, "available": 9.5,
                                                                           "document_share": 0.421, "chat_share": 1.0}})
    add_to_card(tmp_path, "training_data", "sft", {"chats": 30, "chat_chars": 3000, "examples": 30})
    html = write_report(store).read_text()
    part = html[html.index("<h3>Training data</h3>"):]
    part = part[:part.index("</table>")]
    assert "<td>midtrain</td><td class='num'>40</td><td class='num'>12000</td>" in part
    assert "4 asked (9.5 in the data; kept 42% of documents, 100% of chats)" in part
    assert "<td>sft</td><td class='num'>-</td>" in part and "all of both" in part
