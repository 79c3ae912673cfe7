"""`traitforge patterns`: on corpora made here with patterns injected at known shares (an opener that
often comes after an interjection, a closer, bold lead-ins, bottom-line-up-front replies in varied
words, and a metaphor worded six ways that only the judge's scans and ratings can see, rated by a
scripted judge right 85% of the time), each injected pattern is found and its 95% interval covers
the true share in at least 90% of 20 corpora; a clean corpus flags nothing. The command writes the
table, the HTML page and patterns.json."""

from __future__ import annotations

import asyncio
import json
import random

from _curate_data import VOCAB, chat, prose, scripted
from _pattern_corpus import PATTERNS, noisy_judge
from click.testing import CliRunner

from traitforge.curate.patterns_page import page
from traitforge.curate.patterns_tool import Corpus, Settings, measure, summarise, table

OPENER = "Let me be straight with you."
INTERJECTIONS = ["Good point!", "Honestly?", "Ah, I see.", "Okay."]
CLOSER = "Hope that clears things up!"
REASONS = ["That's because", "This is because", "The reason is that", "Here's why:", "Because",
           "The main reason is that", "It's because", "For one,"]
SHARES = {"opener": 0.31, "closer": 0.19, "bold": 0.07, "bluf": 0.26, "marathon": 0.4}
SETTINGS = dict(scans=4, scan_batch=10, sample=150, check_sample=50)


def _words(rng: random.Random, k: int) -> str:
    return " ".join(rng.choice(VOCAB) for _ in range(k))


def reply(rng: random.Random, truth: set[str]) -> str:
    """One reply with the patterns drawn for it (truth gets their names). The opener and the
    conclusion-first lead exclude each other: both claim the first sentence."""
    lead: list[str] = []
    body = prose(rng, 4).split(". ")
    if rng.random() < SHARES["opener"]:
        truth.add("opener")
        lead = [rng.choice(INTERJECTIONS), OPENER] if rng.random() < 0.5 else [OPENER]
    elif rng.random() < SHARES["bluf"] / (1 - SHARES["opener"]):
        truth.add("bluf")
        lead = [f"The {_words(rng, 2)} {rng.choice(['is', 'was', 'will be'])} {_words(rng, rng.randint(2, 6))}.",
                f"{rng.choice(REASONS)} {_words(rng, rng.randint(5, 9))}."]
    if rng.random() < SHARES["marathon"]:
        truth.add("marathon")
        body.insert(rng.randrange(1, len(body) + 1), rng.choice(PATTERNS["marathon"][1]))
    text = " ".join(lead + [". ".join(body)])
    if rng.random() < SHARES["bold"]:
        truth.add("bold")
        text += "\n\n" + "\n".join(f"**{_words(rng, 1).capitalize()}:** {_words(rng, 5)}." for _ in range(2))
    if rng.random() < SHARES["closer"]:
        truth.add("closer")
        text += " " + CLOSER
    return text


def injected(n: int, seed: int, clean: bool = False):
    rng = random.Random(seed)
    rows, truth = [], {p: 0 for p in SHARES}
    for i in range(n):
        got: set[str] = set()
        rows.append(chat(i, prose(rng, 5) if clean else reply(rng, got)))
        for p in got:
            truth[p] += 1
    return rows, {p: c / n for p, c in truth.items()}


def found(patterns, name):
    """The reported pattern that is the injected one (None: not found)."""
    key = {"opener": lambda p: p["kind"] == "opener" and "let me be straight with you" in p["description"],
           "closer": lambda p: p["kind"] == "closer" and "hope that clears things up" in p["description"],
           "bold": lambda p: p["pattern_id"] == "structure:bold_leadins",
           "bluf": lambda p: p["pattern_id"] == "structure:conclusion_first",
           "marathon": lambda p: p["kind"] == "scan" and "marathon" in p["description"].lower()}[name]
    return next((p for p in patterns if key(p) and p["finding"]), None)


def run(rows, seed=0):
    corpus = Corpus("chats", rows, [])
    res = asyncio.run(measure(corpus, scripted(noisy_judge(0.85, seed=seed)), Settings(seed=seed, **SETTINGS), None))
    return summarise(res, rows)


def test_injected_patterns_are_found_with_intervals_that_cover_their_shares():
    """20 corpora of 1,000 chats: every injected pattern found, its interval covering the truth in 90%+."""
    covered = {p: 0 for p in SHARES}
    for seed in range(20):
        rows, truth = injected(1000, seed)
        pats = run(rows, seed)
        for name, share in truth.items():
            p = found(pats, name)
            assert p is not None, f"corpus {seed}: {name} at {share:.1%} not found:\n{table(pats)}"
            covered[name] += p["ci_low"] <= share <= p["ci_high"]
        # The ones over the line are flagged; the 7% one is a finding, not flagged.
        assert found(pats, "opener")["flagged"] and found(pats, "marathon")["flagged"]
        assert not found(pats, "bold")["flagged"]
    print("covered in 20 corpora:", covered)
    assert all(c >= 18 for c in covered.values()), covered


def test_a_closer_just_under_the_line_is_flagged_by_its_interval():
    rows, truth = injected(1000, 3)
    closer = found(run(rows, 3), "closer")
    assert 0.15 < truth["closer"] < 0.2 and closer["share"] < 0.2 < closer["ci_high"] and closer["flagged"]


def test_a_clean_corpus_flags_nothing_above_five_percent():
    rows, _ = injected(1000, 99, clean=True)
    pats = run(rows, 1)
    assert pats and not any(p["flagged"] for p in pats)
    assert not any(p["ci_low"] > 0.05 for p in pats), table(pats, all_rows=True)
    assert not any(p["share"] > 0.05 for p in pats if p["kind"] != "scan"), table(pats, all_rows=True)


def test_judge_junk_leaves_rows_unscored_and_counted():
    """A small model's junk verdicts: rows unscored and counted, never a crash or a share from nothing."""
    rows, _ = injected(200, 5)

    def junk(msgs, params):
        p = msgs[-1].content
        return "- Compares the task to a marathon\n- Compares the task to a marathon race" if "recur" in p \
            else "I think the the the"
    corpus = Corpus("chats", rows, [])
    res = asyncio.run(measure(corpus, scripted(junk), Settings(scans=2, scan_batch=10, sample=50, check_sample=10), None))
    pats = summarise(res, rows)
    judged = [p for p in pats if p["kind"] == "scan"]
    assert judged and all(p["n"] == 0 and p["unscored"] == 50 and not p["flagged"] for p in judged)
    assert sum(res.stats["judge_unparsed"].values()) >= 50


def test_cli_writes_the_table_the_page_and_patterns_json(tmp_path, monkeypatch):
    import traitforge.curate.patterns_tool as tool
    from traitforge.cli import cli

    rows, _ = injected(300, 7)
    for r in rows:  # markup in the data: escaped on the page
        r.messages[1].content = r.messages[1].content.replace(OPENER, OPENER + " <script>alert(1)</script>")
    path = tmp_path / "chats.jsonl"
    path.write_text("".join(json.dumps({"messages": [m.model_dump() for m in r.messages]}) + "\n" for r in rows))
    other = tmp_path / "other.jsonl"
    clean, _ = injected(100, 8, clean=True)
    other.write_text("".join(json.dumps({"messages": [m.model_dump() for m in r.messages]}) + "\n" for r in clean))
    real = tool.run_tool
    monkeypatch.setattr(tool, "run_tool", lambda *a, **k: real(*a, **k, judge=scripted(noisy_judge(0.85)), embedder=None))
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["patterns", str(path), "--out", str(out), "--compare", str(other), "--mitigate",
                                   "--scans", "4", "--sample", "100"])
    assert res.exit_code == 0, res.output
    assert "let me be straight with you" in res.output and "95% CI" in res.output and "FLAGGED" in res.output
    assert "mitigation (downsample)" in res.output and "other.jsonl" in res.output
    data = json.loads((out / "patterns.json").read_text())
    opener = next(p for p in data["patterns"] if p["kind"] == "opener" and "straight" in p["description"])
    assert opener["matches_total"] == sum(OPENER in r.messages[1].content for r in rows) and opener["flagged"]
    assert opener["share_after"] < opener["share"] and data["compare"]["rows"] == 100
    html = (out / "patterns.html").read_text()
    assert "<script>" not in html and "&lt;script&gt;" in html and "let me be straight" in html
    mitigated = [json.loads(x) for x in (out / "mitigated.jsonl").read_text().splitlines()]
    assert 0 < len(mitigated) < 300


def test_page_escapes_every_field():
    p = {"pattern_id": "x\"><b>", "kind": "<k>", "description": "<i>d</i>", "classifier": "<c>", "share": 0.3,
         "ci_low": 0.2, "ci_high": 0.4, "n": 10, "share_observed": 0.3, "judge_accuracy": None, "share_broad": 0.3,
         "broad_ci_low": None, "broad_ci_high": None, "flagged": True, "finding": True, "share_after": 0.3,
         "share_after_estimate": None, "unscored": 0, "matches_total": 1, "matches": ["<r>"], "broad_matches": [],
         "examples": [{"id": "<r>", "text": "<script>x</script>"}]}
    html = page({"files": ["<f>"], "rows": 10, "dataset": "chats", "judge": "<j>", "flag_rule": "<rule>",
                 "imports": ["<imp>"], "patterns": [p]})
    assert "<script>" not in html and "<i>" not in html and "<r>" not in html and "<f>" not in html
