"""compare.html: the arms' verdicts at the top, a forest plot of each arm's paired difference from the
reference, then the table (fits a 1300 px window: fixed layout, wrapping cells)."""

from __future__ import annotations

from html import escape
from typing import Any, Iterator

from traitforge.shared.forest import forest_svg

CSS = ("body{font-family:sans-serif;margin:16px;max-width:1240px}table{border-collapse:collapse;"
       "table-layout:fixed;width:100%}td,th{border:1px solid #ccc;padding:3px 5px;font-size:13px;"
       "overflow-wrap:anywhere}th{background:#f3f3f3}.yes{color:#1a7f37;font-weight:bold}.note{color:#555}")


def _f(v: Any, digits: int = 3) -> str:
    return "–" if v is None else f"{v:+.{digits}f}" if isinstance(v, float) else escape(str(v))


def _ci(c: dict[str, Any]) -> str:
    if c.get("ci_low") is None:
        return "–"
    return f"[{c['ci_low']:+.3f}, {c['ci_high']:+.3f}]"


def render(data: dict[str, Any]) -> str:
    ref = data["reference"]
    comps = sorted(data["comparisons"], key=lambda c: (c["trait"] != "all", c["eval"], c["checkpoint"], c["trait"], c["arm"]))
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>compare: {escape(', '.join(data['arms']))}"
           f"</title><style>{CSS}</style></head><body><h1>Arms compared with {escape(ref)}</h1>", "<h2>Controls</h2><ul>"]
    for name, a in data["arms"].items():
        canary = {True: "training took (canary moved)", False: "training did NOT take (canary did not move)",
                  None: "no canary verdict"}[a.get("canary")]
        beats = ", ".join(f"{b['trait']} on {b['eval']} ({b['checkpoint']}, {b['diff']:+.3f})"
                          for b in a.get("beats_control", []) if b.get("diff") is not None) or "none"
        out.append(f"<li><b>{escape(name)}</b>: {escape(canary)}; beats the control: {escape(beats)}</li>")
    out.append("</ul>")
    out.append(f"<p class='note'>{data['n_comparisons']} paired comparisons; p-values adjusted by {data['adjustment']}'s "
               "method (family-wise over all of them); a difference is marked when its 95% bootstrap CI excludes "
               f"zero and its adjusted p &lt; 0.05. {data['left_out_items']} item results were left out of pairs "
               "(evaluated by one arm only). Item CIs leave out training-seed variance: a second training seed "
               "can move a figure more than its CI says (seed spread below, where training.seeds &gt; 1).</p>")
    rows = [{"label": f"{c['arm']}: {c['eval']} {c['trait']} ({c['checkpoint']})", "diff": c["diff"],
             "ci_low": c["ci_low"], "ci_high": c["ci_high"], "strong": c["differs"]} for c in comps]
    out.append(f"<h2>Differences from {escape(ref)}</h2>")
    out.append(forest_svg(rows, f"each arm minus {ref}, paired on shared items, 95% CI"))
    out.append("<table><colgroup><col style='width:10%'><col style='width:16%'><col style='width:11%'>"
               "<col style='width:11%'><col style='width:8%'><col style='width:8%'><col style='width:8%'>"
               "<col style='width:14%'><col style='width:5%'><col style='width:5%'><col style='width:4%'></colgroup>"
               "<tr><th>arm</th><th>eval</th><th>trait</th><th>checkpoint</th><th>arm</th><th>"
               f"{escape(ref)}</th><th>diff</th><th>95% CI</th><th>n</th><th>left out</th><th>MDE</th></tr>")
    for c in comps:
        cls = " class='yes'" if c["differs"] else ""
        out.append(f"<tr><td>{escape(c['arm'])}</td><td>{escape(c['eval'])}</td><td>{escape(c['trait'])}</td>"
                   f"<td>{escape(c['checkpoint'])}</td><td>{_f(c['arm_mean'])}</td><td>{_f(c['reference_mean'])}</td>"
                   f"<td{cls}>{_f(c['diff'])}</td><td>{_ci(c)}</td><td>{c['n']}</td><td>{c['left_out']}</td>"
                   f"<td>{_mde(c)}</td></tr>")
    out.append("</table>")
    spreads = {n: a["seed_spread"] for n, a in data["arms"].items() if a.get("seed_spread")}
    if spreads:
        out.append("<h2>Seed spread</h2><table><tr><th>arm</th><th>checkpoint</th><th>trait</th><th>eval</th>"
                   "<th>seeds</th><th>mean</th><th>sd</th><th>min</th><th>max</th></tr>")
        for keys, s in _by_arm_checkpoint_trait_eval(spreads):
            out.append(f"<tr>{keys}<td>{s['seeds']}</td><td>{_f(s['mean'])}</td><td>{_f(s['sd'])}</td>"
                       f"<td>{_f(s['min'])}</td><td>{_f(s['max'])}</td></tr>")
        out.append("</table>")
    scaling = {n: a["scaling"] for n, a in data["arms"].items() if a.get("scaling")}
    if scaling:
        out.append("<h2>Data scaling</h2><table><tr><th>arm</th><th>checkpoint</th><th>trait</th><th>eval</th>"
                   "<th>value by fraction of the data [95% CI]</th></tr>")
        for keys, pts in _by_arm_checkpoint_trait_eval(scaling):
            cells = "; ".join(f"{p['fraction']:g}: {_f(p.get('value'))} [{_f(p.get('ci_low'))}, "
                              f"{_f(p.get('ci_high'))}]" for p in pts)
            out.append(f"<tr>{keys}<td>{cells}</td></tr>")
        out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out)


def _by_arm_checkpoint_trait_eval(nested: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """(the four key cells, value) of a figure nested arm -> checkpoint -> trait -> eval."""
    for arm, by_ck in nested.items():
        for ck, by_trait in by_ck.items():
            for tr, by_eval in by_trait.items():
                for ev, value in by_eval.items():
                    yield "".join(f"<td>{escape(k)}</td>" for k in (arm, ck, tr, ev)), value


def _mde(c: dict[str, Any]) -> str:
    return "–" if c["mde"] is None else f"{c['mde']:.2f}"
