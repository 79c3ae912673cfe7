"""RUN/report.html: one self-contained page from RUN/results.json (inline CSS and SVG, no
scripts). The page's layout: headline table first, then per-trait charts, each eval's own section
(report/sections/, named by the eval's registration), data and costs, and examples. Shared cells
are in cells.py. Every string that came from a model or a data file is HTML-escaped."""

from __future__ import annotations

from typing import Any

from traitforge.report.cells import esc, figure, fmt, fmt_diff, legend, messages, num, pct, score
from traitforge.report.svg import grouped_bars, hbars
from traitforge.shared.forest import forest_svg

# The checkpoint the forest plot at the top shows: the last trained one present, in this order.
FOREST_CHECKPOINTS = ("midtrain_sft", "joint", "sft", "midtrain")

CSS = """
body{font:14px/1.5 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#111827;margin:0;background:#f9fafb}
main{max-width:1180px;margin:0 auto;padding:28px 24px 60px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:34px 0 10px;border-bottom:1px solid #e5e7eb;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}.sub{color:#6b7280;margin:0 0 18px}
table{border-collapse:collapse;width:100%;background:#fff;margin:6px 0 10px}
th,td{border:1px solid #e5e7eb;padding:6px 8px;text-align:left;vertical-align:top}
th{background:#f3f4f6;font-weight:600}td.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
.ci{color:#6b7280;font-size:12px}.up{background:#dcfce7}.down{background:#fee2e2}
.warn{background:#fef3c7;border-left:4px solid #d97706;padding:8px}.ok{background:#dcfce7;border-left:4px solid #16a34a;padding:8px}
.delta{font-size:12px}.legend span{display:inline-block;margin-right:14px}
.sw{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:4px;vertical-align:-1px}
.chart{background:#fff;border:1px solid #e5e7eb;border-radius:6px}.chart .ax{font-size:11px;fill:#6b7280}
.chart .lbl{font-size:12px;fill:#374151}
.box{background:#fff;border:1px solid #e5e7eb;border-radius:6px;padding:10px 12px;margin:8px 0}
.msg{white-space:pre-wrap;margin:4px 0;padding:6px 8px;border-radius:6px;font-size:13px}
.user{background:#eff6ff}.assistant{background:#f0fdf4}.system{background:#fef9c3}
.tag{display:inline-block;font-size:11px;padding:1px 6px;border-radius:9px;background:#e5e7eb;margin-left:6px}
.bad{background:#fecaca}.good{background:#bbf7d0}details{margin:6px 0}summary{cursor:pointer;font-weight:600}
.note{color:#92400e;font-size:13px}.grid{display:flex;flex-wrap:wrap;gap:0 20px}
svg.chart{max-width:100%;height:auto}
/* the headline fits a 1300 px window: fixed columns, figures wrap inside their cell */
table.headline{table-layout:fixed;font-size:13px}table.headline td.num{white-space:normal;overflow-wrap:anywhere}
table.headline th{overflow-wrap:anywhere}svg.forest{max-width:100%;height:auto}
"""


def _headline(r: dict[str, Any]) -> str:
    cks, evals = r["checkpoints"], r["evals"]
    head = "".join(f"<th>{esc(c)}</th>" for c in cks)
    rows = []
    for name, meta in evals.items():
        cells = []
        for ck in cks:
            e = r["results"].get(ck, {}).get("all", {}).get(name)
            if not e:
                cells.append('<td class="num">–</td>')
                continue
            if e.get("not_applicable"):
                cells.append(f'<td class="num" title="{esc(e["not_applicable"])}">n/a</td>')
                continue
            ci = (f'<br><span class="ci">[{fmt(e.get("ci_low"), meta["kind"])}, {fmt(e.get("ci_high"), meta["kind"])}]'
                  f' n={esc(e.get("n"))}' + (f', {esc(e["unscored"])} unscored' if e.get("unscored") else "")
                  + "</span>") if e.get("n") else ""
            cls, delta = "", ""
            d = r.get("paired_vs_base", {}).get(ck, {}).get("all", {}).get(name)
            if d and d.get("diff") is not None:
                lo, hi = d.get("ci_low"), d.get("ci_high")
                sig = lo is not None and hi is not None and (lo > 0 or hi < 0)
                if sig:
                    better = (d["diff"] > 0) == meta["higher_is_better"]
                    cls = " up" if better else " down"
                delta = (f'<br><span class="delta">Δ vs base {fmt_diff(d["diff"], meta["kind"])}'
                         + (f' [{fmt_diff(lo, meta["kind"])}, {fmt_diff(hi, meta["kind"])}]' if lo is not None else "")
                         + "</span>")
            dc = r.get("paired_vs_control", {}).get(ck, {}).get("all", {}).get(name)
            if dc and dc.get("diff") is not None:
                lo, hi = dc.get("ci_low"), dc.get("ci_high")
                delta += (f'<br><span class="delta">Δ vs control {fmt_diff(dc["diff"], meta["kind"])}'
                          + (f' [{fmt_diff(lo, meta["kind"])}, {fmt_diff(hi, meta["kind"])}]' if lo is not None else "")
                          + "</span>")
            if e.get("mde") is not None and e.get("n"):
                delta += f'<br><span class="ci">detects ≥ {fmt_diff(e["mde"], meta["kind"]).lstrip("+")}</span>'
            cells.append(f'<td class="num{cls}"><b>{fmt(e.get("value"), meta["kind"])}</b>{ci}{delta}</td>')
        arrow = "↑" if meta["higher_is_better"] else "↓"
        rows.append(f'<tr><td><b>{esc(meta["label"])}</b> <span class="ci">{arrow}</span><br>'
                    f'<span class="ci">{esc(meta["description"])}</span></td>{"".join(cells)}</tr>')
    if not rows:
        return "<p>No results yet.</p>"
    first = max(22, 100 - 15 * len(cks))  # the label column; the checkpoints share the rest
    cols = f'<colgroup><col style="width:{first}%">' + f'<col style="width:{(100 - first) / max(1, len(cks)):.1f}%">' * len(cks) + "</colgroup>"
    return (f"<table class='headline'>{cols}<tr><th>Evaluation (all traits)</th>{head}</tr>{''.join(rows)}</table>"
            '<p class="ci">Each cell: value, 95% CI (Wilson for shares, bootstrap for means), n; n/a: the '
            'model cannot take that eval (log-prob evals need local weights, an API model has none). '
            'Δ: paired difference against base (and against the control arm, trained on as much trait-free '
            'data) on the same items with a bootstrap 95% CI; green/red when the interval against base '
            'excludes zero in the better/worse direction. "detects ≥": the smallest difference between two '
            'checkpoints that this n finds with 80% power (5% two-sided test, worst case for shares).</p>')


def _forest(r: dict[str, Any]) -> str:
    """At the top: each trait's paired difference against the control arm (and against base) on every
    eval, for the last trained checkpoint, as a forest plot: what the traits did, at a glance."""
    ck = next((c for c in FOREST_CHECKPOINTS if c in r.get("checkpoints", [])), None)
    if ck is None:
        return ""
    out = []
    for ref, table in (("control", r.get("paired_vs_control") or {}), ("base", r.get("paired_vs_base") or {})):
        rows = []
        for t in r.get("traits", []):
            for ev, d in (table.get(ck, {}).get(t["id"]) or {}).items():
                if not isinstance(d, dict) or d.get("diff") is None:
                    continue
                meta = r.get("evals", {}).get(ev, {})
                up = meta.get("higher_is_better", True)
                lo, hi = d.get("ci_low"), d.get("ci_high")
                strong = lo is not None and hi is not None and (lo > 0 if up else hi < 0)
                rows.append({"label": f"{t.get('name') or t['id']} · {meta.get('label', ev)}", "diff": d["diff"],
                             "ci_low": lo, "ci_high": hi, "strong": strong})
        if rows:
            out.append(f"<h3>{esc(ck)} minus {esc(ref)}, per trait</h3>"
                       + forest_svg(rows, f"{ck} minus {ref}: paired difference per trait and eval, 95% CI"))
    if not out:
        return ""
    return ("<h2>What the traits did</h2>" + "".join(out)
            + '<p class="ci">Each row: the paired difference on the same items with its bootstrap 95% CI; green '
            "where the interval excludes zero in the eval's better direction.</p>")


def _controls(r: dict[str, Any]) -> str:
    """The positive control first: if training did not move it, nothing below can be read as
    "the traits had no effect"."""
    c = r.get("canary")
    if not c:
        return ""
    rows = c.get("rows", {})
    made = "; ".join(f"{esc(ds)}: {esc(v.get('made'))} made, {esc(v.get('reached_training'))} reached training"
                     for ds, v in rows.items())
    checks = c.get("checks", {})
    if c.get("training_took"):
        banner = '<p class="ok">Training took: the canary moved on every checkpoint trained on it.</p>'
    else:
        bad = [f"{esc(ck)} ({esc(v['message'])})" for ck, v in checks.items() if v["verdict"] != "moved"]
        banner = ('<p class="warn"><b>Canary did not move on: ' + ", ".join(bad) + '.</b> Read the trait figures '
                  'of these checkpoints as a training problem, not as "no effect of the traits".</p>')
    body = []
    for ck, v in checks.items():
        e, d = v.get("value") or {}, v.get("vs_base") or {}
        ci = (f' [{fmt(e.get("ci_low"), "proportion")}, {fmt(e.get("ci_high"), "proportion")}] n={esc(e.get("n"))}'
              if e.get("n") else "")
        dd = (f'{fmt_diff(d.get("value"), "proportion")} [{fmt_diff(d.get("ci_low"), "proportion")}, '
              f'{fmt_diff(d.get("ci_high"), "proportion")}]' if d else "–")
        body.append(f"<tr><td>{esc(ck)}</td><td>{esc(v['eval'])} (from its {esc(v['data'])})</td>"
                    f'<td class="num">{fmt(e.get("value"), "proportion")}<span class="ci">{ci}</span></td>'
                    f'<td class="num">{dd}</td><td>{esc(v["verdict"])}</td></tr>')
    return ("<h2>Controls</h2><p>The <b>canary</b> is a positive control: an invented fact (documents) and an "
            "invented opener (chats), made from templates without an LLM, trained with the real data and scored "
            "by the same judge-free evals. The <b>control</b> checkpoint is the negative control: SFT on as much "
            f"trait-free data. Canary rows: {made}.</p>" + banner
            + "<table><tr><th>checkpoint</th><th>canary eval</th><th>value</th><th>Δ vs base</th><th>verdict</th></tr>"
            + "".join(body) + "</table>")


def _variance_and_scaling(r: dict[str, Any]) -> str:
    out = []
    spread = r.get("seed_spread") or {}
    rows = []
    for ck, scopes in spread.items():
        for scope, evs in scopes.items():
            for ev, s in evs.items():
                kind = r["evals"].get(ev, {}).get("kind", "proportion")
                rows.append(f"<tr><td>{esc(ck)}</td><td>{esc(scope)}</td><td>{esc(r['evals'].get(ev, {}).get('label', ev))}</td>"
                            f'<td class="num">{esc(s["seeds"])}</td><td class="num">{fmt(s["mean"], kind)}</td>'
                            f'<td class="num">{fmt(s["sd"], kind if kind != "proportion" else "mean")}</td>'
                            f'<td class="num">{fmt(s["min"], kind)} – {fmt(s["max"], kind)}</td></tr>')
    if rows:
        out.append("<h2>Training variance (seeds)</h2><table><tr><th>checkpoint</th><th>scope</th><th>eval</th>"
                   "<th>seeds</th><th>mean</th><th>sd</th><th>range</th></tr>" + "".join(rows) + "</table>"
                   '<p class="ci">The spread across training seeds, beside the item CIs above: an effect smaller '
                   "than this spread is not the traits' doing.</p>")
    scaling = r.get("scaling") or {}
    rows = []
    for ck, scopes in scaling.items():
        for scope, evs in scopes.items():
            for ev, pts in evs.items():
                kind = r["evals"].get(ev, {}).get("kind", "proportion")
                cells = "".join(f'<td class="num">{fmt(p["value"], kind)}<span class="ci"> [{fmt(p["ci_low"], kind)}, '
                                f'{fmt(p["ci_high"], kind)}]</span></td>' for p in pts)
                fr = " / ".join(f'{p["fraction"]:g}' for p in pts)
                rows.append(f"<tr><td>{esc(ck)}</td><td>{esc(scope)}</td><td>{esc(r['evals'].get(ev, {}).get('label', ev))}"
                            f"</td><td>{esc(fr)}</td>{cells}</tr>")
    if rows:
        out.append("<h2>Data scaling</h2><table><tr><th>checkpoint</th><th>scope</th><th>eval</th><th>fractions</th>"
                   "<th colspan=\"4\">value by fraction of the data</th></tr>" + "".join(rows) + "</table>")
    return "".join(out)


def _per_trait(r: dict[str, Any]) -> str:
    cks = r["checkpoints"]
    traits = [t["id"] for t in r["traits"]]
    names = {t["id"]: t["name"] for t in r["traits"]}
    out = []
    for name, meta in r["evals"].items():
        if meta["kind"] not in ("proportion", "mean"):
            continue
        groups = [t for t in traits if any(name in r["results"].get(ck, {}).get(t, {}) for ck in cks)]
        if not groups:
            continue
        values = {(names[t], ck): r["results"][ck][t][name] for t in groups for ck in cks
                  if name in r["results"].get(ck, {}).get(t, {})}
        pct = meta["kind"] == "proportion"
        chart = grouped_bars([names[t] for t in groups], cks, values, y_max=1.0 if pct else 10.0
                             if name == "behaviour_score" else None, percent=pct, width=450, height=210)
        out.append(f"<div><h3>{esc(meta['label'])}</h3>{chart}</div>")
    if not out:
        return ""
    return "<h2>By trait</h2>" + legend(cks) + '<div class="grid">' + "".join(out) + "</div>"


def _dataset(r: dict[str, Any]) -> str:
    rows = []
    for stage, counts in r.get("dataset", {}).items():
        flat = ", ".join(f"{esc(k)}={_count(v)}" for k, v in counts.items())
        info = r.get("stages", {}).get(stage, {})
        t = info.get("elapsed_s")
        rows.append(f"<tr><td>{esc(stage)}</td><td>{esc(info.get('status'))}</td>"
                    f"<td class='num'>{'' if t is None else f'{t:.0f}s'}</td><td>{flat}</td></tr>")
    items = "".join(f"<tr><td>{esc(k)}</td><td class='num'>{esc(v['items'])}</td><td class='num'>"
                    f"{esc(v['dropped'])}</td></tr>" for k, v in r.get("eval_items", {}).items())
    out = "<h2>Dataset card</h2>" + _funnels(r)
    out += ("<table><tr><th>stage</th><th>status</th><th>time</th><th>counts</th></tr>" + "".join(rows)
            + "</table>") if rows else "<p>No pipeline stages recorded in the manifest.</p>"
    out += "".join(_card_dataset(name, d) for name, d in (r.get("dataset_card") or {}).get("datasets", {}).items())
    if items:
        out += ("<h3>Evaluation items</h3><table><tr><th>kind</th><th>items</th><th>dropped (overlap/junk)</th></tr>"
                + items + "</table>")
    return out


def _funnels(r: dict[str, Any]) -> str:
    """Per dataset and trait: planned -> generated -> kept after curation, as bars and a table, with
    the reasons curation dropped rows (by step)."""
    card = (r.get("dataset_card") or {}).get("datasets") or {}
    out = []
    for name in ("documents", "chats"):
        bal = (r.get("dataset") or {}).get(f"{name}.balance") or {}
        planned, made = bal.get("planned") or {}, bal.get("per_trait") or {}
        d = card.get(name) or {}
        before, after = (d.get("before") or {}).get("per_trait") or {}, (d.get("after") or {}).get("per_trait") or {}
        traits = [t["id"] for t in r.get("traits", []) if t["id"] in {**planned, **made, **before, **after}]
        if not traits:
            continue
        steps = [("planned", planned), ("generated", made or before), ("kept", after)]
        top = max([1] + [v for _, c in steps for v in c.values() if isinstance(v, (int, float))])
        colours = ("#93c5fd", "#3b82f6", "#16a34a")
        bars, y = [], 4
        for tid in traits:
            bars.append(f'<text class="lbl" x="0" y="{y + 12}">{esc(tid[:28])}</text>')
            for (label, counts), colour in zip(steps, colours):
                v = counts.get(tid, 0) or 0
                w = 600 * v / top
                bars.append(f'<rect x="200" y="{y}" width="{w:.1f}" height="14" fill="{colour}"><title>{esc(tid)}: '
                            f'{label} {v}</title></rect><text class="ax" x="{204 + w:.1f}" y="{y + 11}">{label} {v}</text>')
                y += 16
            y += 8
        svg = (f'<svg class="chart" role="img" width="880" height="{y}" viewBox="0 0 880 {y}" '
               f'xmlns="http://www.w3.org/2000/svg"><title>{esc(name)}: planned, generated, kept per trait</title>'
               + "".join(bars) + "</svg>")
        rows = "".join(f"<tr><td>{esc(tid)}</td>" + "".join(f"<td class='num'>{esc(c.get(tid, 0))}</td>" for _, c in steps)
                       + f"<td class='num'>{pct((after.get(tid, 0) or 0) / planned[tid]) if planned.get(tid) else '–'}</td></tr>"
                       for tid in traits)
        reasons = "; ".join(f"{esc(s.get('step'))}: " + ", ".join(f"{esc(k)} {esc(v)}" for k, v in (s.get("drops_by_reason") or {}).items())
                            for s in d.get("steps") or [] if s.get("drops_by_reason"))
        out.append(f"<h3>{esc(name.capitalize())}: planned → generated → kept</h3>{svg}"
                   "<table><tr><th>trait</th><th>planned</th><th>generated</th><th>kept after curation</th>"
                   f"<th>kept / planned</th></tr>{rows}</table>"
                   + (f"<p class='ci'>Dropped by curation: {reasons}.</p>" if reasons else ""))
    return "".join(out)


def _count(v: Any) -> str:
    """A manifest count; dict-valued ones (per trait, drops per step) as {key: value, ...}."""
    if isinstance(v, dict):
        return "{" + ", ".join(f"{esc(k)}: {_count(x)}" for k, x in v.items()) + "}"
    return esc(v)


def _card_similarity(s: dict[str, Any] | None) -> str:
    if not s or s.get("mean_pairwise_cosine") is None:
        return f'– <span class="ci">{esc((s or {}).get("reason") or "not measured")}</span>'
    of = f" (a seeded sample of {esc(s.get('rows'))} of {esc(s.get('of'))} rows)" if s.get("sampled") else ""
    return f'{s["mean_pairwise_cosine"]:.3f}<span class="ci">{of}</span>'


def _card_counts(title: str, before: dict[str, int] | None, after: dict[str, int] | None, top: int = 30) -> str:
    """Rows per key (trait, genre) before and after; the `top` largest, then how many more."""
    before, after = before or {}, after or {}
    keys = sorted(set(before) | set(after), key=lambda k: (-before.get(k, 0), -after.get(k, 0), k))
    rows = "".join(f"<tr><td>{esc(k)}</td><td class='num'>{esc(before.get(k, 0))}</td>"
                   f"<td class='num'>{esc(after.get(k, 0))}</td></tr>" for k in keys[:top])
    more = f"<tr><td colspan=3 class='ci'>… {len(keys) - top} more</td></tr>" if len(keys) > top else ""
    return (f"<table><tr><th>{esc(title)}</th><th>before</th><th>after</th></tr>{rows}{more}</table>"
            if keys else "")


def _card_histogram(before: dict[str, Any], after: dict[str, Any]) -> str:
    """Share of rows per length bin, before and after, on the card's fixed bins."""
    groups, values = [], {}
    for which, side in (("before", before), ("after", after)):
        bins = (side.get("words") or {}).get("histogram") or []
        total = sum(b.get("rows", 0) for b in bins) or 1
        for b in bins:
            label = f"{b['lo']}–{b['hi'] - 1}" if b.get("hi") is not None else f"{b['lo']}+"
            if label not in groups:
                groups.append(label)
            values[(label, which)] = {"value": b.get("rows", 0) / total, "n": b.get("rows", 0)}
    if not groups:
        return ""
    return ("<p class='ci'>Share of rows by length in words</p>" + legend(["before", "after"])
            + grouped_bars(groups, ["before", "after"], values, y_max=1.0, percent=True, height=200))


def _card_dataset(name: str, d: dict[str, Any]) -> str:
    """One dataset of RUN/curation/dataset_card.json: before/after figures, steps, traits, genres."""
    b, a = d.get("before") or {}, d.get("after") or {}
    if not b.get("rows") and not a.get("rows"):
        return f"<h3>Curation card: {esc(name)}</h3><p>No rows.</p>"
    wb, wa = b.get("words") or {}, a.get("words") or {}
    rows = [("rows", esc(b.get("rows")), esc(a.get("rows")))]
    rows += [(f"words: {k}", num(wb.get(k)), num(wa.get(k))) for k in ("min", "p10", "median", "p90", "max")]
    for n in ("1", "2", "3"):
        db, da = (b.get("distinct") or {}).get(n) or {}, (a.get("distinct") or {}).get(n) or {}
        rows.append((f"distinct-{n} (unique / all {n}-grams)", pct(db.get("ratio")), pct(da.get("ratio"))))
    rows.append(("mean pairwise cosine (all-MiniLM-L6-v2)", _card_similarity(b.get("similarity")),
                 _card_similarity(a.get("similarity"))))
    figures = "".join(f"<tr><td>{label}</td><td class='num'>{x}</td><td class='num'>{y}</td></tr>"
                      for label, x, y in rows)
    steps = "".join(
        f"<tr><td>{esc(s.get('step'))}</td><td class='num'>{esc(s.get('rows_in'))}</td>"
        f"<td class='num'>{esc(s.get('rows_out'))}</td><td class='num'>{esc(s.get('dropped'))}</td>"
        f"<td class='num'>{esc(s.get('edited'))}</td><td>{_count(s.get('drops_by_reason') or {})}</td></tr>"
        for s in d.get("steps") or [])
    return (f"<h3>Curation card: {esc(name)}</h3>"
            f"<table><tr><th></th><th>before curation</th><th>after curation</th></tr>{figures}</table>"
            + (("<table><tr><th>step</th><th>rows in</th><th>rows out</th><th>dropped</th><th>edited</th>"
                f"<th>drops by reason</th></tr>{steps}</table>") if steps else "")
            + _card_histogram(b, a) + '<div class="grid">'
            + _card_counts("trait", b.get("per_trait"), a.get("per_trait"))
            + _card_counts("genre", b.get("per_genre"), a.get("per_genre")) + "</div>")


def _patterns(r: dict[str, Any]) -> str:
    pats = r.get("patterns") or []
    if not pats:
        return ""
    # Strict before against strict after (older files without share_after: nothing changed).
    after = [p.get("share_after") if p.get("share_after") is not None else p.get("share_strict") for p in pats]
    rows = [(f"{p.get('dataset', '')}: {p.get('description') or p.get('pattern_id', '')}",
             p.get("share_strict"), x) for p, x in zip(pats, after)]
    table = "".join(
        f"<tr><td>{esc(p.get('dataset'))}</td><td>{esc(p.get('description') or p.get('pattern_id'))}"
        f"<br><span class='ci' title='{esc(p.get('classifier'))}'>{esc(p.get('pattern_id'))} · {esc(p.get('source'))}"
        f" · {esc(str(p.get('classifier') or '').split(':')[0])}"
        f" · n={esc(p.get('n'))}</span></td><td class='num'>{pct(p.get('share_broad'))}</td>"
        f"<td class='num'>{pct(p.get('share_strict'))}</td><td class='num'>{pct(x)}</td>"
        f"<td>{'flagged' if p.get('flagged') else ''}</td></tr>" for p, x in zip(pats, after))
    return ("<h2>Curation: pattern frequencies</h2><p><i class='sw' style='background:#c2410c'></i>before "
            "<i class='sw' style='background:#16a34a'></i>after curation (strict share: examples that clearly "
            "show the pattern)</p>" + hbars(rows, labels=("strict before", "strict after"))
            + "<table><tr><th>dataset</th><th>pattern</th><th>broad before</th><th>strict before</th>"
              "<th>strict after</th><th></th></tr>" + table + "</table>"
            "<p class='ci'>Broad: the classifier said the pattern is at least partly present; strict: clearly "
            "present. Mitigation targets the strict share.</p>")


def _pattern_checks(r: dict[str, Any]) -> str:
    """How far the pattern shares can be trusted: each estimate with its interval (judge patterns:
    a sample, corrected for the judge's noise), the judge's self-agreement and its agreement with
    the exact rules where both apply (curate/pattern_share.py)."""
    pats = [p for p in r.get("patterns") or [] if p.get("share_estimate") is not None]
    if not pats:
        return ""
    rows = "".join(
        f"<tr><td>{esc(p.get('dataset'))}</td><td>{esc(p.get('pattern_id'))}</td>"
        f"<td class='num'>{pct(p.get('share_estimate'))}<br><span class='ci'>[{pct(p.get('ci_low'))}, "
        f"{pct(p.get('ci_high'))}] n={esc(p.get('n'))}</span></td><td class='num'>{pct(p.get('share_after_estimate'))}</td>"
        f"<td class='num'>{pct(p.get('judge_accuracy'))}</td><td class='num'>{pct(p.get('self_agreement'))}</td>"
        f"<td class='num'>{pct(p.get('rule_agreement'))}</td><td>{'flagged' if p.get('flagged') else ''}</td></tr>"
        for p in pats)
    return ("<h3>Pattern estimates and autorater checks</h3><table><tr><th>dataset</th><th>pattern</th>"
            "<th>estimated share</th><th>after</th><th>judge accuracy</th><th>self-agreement</th>"
            "<th>agreement with rule</th><th></th></tr>" + rows + "</table><p class='ci'>Judge patterns are rated on a "
            "seeded sample; part of it is rated twice, and the agreement gives the judge's implied accuracy, used to "
            "correct the share (assumes random, symmetric errors). Rule patterns are exact; where a rule and the judge "
            "both rate a pattern, their agreement is shown.</p>")


def _token_accounting(r: dict[str, Any]) -> str:
    """What training saw of each dataset at its max_length (train/data.py account_tokens)."""
    acc = (r.get("dataset_card") or {}).get("token_accounting") or {}
    if not acc:
        return ""
    rows = "".join(
        f"<tr><td>{esc(name)}</td><td class='num'>{esc(a.get('max_length'))}<br><span class='ci'>"
        f"{esc(a.get('max_length_source'))}</span></td><td class='num'>{esc(a.get('rows'))}</td>"
        f"<td class='num'>{esc(a.get('over_max_length'))}</td>"
        f"<td class='num'>{esc((a.get('over_by_tokens') or {}).get('max'))}</td>"
        f"<td class='num'>{esc(a.get('split', '-'))}</td><td class='num'>{esc(a.get('dropped'))}</td>"
        f"<td class='num'>{esc(a.get('examples'))}</td></tr>" for name, a in acc.items())
    return ("<h3>Token accounting (training)</h3><table><tr><th>checkpoint</th><th>max_length</th><th>rows</th>"
            "<th>over max_length</th><th>most tokens over</th><th>split</th><th>dropped</th><th>examples trained"
            "</th></tr>" + rows + "</table><p class='ci'>Rows longer than max_length are split at turn boundaries or"
            " dropped with a reason (RUN/train/&lt;checkpoint&gt;/token_accounting.json), never cut.</p>")


def _training_data(r: dict[str, Any]) -> str:
    """What each checkpoint trained on: documents and chats (characters) and the documents-to-chats ratio."""
    td = (r.get("dataset_card") or {}).get("training_data") or {}
    if not td:
        return ""
    def ratio(t: dict[str, Any]) -> str:
        d = t.get("docs_to_chats") or {}
        if not d:
            return "all of both"
        return f"{d.get('asked'):g} asked ({d.get('available')} in the data; kept {d.get('document_share'):.0%} " \
               f"of documents, {d.get('chat_share'):.0%} of chats)"
    rows = "".join(
        f"<tr><td>{esc(name)}</td><td class='num'>{esc(t.get('documents', '-'))}</td>"
        f"<td class='num'>{esc(t.get('document_chars', '-'))}</td><td class='num'>{esc(t.get('chats', '-'))}</td>"
        f"<td class='num'>{esc(t.get('chat_chars', '-'))}</td><td class='num'>{esc(t.get('examples', '-'))}</td>"
        f"<td>{esc(ratio(t))}</td></tr>" for name, t in td.items())
    return ("<h3>Training data</h3><table><tr><th>checkpoint</th><th>documents</th><th>characters</th><th>chats</th>"
            "<th>characters</th><th>examples</th><th>documents-to-chats (training.docs_to_chats)</th></tr>" + rows +
            "</table><p class='ci'>Characters of trait rows and control rows together; the ratio is over the trait "
            "rows, the larger side cut (seeded), control rows (the canary) kept whole.</p>")


def _usage(r: dict[str, Any]) -> str:
    rows, total, unknown = [], 0.0, False
    for stage, models in r.get("usage", {}).items():
        for model, u in models.items():
            cost = u.get("cost_usd")
            total += cost or 0.0
            unknown |= cost is None
            rows.append(f"<tr><td>{esc(stage)}</td><td>{esc(model)}</td><td class='num'>{esc(u.get('calls'))}</td>"
                        f"<td class='num'>{esc(u.get('cached'))}</td><td class='num'>{u.get('input_tokens', 0):,}</td>"
                        f"<td class='num'>{u.get('output_tokens', 0):,}</td><td class='num'>"
                        f"{'?' if cost is None else f'${cost:.4f}'}</td></tr>")
    if not rows:
        return ""
    return ("<h2>Cost and tokens</h2><table><tr><th>stage</th><th>model</th><th>calls</th><th>cached</th>"
            "<th>input tokens</th><th>output tokens</th><th>est. cost</th></tr>" + "".join(rows)
            + f"<tr><td colspan=6><b>total</b></td><td class='num'><b>${total:.4f}{'+?' if unknown else ''}"
              "</b></td></tr></table>")


def _refusals(r: dict[str, Any]) -> str:
    """Refused, blocked and truncated replies: for an evaluated model a refusal rate is itself a
    result (results.json "refusals", with n); for the judge, grades left unscored; for a generator
    (manifest usage, per stage or step) the rows that are missing."""
    out = []
    model_rows, judge_rows = [], []
    for ck, evs in r.get("refusals", {}).items():
        for ev, e in evs.items():
            if e.get("refused") or e.get("blocked"):
                model_rows.append(f"<tr><td>{esc(ck)}</td><td>{esc(ev)}</td><td class='num'>{esc(e.get('refused'))}</td>"
                                  f"<td class='num'>{esc(e.get('blocked'))}</td><td class='num'>{esc(e.get('n'))}</td>"
                                  f"<td class='num'>{pct(e.get('rate'))}</td></tr>")
            for reason, count in (e.get("by_judge") or {}).items():
                judge_rows.append(f"<tr><td>{esc(ck)}</td><td>{esc(ev)}</td><td>{esc(reason)}</td>"
                                  f"<td class='num'>{esc(count)}</td></tr>")
    if model_rows:
        out.append("<h3>Evaluated models: refusal rate</h3><p>Items the evaluated model refused or the provider "
                   "blocked: unscored in the eval's figures, counted here (a trait may raise it).</p><table><tr>"
                   "<th>checkpoint</th><th>eval</th><th>refused</th><th>blocked</th><th>n</th><th>rate</th></tr>"
                   + "".join(model_rows) + "</table>")
    if judge_rows:
        out.append("<h3>Judges: unscored grades</h3><p>Grades the judge refused or had blocked: unscored, never a "
                   "verdict.</p><table><tr><th>checkpoint</th><th>eval</th><th>reason</th><th>count</th></tr>"
                   + "".join(judge_rows) + "</table>")
    usage_rows = []
    for stage, models in r.get("usage", {}).items():
        for model, u in models.items():
            if u.get("refused") or u.get("blocked") or u.get("truncated"):
                usage_rows.append(f"<tr><td>{esc(stage)}</td><td>{esc(model)}</td>"
                                  f"<td class='num'>{esc(u.get('refused', 0))}</td><td class='num'>{esc(u.get('blocked', 0))}</td>"
                                  f"<td class='num'>{esc(u.get('truncated', 0))}</td></tr>")
    if usage_rows:
        out.append("<h3>Replies by stage</h3><p>Refused, blocked and truncated replies per stage and model (a "
                   "generator's refusals are the rows it skipped).</p><table><tr><th>stage</th><th>model</th>"
                   "<th>refused</th><th>blocked</th><th>truncated</th></tr>" + "".join(usage_rows) + "</table>")
    return "<h2>Refusals</h2>" + "".join(out) if out else ""


def _examples(r: dict[str, Any]) -> str:
    ex = r.get("examples") or {}
    out = []
    if ex.get("behaviour"):
        out.append("<h3>Held-out prompts, answered by each checkpoint</h3>")
        for b in ex["behaviour"]:
            resp = "".join(
                f'<div class="msg assistant"><b>{esc(x["checkpoint"])}</b>'
                f'<span class="tag {"good" if x.get("passed") else "bad" if x.get("passed") is False else ""}">'
                f'{"unscored" if x.get("score") is None else "score" + score(x)}</span>\n{esc(x.get("text"))}</div>'
                for x in b["responses"])
            out.append(f'<details><summary>{esc(b.get("trait_id"))} · {esc(b.get("category"))}</summary>'
                       f'<div class="box"><div class="msg user"><b>user</b>\n{esc(b.get("prompt"))}</div>{resp}</div>'
                       "</details>")
    if ex.get("transcripts"):
        out.append("<h3>Multi-turn transcripts</h3>")
        for t in ex["transcripts"]:
            fv, wt = t.get("first_violation"), t.get("worst_turn")
            out.append(f'<details><summary>{esc(t.get("checkpoint"))} · {esc(t.get("trait_id"))} · '
                       f'{esc((t.get("tactic") or "").split(":")[0])} · '
                       f'{"first violation at turn " + esc(fv) if fv else "no violation found"}'
                       f'{" · worst turn " + esc(wt) if wt else ""}</summary>'
                       f'<div class="box">{messages(t.get("messages", []), t.get("verdicts"))}</div></details>')
    if ex.get("documents"):
        out.append("<h3>Training documents</h3>")
        for d in ex["documents"]:
            out.append(f'<details><summary>{esc(d.get("doc_type") or d.get("id"))} · '
                       f'{esc(", ".join(d.get("traits") or []))}</summary><div class="box msg">{esc(d.get("text"))}'
                       "</div></details>")
    if ex.get("chats"):
        out.append("<h3>Training chats</h3>")
        for c in ex["chats"]:
            out.append(f'<details><summary>{esc(c.get("id"))} · {esc(", ".join(c.get("traits") or []))}</summary>'
                       f'<div class="box">{messages(c.get("messages", []))}</div></details>')
    return "<h2>Examples</h2>" + "".join(out) if out else ""


def _screening(r: dict[str, Any]) -> str:
    """The dataset card's screening section (curate/screen.py): projection per trait, wrong-way rows."""
    sc = (r.get("dataset_card") or {}).get("screening")
    if not sc:
        return ""
    names = {t["id"]: t["name"] for t in r.get("traits", [])}
    out = ["<h3>Data screening on the trait vectors</h3>"]
    for name, d in (sc.get("datasets") or {}).items():
        rows = "".join(
            f"<tr><td>{esc(names.get(tid, tid))}</td><td class='num'>{figure(x['tagged'].get('mean'), True)}</td>"
            f"<td class='num'>{num(x['tagged'].get('median'))}</td><td class='num'>"
            f"{num(x['tagged'].get('p10'))} / {num(x['tagged'].get('p90'))}</td>"
            f"<td class='num'>{pct(x['tagged'].get('share_negative'))}</td>"
            f"<td class='num'>{figure(x['all'].get('mean'), True)}</td></tr>"
            for tid, x in (d.get("per_trait") or {}).items())
        wrong = "".join(f"<tr><td>{esc(w.get('id'))}</td><td>{esc(names.get(w.get('trait'), w.get('trait')))}</td>"
                        f"<td class='num'>{num(w.get(d.get('measure')))}</td></tr>" for w in d.get("wrong_way") or [])
        more = d.get("wrong_way_total", 0) - len(d.get("wrong_way") or [])
        out.append(f"<p><b>{esc(name)}</b> ({esc(d.get('rows'))} rows): {esc(d.get('measure'))} = {esc(d.get('what'))}."
                   "</p><table><tr><th>trait</th><th>rows tagged: mean</th><th>median</th><th>p10 / p90</th>"
                   "<th>below zero</th><th>all rows: mean</th></tr>" + rows + "</table>")
        out.append(f"<details><summary>Rows pushing their trait the wrong way ({esc(d.get('wrong_way_total', 0))}; "
                   f"{esc(d.get('measure'))} below {esc(d.get('threshold'))})</summary>"
                   + (f"<table><tr><th>row</th><th>trait</th><th>{esc(d.get('measure'))}</th></tr>{wrong}</table>"
                      if wrong else "<p>None.</p>") + (f"<p class='ci'>… {more} more</p>" if more > 0 else "")
                   + "</details>")
    return "".join(out)


def _versions(r: dict[str, Any]) -> str:
    """Which version of each checkpoint the figures come from (results.json["identities"]: one per
    checkpoint, or results are not built), flagged where the rows predate checkpoint identities."""
    ids = r.get("identities")
    unknown = [ck for ck in r.get("checkpoints", []) if ids is None or (ck in ids and not ids[ck])]
    line = ("<p class='sub'>versions: " + " · ".join(f"{esc(ck)} {esc(str(i)[:12])}" for ck, i in ids.items() if i)
            + "</p>") if ids and any(ids.values()) else ""
    if unknown:
        line += ("<p class='warn'>The rows of " + esc(", ".join(unknown)) + " do not say which version of the "
                 "checkpoint they scored (made before checkpoint identities, or merged from Inspect logs): run "
                 "the evaluation again to re-evaluate them once.</p>")
    return line


def eval_sections(r: dict[str, Any]) -> str:
    """Each registered eval's own section (evaluate/registry.py), in the registry's order."""
    from traitforge.shared.eval_registry import evals

    return "".join(ev.render(r) for ev in evals() if ev.render is not None)


def render_report(results: dict[str, Any]) -> str:
    r = {"checkpoints": [], "evals": {}, "results": {}, "traits": [], **results}
    traits = "".join(f"<li><b>{esc(t['name'])}</b>: {esc(t['statement'])}</li>" for t in r.get("traits", []))
    notes = "".join(f'<li class="note">{esc(n)}</li>' for n in r.get("notes", [])[:30])
    body = (
        f"<h1>{esc(r.get('model_name') or 'Model')} · trait evaluation</h1>"
        f"<p class='sub'>run {esc(r.get('run'))} · {esc(r.get('organisation'))} · generated {esc(r.get('generated_at'))}"
        f" · checkpoints: {esc(', '.join(r.get('checkpoints', [])))}</p>"
        + _versions(r) + _controls(r) + _forest(r) + "<h2>Headline</h2>" + _headline(r)
        + f"<details><summary>Traits ({len(r.get('traits', []))})</summary><ul>{traits}</ul></details>"
        + _per_trait(r) + _variance_and_scaling(r) + eval_sections(r) + _dataset(r) + _screening(r)
        + _token_accounting(r) + _training_data(r) + _patterns(r) + _pattern_checks(r) + _refusals(r) + _usage(r) + _examples(r)
        + (f"<h2>Notes</h2><ul>{notes}</ul>" if notes else ""))
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(r.get("model_name"))} '
            f'trait evaluation</title><meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<style>{CSS}</style></head><body><main>{body}</main></body></html>")


