"""The patterns section: the data's patterns in each checkpoint's replies."""

from __future__ import annotations

from typing import Any

from traitforge.report.cells import ci_pct, esc, pct


def render(r: dict[str, Any]) -> str:
    """The loop closed: each pattern's share in the chat data beside its share in each checkpoint's
    replies to the behavioural eval prompts (evaluate/patterns.py)."""
    pats = r.get("model_patterns") or []
    if not pats:
        return ""
    cks = [ck for ck in r.get("checkpoints", []) if any(ck in p["checkpoints"] for p in pats)]
    head = "".join(f"<th>{esc(ck)}</th>" for ck in cks)
    rows = ""
    for p in pats:
        d = p.get("data", {})
        data = (f"{pct(d.get('before'))}<br><span class='ci'>[{pct(d.get('ci_low'))}, {pct(d.get('ci_high'))}]"
                f"</span>" if d.get("before") is not None else "n/a")
        rows += (f"<tr><td>{esc(p['description'])}<br><span class='ci'>{esc(p['pattern_id'])} · {esc(p['kind'])}"
                 f"{' · flagged in the data' if p.get('flagged') else ''}</span></td><td class='num'>{data}</td>"
                 f"<td class='num'>{pct(d.get('after'))}</td>"
                 + "".join(f"<td class='num'>{ci_pct(p['checkpoints'].get(ck))}</td>" for ck in cks) + "</tr>")
    return ("<h2>Patterns: data vs trained models</h2><p>Share of chat data rows (before and after curation) and of "
            "each checkpoint's replies to the behavioural eval prompts that clearly show each pattern, measured with "
            "the same classifier; 95% intervals.</p><table><tr><th>pattern</th><th>data before</th>"
            f"<th>data after</th>{head}</tr>{rows}</table>")
