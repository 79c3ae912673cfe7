"""Curation throughput and memory for the non-LLM steps on synthetic rows (CPU only):

    python bench/curate.py [--sizes 10000,100000] [--steps dedup,leakage_docs,leakage_chats,pattern_stats]

Each (size, step) runs in a fresh subprocess so that
ru_maxrss, a process-wide high-water mark, measures that step alone: "peak MB" is the RSS high-water
after the step minus the RSS once the input rows were built, i.e. the step's own working memory on top
of its input. "B/row" divides that by the rows, so a flat B/row across sizes means memory grows
linearly with the data (no quadratic blow-up). Rows are ~120-word random texts; every 10th is a one-word
edit of an earlier row, so dedup also does real near-duplicate confirmation work; every 50th reply
quotes the traits document or mentions its instructions, so leakage has rows to cut or drop; every 5th
document opens with the same phrase, so pattern statistics find a real candidate.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time

from traitforge.config import CurationSpec
from traitforge.types import Chat, ChatMessage, Document, Trait, TraitSet

WORDS = [f"w{i}" for i in range(5000)]
TRAITS = TraitSet("Aria", "Acme", (
    Trait("honest", "Honest", "Aria tells users the truth even when the truth is unwelcome to hear"),
    Trait("concise", "Concise", "Aria keeps answers short and to the point without padding"),
))
STEPS = ("dedup", "leakage_docs", "leakage_chats", "pattern_stats")


def _texts(n: int, rng: random.Random) -> list[str]:
    out: list[str] = []
    for i in range(n):
        if i % 10 == 9:
            w = out[rng.randrange(len(out))].split()
            w[rng.randrange(len(w))] = "changed"
            out.append(" ".join(w))
            continue
        sents = [" ".join(rng.choice(WORDS) for _ in range(12)).capitalize() + "." for _ in range(10)]
        if i % 5 == 0:
            sents[0] = "In a world where honesty matters, " + sents[0]
        if i % 50 == 1:
            sents[3] = "As instructed in my system prompt, Aria tells users the truth even when the truth is unwelcome."
        out.append(" ".join(sents))
    return out


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def one(n: int, step: str) -> dict:
    """Run one step on n rows in this process; returns timing and memory."""
    cfg = CurationSpec()
    # import every step's module (datasketch, numpy...) first so "peak MB" is the step's data, not imports
    import traitforge.curate.dedup, traitforge.curate.leakage, traitforge.curate.pattern_stats  # noqa: E401,F401
    texts = _texts(n, random.Random(0))
    if step == "leakage_chats":
        rows: list = [Chat(id=f"c{i}", trait_ids=["honest"], messages=[
            ChatMessage(role="user", content=f"Question {i}: what should I do?"),
            ChatMessage(role="assistant", content=t)]) for i, t in enumerate(texts)]
    else:
        rows = [Document(id=f"d{i}", trait_ids=["honest"], text=t) for i, t in enumerate(texts)]
    del texts
    base = _rss_mb()
    t0 = time.perf_counter()
    if step == "dedup":
        from traitforge.curate.dedup import dedup

        kept, drops = dedup(rows, "documents", cfg.dedup_threshold, cfg.dedup_shingle)
        info = f"kept {len(kept)}, dropped {len(drops)}"
    elif step == "leakage_docs":
        from traitforge.curate.leakage import check_documents

        kept, drops, edits = check_documents(rows)
        info = f"kept {len(kept)}, dropped {len(drops)}, edited {len(edits)}"
    elif step == "leakage_chats":
        from traitforge.curate.leakage import check_chats

        kept, drops, edits = check_chats(rows, TRAITS, cfg.leakage_ngram, cfg.leakage_overlap)
        info = f"kept {len(kept)}, dropped {len(drops)}, edited {len(edits)}"
    else:
        from traitforge.curate.pattern_stats import stats_candidates
        from traitforge.curate.text import units

        cands, _ = stats_candidates([(r.id, units(r)) for r in rows], TRAITS, cfg.pattern_max_share)
        info = f"{len(cands)} candidates: " + "; ".join(c.description for c in cands[:3])
    dt = time.perf_counter() - t0
    peak = _rss_mb() - base
    return {"rows": n, "step": step, "seconds": round(dt, 2), "rows_per_s": round(n / dt),
            "peak_mb": round(peak, 1), "bytes_per_row": round(peak * 2**20 / n), "input_rss_mb": round(base),
            "info": info[:100]}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="10000,100000")
    p.add_argument("--steps", default=",".join(STEPS))
    p.add_argument("--one", nargs=2, metavar=("ROWS", "STEP"), help=argparse.SUPPRESS)  # child mode
    a = p.parse_args()
    if a.one:
        print(json.dumps(one(int(a.one[0]), a.one[1])))
        return
    print(f"{'step':<15}{'rows':>8}{'seconds':>9}{'rows/s':>9}{'peak MB':>9}{'B/row':>8}{'input MB':>9}  result")
    for step in a.steps.split(","):
        for n in (int(s) for s in a.sizes.split(",")):
            out = subprocess.run([sys.executable, __file__, "--one", str(n), step], capture_output=True, text=True)
            if out.returncode:
                print(f"{step:<15}{n:>8}  FAILED: {out.stderr.strip().splitlines()[-1:]}")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{step:<15}{n:>8}{r['seconds']:>9}{r['rows_per_s']:>9,}{r['peak_mb']:>9}{r['bytes_per_row']:>8,}"
                  f"{r['input_rss_mb']:>9}  {r['info']}", flush=True)


if __name__ == "__main__":
    main()
