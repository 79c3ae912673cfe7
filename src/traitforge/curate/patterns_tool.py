"""`traitforge patterns FILE...`: curation's pattern pipeline (curate/patterns.run_dataset, the same
implementation a run uses) on any chat or document file, without a run spec.

Cheap passes over every row (openers, closers, n-grams, markdown structure, conclusion-first), the
judge's scans of whole transcripts, candidates kept when more than one scan names them, one
autorater per pattern on a seeded sample (share at strict and broad thresholds, 95% interval
corrected for the rater's self-agreement), flagged by the interval (pattern_share.is_flagged).
Writes OUT/patterns.json and OUT/patterns.html; --mitigate also OUT/mitigated.jsonl with the
shares before and after; --compare measures a second corpus the same way, side by side.

Part of curation (it is its pattern pass, run alone): imports inputs/ and curate, never a run store."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from traitforge.curate.settings import CurationSpec
from traitforge.shared.embed import Embedder
from traitforge.curate.pattern_scan import SCAN_CHARS, SCAN_MAX_TOKENS
from traitforge.curate.pattern_share import FINDING_FLOOR
from traitforge.curate.patterns import DatasetPatterns, run_dataset
from traitforge.shared.text import units
from traitforge.errors import TraitforgeError
from traitforge.inputs import read_chats, read_documents
from traitforge.llm.client import LLM
from traitforge.types import Chat, Document, TraitSet

EMBEDDED = "smollm2-135m"
DEFAULT_JUDGE = f"local:{EMBEDDED}"
EXAMPLES = 3  # example rows shown per pattern
EXAMPLE_CHARS = 600
MAX_IDS = 2000  # matching row ids kept per pattern in patterns.json (the count is always whole)
NO_TRAITS = TraitSet("", "", ())


@dataclass
class Settings:
    """The tool's knobs: the curation spec's pattern fields, with the tool's own defaults."""

    scans: int = 12
    scan_batch: int = 24
    scan_chars: int = SCAN_CHARS
    scan_max_tokens: int = SCAN_MAX_TOKENS
    sample: int = 300
    check_sample: int = 100
    max_share: float = 0.2
    max_judged: int = 8
    judge_max_tokens: int = 160
    mitigate: str | None = None  # "downsample" | "rewrite"
    seed: int = 0

    @classmethod
    def for_judge(cls, judge: str, **kw: Any) -> "Settings":
        """The embedded 135M judge runs on the CPU with a short context: fewer, smaller scans and
        short verdicts, so a 10,000-row corpus takes minutes (its scans rarely yield a usable
        pattern; the cheap passes carry the measurement)."""
        if judge.startswith("local:") and judge.endswith(EMBEDDED):
            small = dict(scans=2, scan_batch=4, scan_chars=1500, scan_max_tokens=120, sample=40,
                         check_sample=10, max_judged=1, judge_max_tokens=24)
            kw = {**small, **{k: v for k, v in kw.items() if v is not None}}
        return cls(**{k: v for k, v in kw.items() if v is not None})

    def curation_settings(self) -> CurationSpec:
        return CurationSpec(pattern_scans=self.scans, scan_batch=self.scan_batch, pattern_sample=self.sample,
                            pattern_check_sample=self.check_sample, pattern_max_share=self.max_share,
                            pattern_max_judged=self.max_judged, pattern_judge_max_tokens=self.judge_max_tokens,
                            pattern_mitigation=self.mitigate or "none", template_traits=[])


@dataclass
class Corpus:
    dataset: str  # "chats" | "documents"
    rows: list[Any]
    notes: list[str]  # one import summary line per file


def load(paths: Sequence[Path]) -> Corpus:
    """Chats (OpenAI or ShareGPT) or documents from every file; rows left out are counted per file.
    Ids are made unique across files."""
    rows: list[Any] = []
    notes: list[str] = []
    dataset = ""
    for k, path in enumerate(paths):
        if not path.exists():
            raise TraitforgeError(f"{path}: no such file or folder")
        got: list[Any]
        got, report = read_chats(path)
        kind = "chats"
        if not got and report.dropped.get("not a chat"):
            got, report = read_documents(path)
            kind = "documents"
        if dataset and got and kind != dataset:
            raise TraitforgeError(f"{path}: {kind}, but the files before it are {dataset}: measure them apart")
        dataset = dataset or (kind if got else "")
        notes.append(report.summary())
        if len(paths) > 1:
            got = [r.model_copy(update={"id": f"{k}:{r.id}"}) for r in got]
        rows += got
    if len(rows) < 2:
        raise TraitforgeError(f"{', '.join(map(str, paths))}: {len(rows)} usable rows; patterns need at least 2")
    return Corpus(dataset, rows, notes)


async def measure(corpus: Corpus, judge: LLM, settings: Settings, embedder: Embedder | None) -> DatasetPatterns:
    return await run_dataset(corpus.dataset, corpus.rows, NO_TRAITS, judge, settings.curation_settings(), settings.seed,
                             embedder, scan_chars=settings.scan_chars, scan_max_tokens=settings.scan_max_tokens)


def kind_of(pattern_id: str) -> str:
    return pattern_id.split(":", 1)[0]


def summarise(res: DatasetPatterns, rows: Sequence[Any]) -> list[dict[str, Any]]:
    """One entry per measured pattern: shares (strict and broad, with intervals), whether flagged,
    which rated rows match, a few examples. Sorted by estimated share."""
    by_id = {r.id: r for r in rows}
    out = []
    for f in res.findings:
        labels = res.labels.get(f.pattern_id, {})
        strict = sorted(i for i, v in labels.items() if v == 1.0)
        broad = sorted(i for i, v in labels.items() if v is not None and v >= 0.5)
        b = res.broad.get(f.pattern_id)
        out.append({
            "pattern_id": f.pattern_id, "kind": kind_of(f.pattern_id), "description": f.description,
            "classifier": f.classifier, "source": f.source,
            "share": f.share_estimate, "ci_low": f.ci_low, "ci_high": f.ci_high, "n": f.n,
            "share_observed": f.share_strict, "judge_accuracy": f.judge_accuracy,
            "share_broad": b.estimate if b else f.share_broad, "broad_ci_low": b.ci_low if b else None,
            "broad_ci_high": b.ci_high if b else None,
            "flagged": f.flagged, "finding": f.flagged or (f.share_estimate or 0) > FINDING_FLOOR,
            "share_after": f.share_after, "share_after_estimate": f.share_after_estimate,
            "unscored": sum(v is None for v in labels.values()),
            "matches_total": len(strict), "matches": strict[:MAX_IDS],
            "broad_matches": [i for i in broad if i not in set(strict)][:MAX_IDS],
            "examples": [{"id": i, "text": "\n\n".join(units(by_id[i]))[:EXAMPLE_CHARS]}
                         for i in strict[:EXAMPLES] if i in by_id],
        })
    out.sort(key=lambda p: (-(p["share"] or 0), p["pattern_id"]))
    return out


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def table(patterns: Sequence[dict[str, Any]], all_rows: bool = False) -> str:
    """The screen table: findings (above FINDING_FLOOR, or flagged) unless all_rows."""
    shown = [p for p in patterns if all_rows or p["finding"]]
    head = f"{'pattern':<58} {'kind':<9} {'share%':>6} {'95% CI':>13} {'n':>6}  flagged"
    lines = [head, "-" * len(head)]
    for p in shown:
        ci = f"[{_pct(p['ci_low'])}, {_pct(p['ci_high'])}]"
        lines.append(f"{p['description'][:58]:<58} {p['kind']:<9} {_pct(p['share']):>6} {ci:>13} {p['n']:>6}  "
                     f"{'FLAGGED' if p['flagged'] else ''}")
    if not shown:
        lines.append(f"(no pattern above {FINDING_FLOOR:.0%})")
    return "\n".join(lines)


def compare_table(a: Sequence[dict[str, Any]], b: Sequence[dict[str, Any]], names: tuple[str, str]) -> str:
    """Two corpora's shares side by side, by pattern id (a pattern one corpus did not yield: "-")."""
    pa, pb = {p["pattern_id"]: p for p in a}, {p["pattern_id"]: p for p in b}
    ids = [i for i in pa if pa[i]["finding"]] + [i for i in pb if pb[i]["finding"] and not (i in pa and pa[i]["finding"])]
    head = f"{'pattern':<50} {names[0][:22]:>24} {names[1][:22]:>24}"
    lines = [head, "-" * len(head)]

    def cell(p: dict[str, Any] | None) -> str:
        if p is None:
            return "-"
        return f"{_pct(p['share'])} [{_pct(p['ci_low'])}, {_pct(p['ci_high'])}]{'*' if p['flagged'] else ''}"
    for i in ids:
        desc = (pa.get(i) or pb[i])["description"]
        lines.append(f"{desc[:50]:<50} {cell(pa.get(i)):>24} {cell(pb.get(i)):>24}")
    lines.append("(* flagged)")
    return "\n".join(lines)


def row_json(row: Any) -> dict[str, Any]:
    if isinstance(row, Document):
        return {"id": row.id, "text": row.text}
    assert isinstance(row, Chat)
    return {"id": row.id, "messages": [{"role": m.role, "content": m.content} for m in row.messages]}


def report(res: DatasetPatterns, corpus: Corpus, files: Sequence[Path], judge: str,
           settings: Settings) -> dict[str, Any]:
    return {
        "files": [str(f) for f in files], "dataset": corpus.dataset, "rows": len(corpus.rows),
        "imports": corpus.notes, "judge": judge, "seed": settings.seed,
        "flag_rule": (f"flagged when the estimate is over {settings.max_share:.0%}, or its 95% interval reaches "
                      f"over {settings.max_share:.0%} with its lower bound over {settings.max_share / 2:.0%}; "
                      f"reported when the estimate is over {FINDING_FLOOR:.0%}"),
        "judge_unscored": res.stats.get("judge_unparsed", {}), "judge_errors": res.stats.get("judge_errors", {}),
        "scans": [{"index": s.index, "rows": len(s.ids), "patterns": s.patterns} for s in res.scans],
        "patterns": summarise(res, corpus.rows),
    }


def write(out: Path, data: dict[str, Any], res: DatasetPatterns | None = None) -> list[Path]:
    from traitforge.curate.patterns_page import page

    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "patterns.json", out / "patterns.html"]
    paths[0].write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
    paths[1].write_text(page(data), encoding="utf-8")
    if res is not None:
        paths.append(out / "mitigated.jsonl")
        with paths[-1].open("w", encoding="utf-8") as fh:
            for r in res.rows:
                fh.write(json.dumps(row_json(r), ensure_ascii=False) + "\n")
    return paths


def mitigation_lines(data: dict[str, Any]) -> str:
    lines = [f"{'pattern':<58} {'before%':>8} {'after%':>8}"]
    for p in data["patterns"]:
        if p["flagged"]:
            lines.append(f"{p['description'][:58]:<58} {_pct(p['share']):>8} "
                         f"{_pct(p['share_after_estimate'] if p['share_after_estimate'] is not None else p['share_after']):>8}")
    return "\n".join(lines)


def run_tool(files: Sequence[Path], judge_name: str, out: Path, settings: Settings, compare: Path | None = None,
             judge: LLM | None = None, embedder: Embedder | None | bool = True) -> tuple[str, dict[str, Any]]:
    """Measure, write, and return the text for the screen and the report. judge/embedder: given by
    tests; by default the named judge (LLM cache in OUT/cache.sqlite) and the sentence embedder
    when installed."""
    from traitforge.shared.embed import load_embedder
    from traitforge.llm.registry import make_llm

    corpus = load(files)
    if judge is None:
        out.mkdir(parents=True, exist_ok=True)
        judge = make_llm(judge_name, out / "cache.sqlite")
    emb = load_embedder() if embedder is True else (embedder or None)
    res = asyncio.run(measure(corpus, judge, settings, emb))
    data = report(res, corpus, files, judge_name, settings)
    paths = write(out, data, res if settings.mitigate else None)
    text = "\n".join(corpus.notes) + "\n\n" + table(data["patterns"])
    if settings.mitigate:
        text += f"\n\nmitigation ({settings.mitigate}): {len(corpus.rows) - len(res.rows)} rows dropped, " \
                f"{len(res.edits)} rewritten\n" + mitigation_lines(data)
    if compare is not None:
        other = load([compare])
        res_b = asyncio.run(measure(other, judge, Settings(**{**settings.__dict__, "mitigate": None}), emb))
        data["compare"] = report(res_b, other, [compare], judge_name, settings)
        write(out / "compare", data["compare"])
        (out / "patterns.json").write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
        text += "\n\n" + compare_table(data["patterns"], data["compare"]["patterns"],
                                       (", ".join(f.name for f in files), compare.name))
    text += "\n\n" + "\n".join(f"wrote {p}" for p in paths)
    return text, data
