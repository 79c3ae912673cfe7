"""Curation throughput and memory for the non-LLM steps on synthetic rows (CPU only):

    python bench/curate.py [--sizes 10000,100000] [--steps dedup,leakage_docs,leakage_chats,pattern_stats]

and the pattern pipeline on a scripted corpus (scan -> cluster -> autorate a sample -> share with CI ->
mitigate), rated by a noisy scripted judge (85% accurate, seeded):

    python bench/curate.py --patterns [--rows 2000] [--mitigation downsample] [--embedder]

prints, per injected pattern: found (flagged) or not, the estimated share with its 95% interval vs the
true share, the true share after mitigation, and rows/s of the whole pipeline (the scripted judge
answers instantly, so this is the pipeline's own cost; a real judge adds its latency per call).

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

from traitforge.curate.settings import CurationSpec
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


PATTERN_SHARES = {"marathon": 0.30, "weather": 0.12, "apology": 0.40}  # 0.12: below max_share, should not be flagged


def patterns_bench(n: int, mitigation: str, use_embedder: bool) -> None:
    import asyncio
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from _curate_data import TRAITS as CHAT_TRAITS, scripted  # noqa: E402
    from _pattern_corpus import PATTERNS, corpus, noisy_judge, true_share  # noqa: E402

    from traitforge.curate.patterns import run_dataset

    embedder = None
    if use_embedder:
        from traitforge.curate.embed import load_embedder

        embedder = load_embedder()
    rows, _ = corpus(n, PATTERN_SHARES, seed=0)
    cfg = CurationSpec(pattern_scans=6, scan_batch=10, pattern_max_share=0.2, pattern_max_drop=0.6,
                       pattern_mitigation=mitigation)
    judge = scripted(noisy_judge(0.85, seed=1))
    t0 = time.perf_counter()
    res = asyncio.run(run_dataset("chats", rows, CHAT_TRAITS, judge, cfg, seed=0, embedder=embedder))
    dt = time.perf_counter() - t0
    print(f"{n} rows, judge 85% accurate, max_share {cfg.pattern_max_share}, sample {cfg.pattern_sample}, "
          f"mitigation {mitigation}, clustering {'MiniLM embeddings' if embedder else 'word overlap'}")
    print(f"{'pattern':<10}{'true':>7}{'found':>7}{'raw':>7}{'estimate':>9}{'95% CI':>16}{'judge acc':>10}"
          f"{'after (true)':>13}  finding")
    for name, share in PATTERN_SHARES.items():
        kw = PATTERNS[name][0]
        f = next((x for x in res.findings if x.source == "scan" and kw in x.description.lower()), None)
        after = true_share(name, res.rows)
        if f is None:
            print(f"{name:<10}{true_share(name, rows):>7.3f}{'no':>7}{'-':>7}{'-':>9}{'-':>16}{'-':>10}{after:>13.3f}  (never rated)")
            continue
        print(f"{name:<10}{true_share(name, rows):>7.3f}{'yes' if f.flagged else 'no':>7}{f.share_strict:>7.3f}"
              f"{f.share_estimate:>9.3f}{f'[{f.ci_low:.3f}, {f.ci_high:.3f}]':>16}{f.judge_accuracy or 0:>10.3f}"
              f"{after:>13.3f}  {f.pattern_id}")
    false = [x for x in res.findings if x.flagged and not any(PATTERNS[p][0] in x.description.lower() for p in PATTERNS)]
    calls = len(judge.backend.calls)
    print(f"other patterns flagged: {len(false)}; rows left {len(res.rows)}/{n} ({len(res.drops)} dropped, "
          f"{len(res.edits)} edited); judge calls {calls}; {dt:.1f} s, {n / dt:,.0f} rows/s")
    if res.stats.get("unmitigated"):
        print(f"left unmitigated: {res.stats['unmitigated']}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--patterns", action="store_true", help="the pattern pipeline on a scripted corpus")
    p.add_argument("--rows", type=int, default=2000)
    p.add_argument("--mitigation", default="downsample", choices=["downsample", "rewrite", "regenerate", "none"])
    p.add_argument("--embedder", action="store_true", help="cluster with the offline MiniLM embedder")
    p.add_argument("--sizes", default="10000,100000")
    p.add_argument("--steps", default=",".join(STEPS))
    p.add_argument("--one", nargs=2, metavar=("ROWS", "STEP"), help=argparse.SUPPRESS)  # child mode
    a = p.parse_args()
    if a.patterns:
        patterns_bench(a.rows, a.mitigation, a.embedder)
        return
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
