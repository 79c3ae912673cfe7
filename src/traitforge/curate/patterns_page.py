"""The `traitforge patterns` HTML page: one section per pattern (share with its interval, which rows
match, examples). Plain HTML, no script; every piece of data escaped."""

from __future__ import annotations

from html import escape
from typing import Any

IDS_SHOWN = 50
FLAG = '<span class="flag">flagged</span>'
STYLE = ("body{font-family:sans-serif;max-width:70em;margin:2em auto}table{border-collapse:collapse}"
         "td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}.flag{color:#b00;font-weight:bold}"
         "pre{white-space:pre-wrap;background:#f6f6f6;padding:.5em}")


def _pct(x: Any) -> str:
    return "-" if x is None else f"{100 * float(x):.1f}%"


def _ci(lo: Any, hi: Any) -> str:
    return "" if lo is None or hi is None else f"[{_pct(lo)}, {_pct(hi)}]"


def _summary_row(p: dict[str, Any]) -> str:
    flag = FLAG if p["flagged"] else ("finding" if p["finding"] else "")
    return (f'<tr><td><a href="#{escape(p["pattern_id"], quote=True)}">{escape(p["description"])}</a></td>'
            f'<td>{escape(p["kind"])}</td><td>{_pct(p["share"])}</td><td>{_ci(p["ci_low"], p["ci_high"])}</td>'
            f'<td>{_pct(p["share_broad"])}</td><td>{p["n"]}</td><td>{flag}</td></tr>')


def _section(p: dict[str, Any]) -> str:
    ex = "".join(f"<p>{escape(e['id'])}</p><pre>{escape(e['text'])}</pre>" for e in p["examples"])
    ids = ", ".join(escape(i) for i in p["matches"][:IDS_SHOWN])
    more = p["matches_total"] - min(len(p["matches"]), IDS_SHOWN)
    after = "" if p["share_after"] is None or p["share_after"] == p["share_observed"] else \
        f"<p>After mitigation: {_pct(p['share_after_estimate'] if p['share_after_estimate'] is not None else p['share_after'])}</p>"
    return (f'<h2 id="{escape(p["pattern_id"], quote=True)}">{escape(p["description"])}</h2>'
            f"<p>{escape(p['kind'])} &middot; classifier {escape(p['classifier'])} &middot; "
            f"{FLAG if p['flagged'] else 'not flagged'}</p>"
            f"<p>Strict share {_pct(p['share'])} {_ci(p['ci_low'], p['ci_high'])} (observed {_pct(p['share_observed'])}"
            f"{'' if p['judge_accuracy'] is None else ', rater accuracy ' + _pct(p['judge_accuracy'])}); "
            f"broad share {_pct(p['share_broad'])} {_ci(p['broad_ci_low'], p['broad_ci_high'])}; "
            f"{p['n']} rows rated, {p['unscored']} unscored.</p>{after}"
            f"<p>Rows that match ({p['matches_total']} of those rated): {ids}{f' and {more} more' if more > 0 else ''}</p>"
            f"{ex}")


def page(data: dict[str, Any]) -> str:
    pats = data["patterns"]
    head = "".join(f"<li>{escape(n)}</li>" for n in data.get("imports", []))
    rows = "".join(_summary_row(p) for p in pats)
    body = "".join(_section(p) for p in pats if p["finding"]) or "<p>No pattern above the finding floor.</p>"
    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Patterns</title>"
            f"<style>{STYLE}</style></head><body><h1>Patterns in {escape(', '.join(data['files']))}</h1>"
            f"<ul>{head}</ul><p>{data['rows']} {escape(data['dataset'])}; judge {escape(data['judge'])}. "
            f"{escape(data['flag_rule'])}.</p>"
            "<table><tr><th>pattern</th><th>kind</th><th>share</th><th>95% CI</th><th>broad</th><th>n</th><th></th></tr>"
            f"{rows}</table>{body}</body></html>")
