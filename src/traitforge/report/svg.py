"""Small inline SVG charts drawn by hand (no JavaScript, no CDN): grouped bars with 95% CI error
bars, and staircase (survival) curves. Every label passes through html.escape."""

from __future__ import annotations

from html import escape
from typing import Any, Sequence

PALETTE = ("#6b7280", "#2563eb", "#16a34a", "#c2410c", "#9333ea", "#0891b2")


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _fmt(v: float, percent: bool) -> str:
    return f"{v * 100:.0f}%" if percent else f"{v:.2g}" if abs(v) < 10 else f"{v:.0f}"


def grouped_bars(groups: Sequence[str], series: Sequence[str],
                 values: dict[tuple[str, str], dict[str, Any]], *, y_max: float | None = None,
                 percent: bool = True, width: int = 760, height: int = 240) -> str:
    """One group per trait, one bar per checkpoint; values[(group, series)] has value/ci_low/ci_high/n."""
    left, bottom, top = 44, 42, 12
    plot_w, plot_h = width - left - 10, height - bottom - top
    vals = [v for v in values.values() if v.get("value") is not None]
    hi = y_max if y_max is not None else max([max(v.get("ci_high") or v["value"], v["value"]) for v in vals] + [1e-9])
    hi = hi * (1.0 if y_max is not None else 1.1)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" class="chart">']
    for k in range(5):  # gridlines
        yv = hi * k / 4
        y = top + plot_h - plot_h * k / 4
        out.append(f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="ax">{_fmt(yv, percent)}</text>')
    gw = plot_w / max(1, len(groups))
    bw = min(28.0, gw * 0.8 / max(1, len(series)))
    for gi, g in enumerate(groups):
        gx = left + gi * gw + (gw - bw * len(series)) / 2
        for si, s in enumerate(series):
            v = values.get((g, s))
            x = gx + si * bw
            if not v or v.get("value") is None:
                mark = "n/a" if v and v.get("not_applicable") else "–"
                out.append(f'<text x="{x + bw / 2:.1f}" y="{top + plot_h - 4:.1f}" text-anchor="middle" '
                           f'class="ax">{mark}</text>')
                continue

            def ypos(val: float) -> float:
                return top + plot_h - plot_h * max(0.0, min(val, hi)) / hi

            y = ypos(v["value"])
            tip = escape(f"{s} · {g}: {_fmt(v['value'], percent)} (n={v.get('n')})")
            out.append(f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{bw - 2:.1f}" height="{top + plot_h - y:.1f}" '
                       f'fill="{colour(si)}" opacity="0.85"><title>{tip}</title></rect>')
            if v.get("ci_low") is not None and v.get("ci_high") is not None:
                cx, y1, y2 = x + bw / 2, ypos(v["ci_low"]), ypos(v["ci_high"])
                out.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{y1:.1f}" y2="{y2:.1f}" stroke="#111" '
                           f'stroke-width="1.3"/>')
                for yy in (y1, y2):
                    out.append(f'<line x1="{cx - 4:.1f}" x2="{cx + 4:.1f}" y1="{yy:.1f}" y2="{yy:.1f}" '
                               f'stroke="#111" stroke-width="1.3"/>')
        label = g if len(g) <= 18 else g[:17] + "…"
        out.append(f'<text x="{left + gi * gw + gw / 2:.1f}" y="{height - bottom + 16}" text-anchor="middle" '
                   f'class="lbl">{escape(label)}</text>')
    out.append(f'<line x1="{left}" x2="{width - 10}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="#9ca3af"/>')
    out.append("</svg>")
    return "".join(out)


def staircase_curves(curves: dict[str, list[dict[str, Any]]], series_order: Sequence[str], *,
                     width: int = 520, height: int = 240) -> str:
    """Survival curves: share of conversations not yet violated (y) by turn (x), as steps, with a
    95% interval bar at each turn where the point has one."""
    left, bottom, top, right = 44, 36, 12, 12
    plot_w, plot_h = width - left - right, height - bottom - top
    turns = max((p["turn"] for c in curves.values() for p in c), default=1) or 1
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" class="chart">']

    def xy(t: float, v: float) -> tuple[float, float]:
        return left + plot_w * t / turns, top + plot_h - plot_h * v

    for k in range(5):
        _, y = xy(0, k / 4)
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="ax">{k * 25}%</text>')
    for t in range(turns + 1):
        x, _ = xy(t, 0)
        out.append(f'<text x="{x:.1f}" y="{height - bottom + 16}" text-anchor="middle" class="ax">{t}</text>')
    out.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 4}" text-anchor="middle" class="ax">turn</text>')
    for si, name in enumerate(series_order):
        pts = [p for p in curves.get(name, []) if p.get("value") is not None]
        if not pts:
            continue
        d, prev = [], None
        for p in pts:
            x, y = xy(p["turn"], p["value"])
            if prev is None:
                d.append(f"M{x:.1f},{y:.1f}")
            else:
                d.append(f"H{x:.1f}V{y:.1f}")
            prev = (x, y)
        off = (si - (len(series_order) - 1) / 2) * 1.5  # tiny offset so identical curves stay visible
        out.append(f'<path d="{" ".join(d)}" fill="none" stroke="{colour(si)}" stroke-width="2.5" '
                   f'transform="translate(0,{off:.1f})"><title>{escape(name)}</title></path>')
        for p in pts:
            x, y = xy(p["turn"], p["value"])
            if p.get("ci_low") is not None and p.get("ci_high") is not None:
                (_, y1), (_, y2), cx = xy(0, p["ci_low"]), xy(0, p["ci_high"]), x + off * 3
                out.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{y1:.1f}" y2="{y2:.1f}" stroke="{colour(si)}" '
                           f'stroke-width="1.2" opacity="0.7" class="ci-bar"/>')
            tip = escape(f"{name}, turn {p['turn']}: {p['value']:.0%} of n={p.get('n')}"
                         + (f", 95% CI {p['ci_low']:.0%}-{p['ci_high']:.0%}" if p.get("ci_low") is not None
                            and p.get("ci_high") is not None else ""))
            out.append(f'<circle cx="{x:.1f}" cy="{y + off:.1f}" r="3" fill="{colour(si)}">'
                       f'<title>{tip}</title></circle>')
    out.append("</svg>")
    return "".join(out)


def hbars(rows: Sequence[tuple[str, float | None, float | None]], *, width: int = 760, labels: tuple[str, str] =
          ("before", "after")) -> str:
    """Pairs of horizontal bars (e.g. pattern share before and after curation), 0-100%."""
    left, row_h = 230, 30
    height = 20 + row_h * len(rows)
    plot_w = width - left - 60
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" class="chart">']
    for i, (label, a, b) in enumerate(rows):
        y = 10 + i * row_h
        short = label if len(label) <= 34 else label[:33] + "…"
        out.append(f'<text x="{left - 8}" y="{y + 15}" text-anchor="end" class="lbl"><title>{escape(label)}'
                   f'</title>{escape(short)}</text>')
        for j, (v, c) in enumerate(((a, "#c2410c"), (b, "#16a34a"))):
            if v is None:
                continue
            w = plot_w * max(0.0, min(1.0, v))
            out.append(f'<rect x="{left}" y="{y + j * 11}" width="{w:.1f}" height="10" fill="{c}">'
                       f'<title>{escape(labels[j])}: {v:.1%}</title></rect>')
            out.append(f'<text x="{left + w + 4:.1f}" y="{y + j * 11 + 9}" class="ax">{v:.0%}</text>')
    out.append("</svg>")
    return "".join(out)
