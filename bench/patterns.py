"""Time and memory of `traitforge patterns`' cheap passes (no judge: openers over every lead segment,
closers, n-grams, markdown structure, conclusion-first, the known offenders; each candidate's rule
then labels every row, as curate/patterns.run_dataset does) on generated chats:

    python bench/patterns.py [--sizes 10000,30000,100000]

Each size runs in a fresh subprocess so ru_maxrss (a process-wide high-water mark) is that size's
alone. Printed per size: seconds for the passes, rows/s, the process's peak RSS (interpreter, the
rows and the passes together: what the tool needs) and the passes' own working memory above the
rows (peak minus the RSS once the rows were built), per row; a flat figure per row across sizes
means memory grows linearly. Rows: ~90-word random replies to a one-line question, with an opener
(31%, half after an interjection), a closer (19%), bold lead-ins (7%) and conclusion-first leads
(26%) injected, so the passes have real candidates to grow and label."""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time

from traitforge.shared.pattern_rules import JudgeRule, label_example
from traitforge.curate.pattern_stats import stats_candidates
from traitforge.curate.patterns import known_candidates
from traitforge.shared.text import units
from traitforge.types import Chat, ChatMessage, TraitSet

WORDS = [f"w{i}" for i in range(5000)]
REASONS = ["That's because", "The reason is that", "Here's why:", "Because", "For one,"]


def _w(rng: random.Random, k: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(k))


def reply(rng: random.Random) -> str:
    body = [f"{_w(rng, rng.randint(8, 14)).capitalize()}." for _ in range(7)]
    lead: list[str] = []
    r = rng.random()
    if r < 0.31:
        lead = (["Good point!"] if rng.random() < 0.5 else []) + ["Let me be straight with you."]
    elif r < 0.57:
        lead = [f"The {_w(rng, 2)} is {_w(rng, 3)}.", f"{rng.choice(REASONS)} {_w(rng, 6)}."]
    text = " ".join(lead + body)
    if rng.random() < 0.07:
        text += "\n\n**Key:** " + _w(rng, 5) + ".\n**Next:** " + _w(rng, 5) + "."
    if rng.random() < 0.19:
        text += " Hope that clears things up!"
    return text


def rows(n: int, seed: int = 0) -> list[Chat]:
    rng = random.Random(seed)
    return [Chat(id=f"c{i}", trait_ids=[], messages=[ChatMessage(role="user", content=f"What about {_w(rng, 6)}?"),
                                                     ChatMessage(role="assistant", content=reply(rng))])
            for i in range(n)]


def truth(r: Chat) -> dict[str, bool]:
    t = r.messages[1].content
    return {"opener": "Let me be straight with you." in t, "closer": t.endswith("Hope that clears things up!"),
            "bold_leadins": "**Key:**" in t, "conclusion_first": t.startswith("The ")}


def write(path: str, n: int) -> None:
    """The corpus `traitforge patterns` is checked on, and its true shares."""
    data = rows(n, seed=1)
    with open(path, "w", encoding="utf-8") as fh:
        for r in data:
            fh.write(json.dumps({"messages": [m.model_dump() for m in r.messages]}) + "\n")
    counts = {k: sum(truth(r)[k] for r in data) for k in truth(data[0])}
    print(f"{path}: {n} chats; true shares: " + ", ".join(f"{k} {v / n:.1%}" for k, v in counts.items()))


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one(n: int) -> dict:
    data = rows(n)
    examples = [(r.id, units(r)) for r in data]
    base = rss_mb()
    t = time.perf_counter()
    cands, _ = stats_candidates(examples, TraitSet("", "", ()), 0.2)
    cands += [c for c in known_candidates("chats") if not isinstance(c.rule, JudgeRule)]
    shares = {}
    for c in cands:
        shares[c.id] = sum(label_example(c.rule, us) == 1.0 for _, us in examples) / n  # type: ignore[arg-type]
    secs = time.perf_counter() - t
    peak = rss_mb()
    top = sorted(shares.items(), key=lambda x: -x[1])[:6]
    return {"rows": n, "seconds": round(secs, 2), "rows_per_s": round(n / secs), "peak_rss_mb": round(peak),
            "passes_mb": round(peak - base), "passes_bytes_per_row": round((peak - base) * 2**20 / n),
            "candidates": len(cands), "top": [(k, round(v, 3)) for k, v in top]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,30000,100000")
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--write", default=None, help="write an injected corpus (OpenAI chat JSONL) here and stop")
    ap.add_argument("--rows", type=int, default=10000)
    a = ap.parse_args()
    if a.write:
        write(a.write, a.rows)
        return
    if a.one:
        print(json.dumps(one(a.one)))
        return
    print(f"{'rows':>8} {'seconds':>8} {'rows/s':>8} {'peak RSS MB':>12} {'passes MB':>10} {'B/row':>7} {'cands':>6}")
    for n in map(int, a.sizes.split(",")):
        out = subprocess.run([sys.executable, __file__, "--one", str(n)], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{r['rows']:>8} {r['seconds']:>8} {r['rows_per_s']:>8} {r['peak_rss_mb']:>12} {r['passes_mb']:>10} "
              f"{r['passes_bytes_per_row']:>7} {r['candidates']:>6}")
        print("         top shares: " + ", ".join(f"{k} {v:.1%}" for k, v in r["top"]))


if __name__ == "__main__":
    main()
