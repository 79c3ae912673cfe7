"""`traitforge judge-check SPEC`: how well the run's judge agrees with someone else's labels.

The judge scores labelled transcripts with the ODCV rubric (0-5, 3 or more = misaligned) and the
figures compare its scores with the labels: Spearman's rho on the 0-5 scale, and accuracy and
Cohen's kappa at the >= 3 threshold, each with a 95% interval (seeded bootstrap over transcripts;
Wilson for accuracy) and n. A judge whose rho or kappa interval reaches 0 (chance) gets a warning
the report puts beside the figures that judge graded.

Labelled sets:
- ODCV's published transcripts (the upstream copy, or `traitforge evals fetch` of it):
  existing_results/current/agent_logs/<model>-<variant>/experiments/<scenario>/messages_record.txt,
  labelled by the per-scenario medians in evaluations/judge_all/scores_final_median.csv (column
  "<model>-<variant>"). Those labels are the medians of four frontier LLM judges (upstream reports
  Krippendorff's alpha 0.81 between them), not human labels.
- A user's JSONL file, one object per line: {"id": str, "transcript": str | "messages": [{"role",
  "content"}...], "label": 0-5, "rubric": str (optional)}; a "rubric" is the whole judge prompt
  with `$transcript` where the transcript goes (else the ODCV rubric is used).
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any, Sequence

import numpy as np

from traitforge.errors import InputError
from traitforge.evaluate.odcv.grade import (MISALIGNED_AT, Grade, OdcvRubric, Transcript, grade_transcript,
                                            parse_score, truncate)
from traitforge.shared.stats import EMPTY, Estimate, bootstrap, wilson
from traitforge.jsonl import write_json_atomic
from traitforge.llm.client import LLM
from traitforge.llm.errors import Refused

LOGS = Path("existing_results/current/agent_logs")
MEDIANS = Path("existing_results/current/evaluations/judge_all/scores_final_median.csv")
ODCV_LABELS = ("medians of four frontier LLM judges (Claude-Opus-4.7, GPT-5.5, Grok-4.20, Gemini-3.1-Pro-Preview; "
               "each model's own runs scored by the other three), inter-judge Krippendorff's alpha 0.81 as reported "
               "upstream; not human labels")
WARNING = "low agreement on ODCV"
OUTPUT = "judge_check.json"


@dataclass(frozen=True)
class Labelled:
    id: str
    transcript: str | Transcript
    label: float
    rubric: str | None = None  # a whole judge prompt with $transcript; None: the ODCV rubric


@dataclass(frozen=True)
class LabelledSet:
    items: list[Labelled]
    source: str
    labels: str  # what the labels are
    name: str  # "ODCV" or the file's name: goes into the warning
    skipped: int = 0  # transcripts without a usable label


def find_odcv_root(path: Path) -> Path:
    """The upstream copy at or under `path` (an `evals fetch` folder holds it one level down)."""
    path = Path(path)
    for cand in [path, *sorted(p for p in path.iterdir() if p.is_dir())] if path.is_dir() else []:
        if (cand / MEDIANS).is_file() and (cand / LOGS).is_dir():
            return cand
    raise InputError(f"{path}: no ODCV published results here (need {MEDIANS} and {LOGS}/)")


def load_odcv_labelled(path: Path) -> LabelledSet:
    """Every published transcript that has a numeric median score (matched by model column and
    scenario)."""
    root = find_odcv_root(path)
    with (root / MEDIANS).open(encoding="utf-8", newline="") as f:
        table = {row["scenario"]: row for row in csv.DictReader(f)}
    items, skipped = [], 0
    for record in sorted((root / LOGS).glob("*/experiments/*/messages_record.txt")):
        column, scenario = record.parents[2].name, record.parent.name
        raw = (table.get(scenario) or {}).get(column, "")
        try:
            label = float(raw)
        except (TypeError, ValueError):
            skipped += 1  # "N/A" or a scenario/model the table lacks
            continue
        items.append(Labelled(f"{column}/{scenario}", record.read_text(encoding="utf-8", errors="replace"), label))
    if not items:
        raise InputError(f"{root / LOGS}: no transcript with a published score in {root / MEDIANS}")
    return LabelledSet(items, str(root), ODCV_LABELS, "ODCV", skipped)


def load_labelled_jsonl(path: Path) -> LabelledSet:
    """A user's labelled file (format: module docstring); a bad line is a one-line error naming it."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: labelled transcripts file not found")
    items: list[Labelled] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{where}: not JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise InputError(f"{where}: expected an object with id, transcript or messages, label")
        label = row.get("label")
        if isinstance(label, bool) or not isinstance(label, (int, float)) or not 0 <= label <= 5:
            raise InputError(f"{where}: field 'label': expected a number 0-5, got {label!r}")
        if isinstance(row.get("transcript"), str) and row["transcript"].strip():
            transcript: str | Transcript = row["transcript"]
        elif isinstance(row.get("messages"), list) and row["messages"]:
            try:
                transcript = Transcript.from_messages(row["messages"])
            except ValueError as e:
                raise InputError(f"{where}: field 'messages': {e}") from None
        else:
            raise InputError(f"{where}: needs a non-empty 'transcript' (text) or 'messages' (list)")
        rubric = row.get("rubric")
        if rubric is not None and (not isinstance(rubric, str) or "$transcript" not in rubric):
            raise InputError(f"{where}: field 'rubric': expected the judge prompt as text with $transcript in it")
        items.append(Labelled(str(row.get("id", n)), transcript, float(label), rubric))
    if not items:
        raise InputError(f"{path}: no labelled transcripts")
    return LabelledSet(items, str(path), f"the labels in {path.name}", path.name)


# --- agreement -------------------------------------------------------------------------------


def _ranks(a: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank)."""
    order = np.argsort(a, kind="mergesort")
    ranks = np.empty(len(a))
    ranks[order] = np.arange(1, len(a) + 1)
    for v in np.unique(a):
        tie = a == v
        ranks[tie] = ranks[tie].mean()
    return ranks


def spearman(pairs: np.ndarray) -> float:
    """Spearman's rho of the two columns; nan when either is constant."""
    x, y = _ranks(pairs[:, 0]), _ranks(pairs[:, 1])
    if x.std() == 0 or y.std() == 0:
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])


def kappa(pairs: np.ndarray) -> float:
    """Cohen's kappa of the two columns as >= 3 / < 3; nan when chance agreement is 1."""
    a, b = pairs[:, 0] >= MISALIGNED_AT, pairs[:, 1] >= MISALIGNED_AT
    po = float(np.mean(a == b))
    pe = float(np.mean(a) * np.mean(b) + np.mean(~a) * np.mean(~b))
    return math.nan if pe >= 1 else (po - pe) / (1 - pe)


def _boot(pairs: np.ndarray, stat, boot: int, seed: int) -> Estimate:  # noqa: ANN001
    """A bootstrap interval of `stat` over transcripts. A resample where the statistic is undefined
    (one column constant) counts as chance (0): conservative, and rare beyond a handful of items."""
    value = stat(pairs)
    if len(pairs) < 2 or math.isnan(value):
        return Estimate(None if math.isnan(value) else value, len(pairs), None, None)
    est = bootstrap(pairs, lambda a: 0.0 if math.isnan(s := stat(a)) else s, resamples=boot, seed=seed)
    return Estimate(value, len(pairs), est.ci_low, est.ci_high)


def agreement(labels: Sequence[float], scores: Sequence[float], boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Spearman's rho, accuracy and Cohen's kappa at >= 3 between `labels` and `scores` (scored
    items only), each with n and a 95% interval, and the accuracy chance would give."""
    pairs = np.column_stack([np.asarray(labels, float), np.asarray(scores, float)]) if len(labels) else np.empty((0, 2))
    n = len(pairs)
    if n == 0:
        return {"n": 0, "spearman": EMPTY.to_dict(), "accuracy": EMPTY.to_dict(), "kappa": EMPTY.to_dict(),
                "chance_accuracy": None}
    a, b = pairs[:, 0] >= MISALIGNED_AT, pairs[:, 1] >= MISALIGNED_AT
    return {"n": n, "spearman": _boot(pairs, spearman, boot, seed).to_dict(),
            "accuracy": wilson(int(np.sum(a == b)), n).to_dict(),
            "kappa": _boot(pairs, kappa, boot, seed + 1).to_dict(),
            "chance_accuracy": round(float(np.mean(a) * np.mean(b) + np.mean(~a) * np.mean(~b)), 6)}


def low_agreement(figures: dict[str, Any]) -> bool:
    """The judge cannot be told from chance: rho's or kappa's interval reaches 0 (or is missing)."""
    for key in ("spearman", "kappa"):
        e = figures.get(key) or {}
        if e.get("value") is None or e.get("ci_low") is None or e["ci_low"] <= 0:
            return True
    return False


def warning_text(result: dict[str, Any]) -> str | None:
    """The warning the report puts beside the figures this judge graded (None: agreement shown)."""
    if not low_agreement(result.get("agreement") or {}):
        return None
    name = result.get("set_name") or "ODCV"
    base = WARNING if name == "ODCV" else f"low agreement on {name}"
    a = result.get("agreement") or {}
    rho, kap = (a.get("spearman") or {}), (a.get("kappa") or {})
    return (f"{base}: judge {result.get('judge')} vs {result.get('labels_short', 'the labels')}, "
            f"rho {_f(rho.get('value'))} [{_f(rho.get('ci_low'))}, {_f(rho.get('ci_high'))}], kappa "
            f"{_f(kap.get('value'))} [{_f(kap.get('ci_low'))}, {_f(kap.get('ci_high'))}], n={a.get('n', 0)}: "
            "its interval includes chance, so read the figures it graded with care")


def _f(v: Any) -> str:
    return "–" if v is None else f"{v:.2f}"


# --- the check -------------------------------------------------------------------------------


async def _grade(judge: LLM, item: Labelled, rubric: OdcvRubric | None, max_chars: int, keep_steps: int,
                 max_tokens: int) -> Grade:
    if item.rubric is None:
        if rubric is None:
            raise InputError(f"{item.id}: no rubric in the row and no ODCV rubric file given")
        return await grade_transcript(judge, rubric, item.transcript, max_chars=max_chars, keep_steps=keep_steps,
                                      max_tokens=max_tokens)
    t = item.transcript if isinstance(item.transcript, Transcript) else Transcript.from_text(item.transcript)
    text, cut = truncate(t, max_chars, keep_steps)
    try:
        reply = await judge.generate_one(Template(item.rubric).safe_substitute(transcript=text), temperature=0.0,
                                         max_tokens=max_tokens)
    except Refused as e:
        return Grade(None, f"judge {e.outcome}: {e.reason or 'no reason given'}", cut=cut.to_dict())
    score, reasoning, why = parse_score(reply)
    return Grade(score, why, reasoning, (reply or "")[:4000], cut.to_dict())


async def judge_check(judge: LLM, labelled: LabelledSet, rubric: OdcvRubric | None, *, max_chars: int = 100_000,
                      keep_steps: int = 3, max_tokens: int = 800, boot: int = 1000, seed: int = 0,
                      judge_name: str | None = None) -> dict[str, Any]:
    """Grade every labelled transcript with `judge` and compare: the result the command prints, the
    report reads (RUN/judge_check.json) and `warning_text` judges."""
    from traitforge.progress import gather_progress

    grades = await gather_progress([_grade(judge, it, rubric, max_chars, keep_steps, max_tokens)
                                    for it in labelled.items], desc="judge check")
    scored = [(it.label, g.score) for it, g in zip(labelled.items, grades) if g.score is not None]
    labels = [it.label for it in labelled.items]
    result: dict[str, Any] = {
        "judge": judge_name or f"{judge.backend.provider}:{judge.backend.model}",
        "set_name": labelled.name, "source": labelled.source, "labels": labelled.labels,
        "labels_short": "published ODCV medians" if labelled.name == "ODCV" else f"the labels of {labelled.name}",
        "rubric": rubric.source if rubric is not None else "per-row rubric",
        "n_items": len(labels), "n_labelled_misaligned": sum(x >= MISALIGNED_AT for x in labels),
        "skipped_unlabelled": labelled.skipped, "threshold": MISALIGNED_AT,
        "max_transcript_chars": max_chars, "truncated": sum(bool(g.cut.get("cut")) for g in grades),
        "unscored": len(grades) - len(scored),
        "unscored_reasons": dict(Counter(g.reason.split(":")[0][:80] for g in grades if g.score is None)),
        "agreement": agreement([s[0] for s in scored], [s[1] for s in scored], boot, seed),
        "items": [{"id": it.id, "label": it.label, "score": g.score, "unscored": g.reason[:200],
                   "cut": bool(g.cut.get("cut"))} for it, g in zip(labelled.items, grades)]}
    result["warning"] = warning_text(result)
    return result


def write_judge_check(path: Path, result: dict[str, Any]) -> Path:
    write_json_atomic(path, result)
    return path


def read_judge_check(run_dir: Path) -> dict[str, Any] | None:
    """RUN/judge_check.json, when the command was run on this run (the report reads it)."""
    p = Path(run_dir) / OUTPUT
    return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else None


def format_text(result: dict[str, Any]) -> str:
    """The command's printout."""
    a = result["agreement"]

    def est(key: str) -> str:
        e = a.get(key) or {}
        return f"{_f(e.get('value'))} [{_f(e.get('ci_low'))}, {_f(e.get('ci_high'))}]"

    lines = [f"judge {result['judge']} on {result['n_items']} labelled transcripts from {result['source']}",
             f"labels: {result['labels']}; {result['n_labelled_misaligned']} of {result['n_items']} labelled "
             f">= {result['threshold']:g}" + (f"; {result['skipped_unlabelled']} without a label left out"
                                              if result.get("skipped_unlabelled") else ""),
             f"transcripts over {result['max_transcript_chars']} characters cut for the judge: {result['truncated']}",
             f"scored {a['n']}, unscored {result['unscored']}"
             + (f" ({', '.join(f'{k}: {v}' for k, v in result['unscored_reasons'].items())})"
                if result["unscored_reasons"] else ""),
             f"Spearman rho {est('spearman')}",
             f"accuracy at >= {result['threshold']:g}: {est('accuracy')} (chance {_f(a.get('chance_accuracy'))})",
             f"Cohen's kappa at >= {result['threshold']:g}: {est('kappa')}",
             "95% intervals; n = scored transcripts"]
    if result.get("warning"):
        lines.append("WARNING: " + result["warning"])
    return "\n".join(lines)


def report_warning(run_dir: Path, judge: str | None = None) -> str | None:
    """The warning to put beside the figures the run's judge graded: RUN/judge_check.json's, when
    it checked that judge (`judge`: the run's models.judge; None: whichever it checked)."""
    result = read_judge_check(run_dir)
    if not result or (judge is not None and result.get("judge") != judge):
        return None
    return result.get("warning")
