"""The trait vectors section (results.json["vectors"])."""

from __future__ import annotations

from typing import Any

from traitforge.report.cells import esc, excludes_zero, figure, num, pct


def render(r: dict[str, Any]) -> str:
    """Trait vectors (evaluate/vectors.py): held-out separation against random directions, the
    steering check, and each checkpoint's projection shift against base and control."""
    v = r.get("vectors")
    if not v:
        return ""
    out = "<h2>Inside the model: trait vectors</h2>"
    if not v.get("available"):
        return out + f"<p>n/a: {esc(v.get('reason'))}</p>"
    names = {t["id"]: t["name"] for t in r.get("traits", [])}
    rows = []
    for tid, t in (v.get("traits") or {}).items():
        sep, rnd, st = t.get("separation") or {}, t.get("random") or {}, t.get("steering") or {}
        margins = ", ".join(f"{c:+g}: {m:+.3f}" for c, m in zip(st.get("coefs") or [], st.get("margin") or []))
        if st.get("reliable") is True:
            flag = '<span class="tag good">steers</span>'
        elif st.get("reliable") is False:
            flag = f'<span class="tag bad">unreliable</span><br><span class="ci">{esc(st.get("reason"))}</span>'
        else:
            flag = f'<span class="tag">unchecked</span><br><span class="ci">{esc(st.get("reason"))}</span>'
        rows.append(f"<tr><td>{esc(names.get(tid, tid))}</td><td class='num'>{esc(t.get('layer'))} / "
                    f"{esc(t.get('layers'))}</td><td class='num'>{num(sep.get('d'))}<br><span class='ci'>"
                    f"{pct(sep.get('accuracy'))} of {esc(t.get('pairs_held_out'))} pairs</span></td>"
                    f"<td class='num'>{num(rnd.get('d_mean'))} / {num(rnd.get('d_max'))}</td>"
                    f"<td>{esc(margins) or '–'}<br>{figure(st.get('effect'), True) if st.get('effect') else ''}</td>"
                    f"<td>{flag}</td></tr>")
    out += ("<p>A direction per trait in the base model's residual stream: the mean activation difference over "
            "fixed replies read under a system prompt stating the trait and one stating its opposite (several "
            "paraphrases, neutral questions), at the layer whose direction best separates held-out questions' "
            "pairs. Separation: Cohen's d of the projections (and the share of pairs ordered right) against "
            "random directions (mean / largest |d|). Steering: the vector added at that layer times each "
            "coefficient; the cell shows the contrastive log-prob margin (consistent minus violating reply) at "
            "each, and the change from the lowest to the highest coefficient with its bootstrap CI.</p>"
            "<table><tr><th>trait</th><th>layer</th><th>held-out d</th><th>random d (mean / max)</th>"
            "<th>steering: margin by coefficient</th><th></th></tr>" + "".join(rows) + "</table>")
    cks = r.get("checkpoints", [])
    na = v.get("not_applicable") or {}
    head = "".join(f"<th>{esc(c)}</th>" for c in cks)
    body = []
    for tid in (v.get("traits") or {}):
        cells = []
        for ck in cks:
            if ck in na:
                cells.append(f'<td class="num" title="{esc(na[ck])}">n/a</td>')
                continue
            p = (v.get("projection") or {}).get(ck, {}).get(tid)
            b = (v.get("shift_vs_base") or {}).get(ck, {}).get(tid)
            c = (v.get("shift_vs_control") or {}).get(ck, {}).get(tid)
            cls = (" up" if b["value"] > 0 else " down") if excludes_zero(b) else ""
            cell = figure(p)
            cell += f'<br><span class="delta">Δ vs base {figure(b, True)}</span>' if b else ""
            cell += f'<br><span class="delta">Δ vs control {figure(c, True)}</span>' if c else ""
            cells.append(f'<td class="num{cls}">{cell}</td>')
        body.append(f"<tr><td>{esc(names.get(tid, tid))}</td>{''.join(cells)}</tr>")
    corr = "".join(f"<li>{esc(ev)}: " + (f"r = {c['r']:+.2f} over {esc(c['n'])} cells" if c.get("r") is not None
                                        else f"– ({esc(c.get('reason'))})") + "</li>"
                   for ev, c in (v.get("correlation") or {}).items())
    out += ("<h3>Projection shift by checkpoint</h3><p>Mean projection on each trait's unit vector of the "
            "checkpoint's activations over its own reply to each behavioural eval prompt, "
            "with bootstrap 95% CIs; Δ: paired difference on the same prompts (green/red: the CI excludes zero, "
            "towards/away from the trait).</p>"
            f"<table><tr><th>trait</th>{head}</tr>{''.join(body)}</table>"
            "<p>Correlation across traits and checkpoints between the shift against base and the paired change "
            f"against base of:</p><ul>{corr}</ul>")
    return out
