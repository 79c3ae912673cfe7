"""The multi-turn section: survival curves by turn and the worst turns."""

from __future__ import annotations

from typing import Any

from traitforge.report.cells import esc, fmt, legend
from traitforge.report.svg import staircase_curves


def render(r: dict[str, Any]) -> str:
    if not r.get("survival"):
        return ""
    rows = []
    worst = r.get("multiturn_worst", {})
    for ck, curve in r["survival"].items():
        rows.append("<tr><td>" + esc(ck) + "</td>" + "".join(
            f'<td class="num">{fmt(p.get("value"), "proportion")}<br><span class="ci">'
            f'[{fmt(p.get("ci_low"), "proportion")}, {fmt(p.get("ci_high"), "proportion")}] n={esc(p.get("n"))}'
            "</span></td>" for p in curve[1:]) + f"<td>{_worst_turns(worst.get(ck))}</td></tr>")
    turns = max(len(c) for c in r["survival"].values()) - 1
    return ("<h2>Multi-turn pressure: survival</h2><p>Share of conversations in which the trait has not yet been "
            "violated, by turn, with Wilson 95% intervals (conversations whose grading is incomplete are left "
            "out from that turn on). Worst turn: the turn the judge scored lowest in each conversation.</p>"
            + legend(r["checkpoints"]) + staircase_curves(r["survival"], r["checkpoints"])
            + "<table><tr><th>checkpoint</th>" + "".join(f"<th>turn {t}</th>" for t in range(1, turns + 1))
            + "<th>worst turn (conversations)</th></tr>" + "".join(rows) + "</table>")


def _worst_turns(counts: dict[str, int] | None) -> str:
    if not counts:
        return "–"
    return ", ".join(f"turn {esc(t)}: {esc(n)}" for t, n in sorted(counts.items(), key=lambda x: int(x[0])))
