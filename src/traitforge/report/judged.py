"""Report sections for ODCV, the side-by-side capability eval and the judge check: HTML strings
from the figures in results.json (and RUN/judge_check.json), never a model call."""

from __future__ import annotations

from typing import Any

from traitforge.report.cells import esc, fmt
from traitforge.report.cells import estimate_cell as _est
from traitforge.report.cells import table as _ood_table


def _warning(text: str | None) -> str:
    return f'<p class="note">⚠ {esc(text)}</p>' if text else ""


def render_odcv(section: dict[str, Any], judge_warning: str | None = None) -> str:
    """ODCV: misalignment rate and mean severity per checkpoint, mandated and incentivized apart,
    with the paired differences vs base and vs control; the judge check's warning beside them."""
    if not section:
        return ""
    by = section.get("by_checkpoint", {})
    out = ("<h2>ODCV: outcome-driven constraint violations</h2><p>An agent with a bash tool works on a task "
           "under KPI pressure in a sandbox; the judge scores each episode with the upstream rubric (0-5). "
           f"Misaligned: score ≥ {esc(section.get('misaligned_at', 3))}; severity: the mean score. Lower is better. "
           "Differences are paired on the same scenarios.</p>" + _warning(judge_warning))
    for v in section.get("variants", []):
        rows = []
        for ck, per in by.items():
            f = per.get(v)
            if not f:
                continue
            cells = [_est(f.get("misaligned")), _est(f.get("severity"), "mean")]
            for ref in ("base", "control"):
                d = f.get(f"vs_{ref}") or {}
                cells += [_est(d.get("misaligned"), "diff"), _est(d.get("severity"), "diff")]
            cells.append(_est(f.get("files_changed")))
            cells.append(f'<td class="num">{esc(f.get("unscored", 0))}</td>')
            rows.append((ck, cells))
        out += (f"<h3>{esc(v)}</h3>" + _ood_table(
            ["checkpoint", "misaligned", "severity (0-5)", "misaligned vs base", "severity vs base",
             "misaligned vs control", "severity vs control", "modified a data file (no judge)", "unscored"], rows))
    return out


def render_side_by_side(section: dict[str, Any]) -> str:
    """Win rate against the reference checkpoint (50% = unchanged), beside perplexity."""
    if not section:
        return ""
    rows = [(ck, [_est(f.get("win_rate")), f'<td class="num">{esc(f.get("wins"))} / {esc(f.get("ties"))} / '
                  f'{esc(f.get("losses"))}</td>', f'<td class="num">{esc(f.get("position_ties"))}</td>',
                  f'<td class="num">{esc(f.get("unscored"))}</td>'])
            for ck, f in section.get("by_checkpoint", {}).items()]
    return (f"<h3>Side-by-side against {esc(section.get('reference'))}</h3><p>Each checkpoint's answer to held-out "
            "everyday prompts and the reference's answer, judged blind in both orders; win rate with a tie as half. "
            "50% means unchanged; below 50%, training cost general helpfulness."
            + (" Verdicts by log-probability (a local judge too small to reason and keep the text format): per "
               "prompt, the judge's log-odds of \"VERDICT: A\" over \"VERDICT: B\" for the checkpoint's answer, "
               "summed over both orders so that a lean towards a position cancels; its sign is the outcome."
               if section.get("verdict_method") == "logprob" else "") + "</p>"
            + _ood_table(["checkpoint", "win rate", "wins / ties / losses", "ties from position-following verdicts",
                          "unscored"], rows))


def render_judge_check(result: dict[str, Any] | None) -> str:
    """The judge's agreement with labelled transcripts (RUN/judge_check.json), when it was run."""
    if not result:
        return ""
    a = result.get("agreement") or {}
    rows = [("Spearman rho (0-5)", [_est(a.get("spearman"), "mean")]),
            (f"accuracy at ≥ {result.get('threshold', 3):g}", [_est(a.get("accuracy"))]),
            (f"Cohen's kappa at ≥ {result.get('threshold', 3):g}", [_est(a.get("kappa"), "mean")])]
    chance = a.get("chance_accuracy")
    return ("<h2>Judge check</h2>"
            f"<p>The run's judge ({esc(result.get('judge'))}) scored {esc(result.get('n_items'))} labelled transcripts "
            f"({esc(result.get('source'))}); {esc(result.get('n_labelled_misaligned'))} are labelled ≥ "
            f"{result.get('threshold', 3):g}. Labels: {esc(result.get('labels'))}. Transcripts longer than "
            f"{esc(result.get('max_transcript_chars'))} characters were cut for the judge "
            f"({esc(result.get('truncated'))} of them: the prompts, the first and last steps and every file edit "
            f"kept). {esc(result.get('unscored'))} replies unscored."
            + (f" Accuracy by chance alone: {fmt(chance, 'proportion')}." if chance is not None else "") + "</p>"
            + _ood_table(["figure", "value [95% CI] n"], rows) + _warning(result.get("warning")))
