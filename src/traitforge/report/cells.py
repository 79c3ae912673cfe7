"""The report's shared cells and pieces: number formats, a figure with its interval and n (inline,
or as a whole table cell), the legend, a plain table, a conversation's messages. Every string that
came from a model or a data file goes through `esc`."""

from __future__ import annotations

from html import escape
from typing import Any

from traitforge.report.svg import colour


def esc(v: Any) -> str:
    return escape(str(v)) if v is not None else ""


def fmt(value: float | None, kind: str) -> str:
    if value is None:
        return "–"
    if kind in ("proportion", "accuracy"):
        return f"{value * 100:.0f}%"
    if kind == "ppl":
        return f"{value:.2f}"
    return f"{value:.2f}"


def fmt_diff(value: float | None, kind: str) -> str:
    if value is None:
        return "–"
    if kind in ("proportion", "accuracy"):
        return f"{value * 100:+.0f} pts"
    return f"{value:+.2f}"


def legend(checkpoints: list[str]) -> str:
    return '<p class="legend">' + "".join(
        f'<span><i class="sw" style="background:{colour(i)}"></i>{esc(c)}</span>'
        for i, c in enumerate(checkpoints)) + "</p>"


def pct(v: Any) -> str:
    return f"{v:.1%}" if isinstance(v, (int, float)) else "–"


def num(v: Any) -> str:
    return f"{v:g}" if isinstance(v, (int, float)) else "–"


def ci_pct(d: dict[str, Any] | None) -> str:
    if not d or d.get("value") is None:
        return "n/a"
    return f"{pct(d['value'])}<br><span class='ci'>[{pct(d.get('ci_low'))}, {pct(d.get('ci_high'))}] n={esc(d.get('n'))}</span>"


def score(v: dict[str, Any]) -> str:
    s = v.get("score")
    return "" if not isinstance(s, (int, float)) else f" {s:g}"


def messages(msgs: list[dict[str, Any]], verdicts: list[dict[str, Any]] | None = None) -> str:
    by_turn = {v["turn"]: v for v in verdicts or []}
    out, turn = [], 0
    for m in msgs:
        role = m.get("role") if m.get("role") in ("user", "assistant", "system") else "user"
        tag = ""
        if role == "user":
            turn += 1
        elif turn in by_turn:
            v = by_turn[turn]
            if v.get("violation") is True:
                tag = f'<span class="tag bad">violation{score(v)}</span>'
            elif v.get("violation") is False:
                tag = f'<span class="tag good">ok{score(v)}</span>'
            else:
                tag = '<span class="tag">ungraded</span>'
        out.append(f'<div class="msg {role}"><b>{esc(role)}</b>{tag}\n{esc(m.get("content"))}</div>')
    return "".join(out)


def excludes_zero(e: dict[str, Any] | None) -> bool:
    return bool(e) and e.get("ci_low") is not None and (e["ci_low"] > 0 or e["ci_high"] < 0)


def table(head: list[str], rows: list[tuple[str, list[str]]]) -> str:
    return ("<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>"
            + "".join(f"<tr><td>{esc(name)}</td>{''.join(cells)}</tr>" for name, cells in rows) + "</table>")


def figure(e: dict[str, Any] | None, signed: bool = False) -> str:
    """A mean with its bootstrap CI and n, from stats.Estimate.to_dict(), inside a cell (signed: a
    difference, shown with its sign)."""
    if not e or e.get("value") is None:
        return "–"
    f = (lambda v: f"{v:+.3f}") if signed else (lambda v: f"{v:.3f}")
    ci = f" [{f(e['ci_low'])}, {f(e['ci_high'])}]" if e.get("ci_low") is not None else ""
    return f'{f(e["value"])}<span class="ci">{ci} n={esc(e.get("n"))}</span>'


def estimate_cell(e: dict[str, Any] | None, kind: str = "proportion") -> str:
    """A whole table cell: a figure with its 95% interval and n."""
    if not e or e.get("value") is None:
        return '<td class="num">–</td>'
    lo, hi = e.get("ci_low"), e.get("ci_high")
    ci = f"[{fmt(lo, kind)}–{fmt(hi, kind)}] " if lo is not None and hi is not None else ""
    return f'<td class="num">{fmt(e["value"], kind)} <span class="ci">{ci}n={esc(e.get("n"))}</span></td>'


def example(summary: str, body: str) -> str:
    """A folded example: a one-line summary and its box (both already escaped HTML)."""
    return f'<details><summary>{summary}</summary><div class="box">{body}</div></details>'


def say(label: str, text: Any, css: str = "assistant") -> str:
    """One message of a conversation, escaped: who says it, and its colour (user, assistant, system)."""
    return f'<div class="msg {css}"><b>{esc(label)}</b>\n{esc(text)}</div>'
