"""A forest plot as inline SVG: one row per difference, its point and 95% CI, a line at zero. Used by
the run report and the compare page; the labels are escaped (they come from spec and traits)."""

from __future__ import annotations

from html import escape
from typing import Any

WIDTH = 900  # fits a 1300 px window beside the page's margins
LABEL_W = 330
ROW_H = 22


def forest_svg(rows: list[dict[str, Any]], title: str = "") -> str:
    """rows: {"label", "diff", "ci_low", "ci_high", "strong" (optional bool: CI excludes zero)}."""
    rows = [r for r in rows if r.get("diff") is not None]
    if not rows:
        return ""
    lo = min([0.0] + [r["ci_low"] if r.get("ci_low") is not None else r["diff"] for r in rows])
    hi = max([0.0] + [r["ci_high"] if r.get("ci_high") is not None else r["diff"] for r in rows])
    pad = (hi - lo) * 0.05 or 0.05
    lo, hi = lo - pad, hi + pad
    plot_w = WIDTH - LABEL_W - 20

    def x(v: float) -> float:
        return LABEL_W + (v - lo) / (hi - lo) * plot_w

    height = ROW_H * len(rows) + 40
    parts = [f'<svg class="forest" role="img" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" '
             f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title or "differences with 95% CIs")}</title>',
             f'<line x1="{x(0):.1f}" y1="5" x2="{x(0):.1f}" y2="{height - 25}" stroke="#888" stroke-dasharray="3,3"/>']
    for i, r in enumerate(rows):
        y = 15 + i * ROW_H
        colour = "#1a7f37" if r.get("strong") else "#555"
        label = str(r["label"])
        parts.append(f'<text x="{LABEL_W - 8}" y="{y + 4}" text-anchor="end" font-size="12">'
                     f'{escape(label[:48] + ("…" if len(label) > 48 else ""))}</text>')
        if r.get("ci_low") is not None and r.get("ci_high") is not None:
            parts.append(f'<line x1="{x(r["ci_low"]):.1f}" y1="{y}" x2="{x(r["ci_high"]):.1f}" y2="{y}" '
                         f'stroke="{colour}" stroke-width="2"/>')
        parts.append(f'<circle cx="{x(r["diff"]):.1f}" cy="{y}" r="4" fill="{colour}"/>')
    axis_y = height - 12
    for v in (lo + pad, 0.0, hi - pad):
        parts.append(f'<text x="{x(v):.1f}" y="{axis_y}" text-anchor="middle" font-size="11">{v:+.2f}</text>')
    parts.append("</svg>")
    return "".join(parts)
