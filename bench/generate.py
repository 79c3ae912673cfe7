"""How fast is the generation stage (documents and chats), and what does a crash cost?

Three parts, each on a fresh run folder and a fresh LLM cache, so every call really runs:
  local  - documents/min and chats/min on the embedded model (local:smollm2-135m);
  server - the same through the OpenAI-compatible backend against a local llama.cpp server,
           at each --concurrency;
  resume - the documents stage in a subprocess, SIGKILLed once about half its drafts are written,
           then re-run; killed + resume time vs one uninterrupted subprocess run.
  axes   - the diversity axes: their distribution over 200 documents made on the scripted
           generator, then distinct-n and mean pairwise embedding similarity (the dataset card's
           measures, curate/card.py) of the document drafts made on the embedded model with and
           without them (about --axes-docs per arm: the same ideas, each drafted several times).

    python bench/generate.py [--parts local,server,resume,axes] [--traits 2] [--claims 1] [--types 2]
                             [--max-tokens 96] [--concurrency 1,4,8] [--server-threads 2] [--axes-docs 16]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from llama_server import MODEL_ALIAS, llama_server  # noqa: E402
from scripted_generator import make_spec, make_traits  # noqa: E402

from traitforge.config import ModelSpec, RunSpec  # noqa: E402
from traitforge.generate.chats import run_chats  # noqa: E402
from traitforge.generate.documents import run_documents  # noqa: E402
from traitforge.pipeline import Run  # noqa: E402
from traitforge.llm.registry import make_llm  # noqa: E402
from traitforge.runstore import RunStore  # noqa: E402

LOCAL = "local:smollm2-135m"


def build_spec(args, root: Path, concurrency: int) -> RunSpec:
    # min_chars is lowered so the 135M model's short drafts are not all dropped before revision.
    return make_spec(root, concurrency=concurrency, list_max_tokens=64,
                     documents={"claims_per_trait": args.claims, "doc_types_per_claim": args.types,
                                "ideas_per_type": 1, "max_tokens": args.max_tokens, "topup_rounds": 0,
                                "min_chars": 80},
                     chats={"scenarios_per_trait": args.scenarios, "multiturn_share": 0.5, "max_turns": 2,
                            "max_tokens": args.max_tokens})


def lines(path: Path) -> int:
    return sum(1 for _ in path.open()) if path.exists() else 0


def measure(stage, out_file: str, model: ModelSpec, spec: RunSpec, traits) -> tuple[int, float]:
    """Rows written by one stage and its wall time. A fresh LLM per stage: the OpenAI client's
    connection pool belongs to the event loop of the asyncio.run that made it."""
    llm = make_llm(model, cache=spec.output_path / f"cache_{out_file}.sqlite")
    if model.model.startswith("local:"):
        # Load the weights before the clock starts: a one-off cost, not throughput.
        asyncio.run(llm.generate_one("Say hello.", max_tokens=1))
    t0 = time.perf_counter()
    stage(Run.of(RunStore(spec.output_path), spec, traits, generator=llm), spec.generation)
    return lines(spec.output_path / "generated" / out_file), time.perf_counter() - t0


def throughput(label: str, model: ModelSpec, spec: RunSpec, traits) -> None:
    for name, stage, out in (("documents", run_documents, "documents.jsonl"), ("chats", run_chats, "chats.jsonl")):
        n, secs = measure(stage, out, model, spec, traits)
        skipped = lines(spec.output_path / "generated" / "skipped.jsonl")
        print(f"{label:<28} {name:<9} {n:3d} rows in {secs:6.1f} s = {60 * n / secs:5.2f}/min "
              f"(skipped units so far: {skipped})", flush=True)


def child_command(args, root: Path) -> list[str]:
    return [sys.executable, __file__, "--child", str(root), "--traits", str(args.traits), "--claims",
            str(args.claims), "--types", str(args.types), "--max-tokens", str(args.max_tokens)]


def run_child(args, root: Path, kill_at: int | None = None) -> tuple[float, int]:
    """Wall time of a subprocess documents run (model load included, as a user's re-run pays it),
    and the drafts on disk when it ended; SIGKILL once `kill_at` drafts are written."""
    drafts = root / "run" / "generated" / "drafts.jsonl"
    t0 = time.perf_counter()
    proc = subprocess.Popen(child_command(args, root))
    while proc.poll() is None:
        if kill_at is not None and lines(drafts) >= kill_at:
            proc.send_signal(signal.SIGKILL)  # no cleanup at all, like an OOM kill or power cut
            proc.wait()
            break
        time.sleep(0.1)
    return time.perf_counter() - t0, lines(drafts)


def resume(args) -> None:
    planned = args.traits * args.claims * args.types  # one idea per type, one draft per idea
    half = max(1, planned // 2)
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        t_full, n_full = run_child(args, Path(a))
        t_killed, n_killed = run_child(args, Path(b), kill_at=half)
        t_resume, n_resume = run_child(args, Path(b))
        docs_full = lines(Path(a) / "run" / "generated" / "documents.jsonl")
        docs_resumed = lines(Path(b) / "run" / "generated" / "documents.jsonl")
    print(f"resume (documents, {planned} planned drafts, concurrency 1, kill at {half})")
    print(f"  uninterrupted            : {t_full:6.1f} s  ({n_full} drafts, {docs_full} documents)")
    print(f"  killed run               : {t_killed:6.1f} s  ({n_killed} drafts on disk at SIGKILL)")
    print(f"  resume after kill        : {t_resume:6.1f} s  ({n_resume} drafts, {docs_resumed} documents)")
    print(f"  killed + resume          : {t_killed + t_resume:6.1f} s  = {(t_killed + t_resume) / t_full:.2f}x "
          f"uninterrupted")


def child(args) -> None:
    # Concurrency 1 everywhere: drafts then finish one by one, so a kill can land mid-step
    # (at 8 the embedded backend writes all drafts from one batch at once).
    root = Path(args.child)
    spec = build_spec(args, root, concurrency=1)
    llm = make_llm(ModelSpec(model=LOCAL, concurrency=1), cache=spec.output_path / "cache.sqlite")
    run_documents(Run.of(RunStore(spec.output_path), spec, make_traits(args.traits), generator=llm), spec.generation)


def axes_distribution() -> None:
    """Axis values over 200 documents from the scripted generator (2 traits x 5 claims x 4 genres x 5 ideas)."""
    from collections import Counter

    from scripted_generator import scripted_llm

    from traitforge.jsonl import read_jsonl
    from traitforge.types import Document

    with tempfile.TemporaryDirectory() as tmp:
        spec = make_spec(Path(tmp), documents={"claims_per_trait": 5, "doc_types_per_claim": 4, "ideas_per_type": 5,
                                               "max_tokens": 3000, "revise": False})
        run_documents(Run.of(RunStore(spec.output_path), spec, make_traits(2), generator=scripted_llm()), spec.generation)
        docs = read_jsonl(spec.output_path / "generated" / "documents.jsonl", Document)
    print(f"axes over {len(docs)} scripted documents (documents.max_tokens 3000: every length allowed)")
    for axis in ("genre", "author", "era", "place", "register", "length", "stance"):
        counts = Counter(d.axes.get(axis, "(none)") for d in docs)
        shares = ", ".join(f"{v[:38]} {c}" for v, c in counts.most_common())
        print(f"  {axis:<8} {len(counts):2d} values, most/least {max(counts.values())}/{min(counts.values())}: {shares}")


def axes_effect(args) -> None:
    """Documents on the embedded model with and without the axes: the card's diversity measures."""
    from traitforge.curate.card import profile
    from traitforge.curate.embed import load_embedder
    from traitforge.jsonl import read_jsonl
    from traitforge.types import Document

    embedder = load_embedder()
    traits = make_traits(2)
    # 2 traits x 1 claim x 2 genres x 2 ideas, each idea drafted docs_per_idea times (seeds): the method
    # makes many documents per idea, which is where the axes should vary them. One cache for both arms,
    # so both draft from the same claims, genres and ideas; only the drafts differ.
    per_idea = max(1, args.axes_docs // 8)
    with tempfile.TemporaryDirectory() as shared:
        cache = Path(shared) / "cache.sqlite"
        for arm in (False, True):
            with tempfile.TemporaryDirectory() as tmp:
                spec = make_spec(Path(tmp), concurrency=8, list_max_tokens=160,
                                 documents={"claims_per_trait": 1, "doc_types_per_claim": 2, "ideas_per_type": 2,
                                            "docs_per_idea": per_idea, "max_tokens": args.max_tokens,
                                            "revise": False, "topup_rounds": 0, "min_chars": 40, "axes": arm,
                                            "context": "trait", "avoid_known": False})
                llm = make_llm(ModelSpec(model=LOCAL), cache=cache)
                t0 = time.perf_counter()
                run_documents(Run.of(RunStore(spec.output_path), spec, traits, generator=llm), spec.generation)
                secs = time.perf_counter() - t0
                kept = lines(spec.output_path / "generated" / "documents.jsonl")
                # The drafts, before the checks: the 135M model's documents mostly fail them, and
                # diversity is a property of what the prompts make.
                docs = read_jsonl(spec.output_path / "generated" / "drafts.jsonl", Document)
                ideas = lines(spec.output_path / "generated" / "ideas.jsonl")
            card = profile("documents", docs, 0, embedder, {})
            d = card["distinct"]
            sim = card["similarity"]["mean_pairwise_cosine"]
            print(f"embedded, axes {'on ' if arm else 'off'}: {len(docs):2d} drafts of {ideas} ideas ({kept} kept by "
                  f"the checks) in {secs:5.0f} s; distinct-1/2/3 {d['1']['ratio']}/{d['2']['ratio']}/{d['3']['ratio']}; "
                  f"mean pairwise cosine {sim}; median words {card['words']['median']}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="local,server,resume")
    ap.add_argument("--traits", type=int, default=2, choices=(1, 2, 3))
    ap.add_argument("--claims", type=int, default=1, help="claims per trait")
    ap.add_argument("--types", type=int, default=2, help="document types per claim")
    ap.add_argument("--scenarios", type=int, default=1, help="chat scenarios per trait")
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--concurrency", default="1,4,8", help="server part: requests in flight")
    ap.add_argument("--server-threads", type=int, default=2)
    ap.add_argument("--axes-docs", type=int, default=16, help="axes part: embedded documents per arm")
    ap.add_argument("--child", help=argparse.SUPPRESS)  # internal: the resume part's subprocess
    args = ap.parse_args()
    if args.child:
        return child(args)

    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    traits = make_traits(args.traits)
    print(f"sizes: traits={args.traits} claims/trait={args.claims} types/claim={args.types} "
          f"scenarios/trait={args.scenarios} max_tokens={args.max_tokens}", flush=True)
    if "local" in parts:
        with tempfile.TemporaryDirectory() as tmp:
            throughput(f"embedded {LOCAL}", ModelSpec(model=LOCAL), build_spec(args, Path(tmp), 8), traits)
    if "server" in parts:
        with llama_server(n_ctx=2048, threads=args.server_threads) as url:
            for c in (int(x) for x in args.concurrency.split(",")):
                with tempfile.TemporaryDirectory() as tmp:
                    model = ModelSpec(model=f"openai:{MODEL_ALIAS}", base_url=url, concurrency=c)
                    throughput(f"llama.cpp server, conc {c}", model, build_spec(args, Path(tmp), c), traits)
    if "resume" in parts:
        resume(args)
    if "axes" in parts:
        axes_distribution()
        axes_effect(args)


if __name__ == "__main__":
    main()
