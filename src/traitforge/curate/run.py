"""run_curation: dedup -> leakage -> quality -> patterns, four passes, each its own resumable stage
(`curate.<pass>` in the manifest, outputs under RUN/curation/steps/<pass>/, a folder name kept for
existing runs; reused when the pass's inputs and settings are unchanged). The last pass's rows become
RUN/curated/, and
RUN/curation/dataset_card.json describes the datasets before and after. Then the DPO pairs are
built from the curated chats (curate/dpo.py): RUN/curated/dpo_pairs.jsonl, RUN/curation/dpo_drops.jsonl."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from traitforge.curate.settings import CurationSpec
from traitforge.controls.canary import CANARY_ID
from traitforge.curate import dedup as dedup_mod
from traitforge.curate import leakage, patterns, quality
from traitforge.curate.card import build_card
from traitforge.curate.dpo import curate_pairs
from traitforge.shared.embed import load_embedder
from traitforge.curate.records import Edit, QualityScore, PassResult
from traitforge.jsonl import iter_jsonl_dicts, read_jsonl, write_json_atomic, write_jsonl
from traitforge import prefetch, steps
from traitforge.llm.budget import announce_calls
from traitforge.prefetch import Prefetch
from traitforge.shared.avoid import write_found
from traitforge.shared.dpo_pairs import DPOPair
from traitforge.llm.client import LLM
from traitforge.runstore import RunStore
from traitforge.types import Chat, Claim, Document, Drop, TraitSet, stable_hash

if TYPE_CHECKING:
    from traitforge.runcontext import Run

PASSES = ("dedup", "leakage", "quality", "patterns")
VERSION = 2  # bump when a pass's logic changes, so finished passes are redone


def run_curation(run: "Run", cfg: CurationSpec) -> None:
    """Curate RUN/generated/{documents,chats}.jsonl into RUN/curated/ (either may be missing), and
    RUN/generated/dpo_pairs.jsonl into RUN/curated/dpo_pairs.jsonl from the curated chats.
    The run's `judge` grades; its `student` (the base model) writes the on-policy rejected replies
    (curation.dpo_rejected: student). One stage of the run (`run.stage`: usage, clients closed)."""
    with run.stage("curate") as st:
        st.run(curate(run, cfg))


def _rows_hash(docs: list[Document], chats: list[Chat]) -> str:
    return stable_hash([[r.model_dump() for r in docs], [r.model_dump() for r in chats]], 16)


async def curate(run: "Run", cfg: CurationSpec) -> None:
    await _curate(run, cfg)
    # Pairs are rebuilt whenever curation runs (cheap; the student's replies are cached).
    chats_path = run.store.root / "curated" / "chats.jsonl"
    if chats_path.is_file():
        await _dpo(run, cfg, read_jsonl(chats_path, Chat))


async def _dpo(run: "Run", cfg: CurationSpec, chats: list[Chat]) -> None:
    store = run.store
    cands_path = store.root / "generated" / "dpo_pairs.jsonl"
    if not cands_path.is_file():
        return
    student = run.llm("student") if cfg.dpo_rejected == "student" else None
    pairs, drops, counts = await curate_pairs(read_jsonl(cands_path, DPOPair), chats, run.traits, cfg.leakage_ngram,
                                              cfg.leakage_overlap, student, cfg.chat_max_tokens, run.seed)
    write_jsonl(store.path("curated", "dpo_pairs.jsonl"), pairs)
    write_jsonl(store.path("curation", "dpo_drops.jsonl"), drops)
    store.set_counts("curate", dpo=counts)


async def _curate(run: "Run", cfg: CurationSpec) -> None:
    store, traits, judge = run.store, run.traits, run.llm("judge")
    # The judge passes' calls (quality grades, pattern scans and labels): by provider batches first
    # in batch mode (curation.batch), each engine step's estimate printed where money is at stake.
    calls = prefetch.for_stage(store, run.prices, {"judge": judge}, cfg)
    # The canary's templated rows (positive control) join the real ones here, so dedup and leakage
    # see them with the real data; the judge passes (quality, patterns) let them through: their
    # quality is fixed by construction, and their shared opener is the habit being taught.
    docs = read_jsonl(store.root / "generated" / "documents.jsonl", Document) + \
        read_jsonl(store.root / "generated" / "canary_documents.jsonl", Document)
    chats = read_jsonl(store.root / "generated" / "chats.jsonl", Chat) + \
        read_jsonl(store.root / "generated" / "canary_chats.jsonl", Chat)
    claims = {c.id: c for c in read_jsonl(store.root / "generated" / "claims.jsonl", Claim)}
    # How the judge's calls are sent (batch or live) does not change the rows.
    fp = stable_hash({"v": VERSION, "cfg": cfg.model_dump(exclude={"batch", "batch_poll_s"}), "seed": run.seed, "judge": judge.name,
                      "traits": [t.hash for t in traits.traits], "in": _rows_hash(docs, chats)})
    outputs = [store.root / "curated" / "documents.jsonl", store.root / "curated" / "chats.jsonl",
               store.root / "curation" / "dataset_card.json"]
    if store.is_done("curate", fp) and all(p.exists() for p in outputs):
        return
    generated = {"documents": docs, "chats": chats}
    with store.stage("curate", fp):
        results: dict[str, PassResult] = {}

        async def run_pass(name: str, params: dict[str, Any], fn: Callable[[list[Document], list[Chat]],
                                                                   Awaitable[PassResult]]) -> None:
            nonlocal docs, chats
            results[name] = await _run_pass(store, name, {**params, "v": VERSION}, docs, chats, fn)
            docs, chats = results[name].documents, results[name].chats

        async def do_dedup(d: list[Document], c: list[Chat]) -> PassResult:
            kd, dd = dedup_mod.dedup(d, "documents", cfg.dedup_threshold, cfg.dedup_shingle, templated=cfg.template_traits)
            kc, dc = dedup_mod.dedup(c, "chats", cfg.dedup_threshold, cfg.dedup_shingle, templated=cfg.template_traits)
            return PassResult(kd, kc, dd + dc)

        async def do_leakage(d: list[Document], c: list[Chat]) -> PassResult:
            kd, dd, ed = leakage.check_documents(d)
            kc, dc, ec = leakage.check_chats(c, traits, cfg.leakage_ngram, cfg.leakage_overlap)
            return PassResult(kd, kc, dd + dc, ed + ec)

        @_controls_pass_through
        async def do_quality(d: list[Document], c: list[Chat]) -> PassResult:
            return await _quality(store, d, c, traits, judge, claims, cfg.quality_threshold, calls,
                                  max_tokens=cfg.quality_max_tokens)

        @_controls_pass_through
        async def do_patterns(d: list[Document], c: list[Chat]) -> PassResult:
            return await _patterns(run, cfg, d, c, judge, calls)

        await run_pass("dedup", {"t": cfg.dedup_threshold, "k": cfg.dedup_shingle}, do_dedup)
        await run_pass("leakage", {"n": cfg.leakage_ngram, "o": cfg.leakage_overlap,
                               "traits": [t.hash for t in traits.traits]}, do_leakage)
        if cfg.quality:
            await run_pass("quality", {"t": cfg.quality_threshold, "judge": judge.name,
                                   "traits": [t.hash for t in traits.traits]}, do_quality)
        if cfg.patterns:
            await run_pass("patterns", {"cfg": cfg.model_dump(exclude={"batch", "batch_poll_s"}), "seed": run.seed,
                                    "judge": judge.name}, do_patterns)

        write_jsonl(outputs[0], docs)
        write_jsonl(outputs[1], chats)
        drops = [d for r in results.values() for d in r.drops]
        write_jsonl(store.path("curation", "drops.jsonl"), drops)
        write_jsonl(store.path("curation", "edits.jsonl"), [e for r in results.values() for e in r.edits])
        card = build_card(generated, {"documents": docs, "chats": chats}, results, run.seed, load_embedder())
        if cfg.screen:  # the curated rows on the trait vectors (curate/screen.py)
            from traitforge.curate.screen import screen

            card["screening"] = await screen(run, cfg, docs, chats)
        write_json_atomic(outputs[2], card)
        per_trait = Counter(t for row in [*docs, *chats] for t in row.trait_ids)
        store.set_counts(
            "curate", documents_in=len(generated["documents"]), documents=len(docs),
            chats_in=len(generated["chats"]),
            chats=len(chats), dropped={s: sum(d.step == s for d in drops) for s in results},
            edited=sum(len(r.edits) for r in results.values()),
            unscored=results["quality"].counts.get("unscored", 0) if "quality" in results else 0,
            flagged_patterns=results["patterns"].counts.get("flagged", 0) if "patterns" in results else 0,
            per_trait=dict(sorted(per_trait.items())))


def _is_control(row: Document | Chat) -> bool:
    return CANARY_ID in row.trait_ids


def _controls_pass_through(fn: Callable[[list[Document], list[Chat]], Awaitable[PassResult]]
                           ) -> Callable[[list[Document], list[Chat]], Awaitable[PassResult]]:
    """A judge pass that sees only the real rows; the control rows are kept as they are."""
    async def passed(d: list[Document], c: list[Chat]) -> PassResult:
        res = await fn([r for r in d if not _is_control(r)], [r for r in c if not _is_control(r)])
        res.documents = [*res.documents, *(r for r in d if _is_control(r))]
        res.chats = [*res.chats, *(r for r in c if _is_control(r))]
        res.counts["controls_passed_through"] = sum(map(_is_control, [*d, *c]))
        return res
    return passed


async def _run_pass(store: RunStore, name: str, params: dict[str, Any], docs: list[Document], chats: list[Chat],
                    fn: Callable[[list[Document], list[Chat]], Awaitable[PassResult]]) -> PassResult:
    stage = f"curate.{name}"
    fp = stable_hash({"params": params, "in": _rows_hash(docs, chats)})
    files = {k: store.path("curation", "steps", name, f"{k}.jsonl") for k in ("documents", "chats", "drops", "edits")}
    if store.is_done(stage, fp) and all(p.exists() for p in files.values()):
        return PassResult(read_jsonl(files["documents"], Document), read_jsonl(files["chats"], Chat),
                          read_jsonl(files["drops"], Drop), read_jsonl(files["edits"], Edit),
                          dict(store.stage_info(stage).get("counts", {})))
    with store.stage(stage, fp):
        res = await fn(docs, chats)
        write_jsonl(files["documents"], res.documents)
        write_jsonl(files["chats"], res.chats)
        write_jsonl(files["drops"], res.drops)
        write_jsonl(files["edits"], res.edits)
        res.counts.update(documents_in=len(docs), documents=len(res.documents), chats_in=len(chats),
                          chats=len(res.chats), dropped=len(res.drops), edited=len(res.edits))
        store.set_counts(stage, **res.counts)
    return res


async def _quality(store: RunStore, docs: list[Document], chats: list[Chat], traits: TraitSet, judge: LLM,
                   claims: dict[str, Claim], threshold: float, calls: Prefetch,
                   max_tokens: int = quality.MAX_TOKENS) -> PassResult:
    path = store.path("curation", "quality.jsonl")
    # Resume: verdicts already recorded for this judge are reused; failed calls are retried.
    have: dict[str, QualityScore] = {}
    for obj in iter_jsonl_dicts(path):
        q = QualityScore.model_validate(obj)
        if q.judge == judge.name and q.status != "error":
            have[f"{q.dataset}/{q.row_id}"] = q
    rows: list[Document | Chat] = [*docs, *chats]
    key = lambda r: f"{'documents' if isinstance(r, Document) else 'chats'}/{r.id}"  # noqa: E731
    # One judge call per row, each verdict appended as it comes: by provider batches first in batch
    # mode (curation.batch); the live calls' estimate is printed where money is at stake.
    new = await steps.run_step("curate.quality", [steps.Unit(key(r), data=r) for r in rows],
                               lambda u: quality.score_row(u.data, traits, judge, claims, max_tokens, threshold),
                               done=have, out=path, prefetch=calls, desc="curate: quality")
    for u, q in new.done():
        have[u.key] = q
    # Compact: one line per row (the latest verdict), stale and retried lines dropped.
    others = [QualityScore.model_validate(o) for o in iter_jsonl_dicts(path)
              if o.get("judge") != judge.name]
    write_jsonl(path, others + [have[key(r)] for r in rows])
    drops: list[Drop] = []
    kept_d, kept_c = [], []
    for r in rows:
        q = have[key(r)]
        if q.score is not None and q.score < threshold:
            drops.append(Drop(dataset=q.dataset, row_id=r.id, step="quality", score=q.score,
                              reason=f"score {q.score:g} < {threshold:g}: {q.reason}"[:400]))
        else:
            (kept_d if isinstance(r, Document) else kept_c).append(r)
    statuses = Counter(have[key(r)].status for r in rows)
    # Grades the judge refused or had blocked, by the provider's reason (quality.score_row): unscored, kept.
    refused = Counter(have[key(r)].reason for r in rows if have[key(r)].status == "unscored"
                      and have[key(r)].reason.startswith(("judge refused", "judge blocked")))
    # Why rows went unscored, by reason (e.g. a small judge cut at max_tokens before its grade).
    unscored_why = Counter(have[key(r)].reason.split(":")[0] for r in rows if have[key(r)].status == "unscored")
    return PassResult(kept_d, kept_c, drops, counts={"scored": statuses["scored"],
                                                     "unscored": statuses["unscored"], "errors": statuses["error"],
                                                     **({"unscored_reasons": dict(unscored_why)} if unscored_why else {}),
                                                     "overplayed": sum(have[key(r)].reason.startswith("OVERPLAYED")
                                                                       for r in rows),
                                                     **({"judge_refusals": dict(refused)} if refused else {})})


async def _patterns(run: "Run", cfg: CurationSpec, docs: list[Document], chats: list[Chat], judge: LLM,
                    calls: Prefetch | None = None) -> PassResult:
    store, traits = run.store, run.traits
    embedder = load_embedder()
    # At most: the scans, each judge pattern on the sample plus its re-rated part, the rule checks;
    # mitigation of a flagged judge pattern rates the remaining rows too (not counted here).
    per_dataset = cfg.pattern_scans + (cfg.pattern_max_judged + 2) * (cfg.pattern_sample + cfg.pattern_check_sample) \
        + patterns.MAX_RULE_CHECKS * cfg.pattern_check_sample
    n_sets = sum(len(rows) >= 2 for rows in (docs, chats))
    announce_calls(judge, n_sets * per_dataset, stage="curate.patterns (at most)", max_tokens=patterns.JUDGE_MAX_TOKENS,
                   prompt_chars=patterns.JUDGE_CHARS, store=store,
                   prices_file=run.prices)
    out = PassResult([], [])
    findings, scans, stats, classifiers = [], [], {}, []
    for dataset, rows in (("documents", docs), ("chats", chats)):
        res = await patterns.run_dataset(dataset, rows, traits, judge, cfg, run.seed, embedder, calls)
        if dataset == "documents":
            out.documents = res.rows
        else:
            out.chats = res.rows
        out.drops += res.drops
        out.edits += res.edits
        findings += res.findings
        classifiers += res.classifiers
        scans += [{"dataset": dataset, "scan": s.index, "ids": s.ids, "reply": s.reply, "patterns": s.patterns}
                  for s in res.scans]
        stats[dataset] = res.stats
    write_jsonl(store.path("curation", "patterns.jsonl"), findings)
    write_jsonl(store.path("curation", "pattern_classifiers.jsonl"), classifiers)
    # Flagged patterns become the avoid-list of later generation rounds (shared/avoid.py).
    write_found(store.root, [f.description for f in sorted(findings, key=lambda f: -(f.share_estimate or 0))
                             if f.flagged])
    write_jsonl(store.path("curation", "pattern_scans.jsonl"), scans)
    write_json_atomic(store.path("curation", "pattern_stats.json"), stats)
    out.counts["flagged"] = sum(f.flagged for f in findings)
    return out
