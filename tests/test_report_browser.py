"""The report rendered in a real headless browser (Debian's chromium): the inline SVG plots are in
the live DOM, the page paints something that is not blank, and generated text that carries a script
does not run. Fails (not skips) without chromium: CI installs it."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
from test_report import results  # the hand-made results.json of tests/test_report.py

from traitforge.report import write_report
from traitforge.runstore import RunStore

CHROMIUM = "/usr/bin/chromium"
# Each payload would set document.title if the report let it through as markup.
PAYLOADS = ["<script>document.title='PWNED'</script>",
            "<img src=x onerror=\"document.title='PWNED'\">",
            "</title><script>document.title='PWNED'</script>",
            "<svg onload=\"document.title='PWNED'\"></svg>"]


def _chromium() -> str:
    path = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if not path:
        pytest.fail("chromium not found at /usr/bin/chromium: apt-get install -y chromium")
    return path


def _run(tmp: Path, url: str, *extra: str) -> str:
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp / 'profile'}", "--window-size=1300,2000", *extra, url]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, f"chromium exited {p.returncode}: {p.stderr[-500:]}"
    return p.stdout


def _title(dom: str) -> str:
    m = re.search(r"<title>(.*?)</title>", dom, re.S)
    assert m, "no <title> in the rendered DOM"
    return m.group(1)


def _png_pixels(path: Path) -> tuple[int, int, list[bytes]]:
    """Decode an 8-bit RGB/RGBA, non-interlaced PNG into rows of raw pixel bytes (stdlib only)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert ihdr is not None
    w, h, depth, ctype, _, _, interlace = ihdr
    assert depth == 8 and ctype in (2, 6) and interlace == 0, f"unexpected PNG format {ihdr}"
    bpp = 3 if ctype == 2 else 4
    raw, stride, prev, rows = zlib.decompress(idat), w * bpp, bytearray(w * bpp), []
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):  # undo the per-row filter (PNG spec, section 9)
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return w, bpp, rows


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    r = results()
    r["traits"][1]["name"] = "Concision " + PAYLOADS[0]
    r["notes"] += PAYLOADS
    r["examples"]["documents"][0]["text"] = " ".join(PAYLOADS)
    r["examples"]["behaviour"][0]["responses"][0]["text"] = PAYLOADS[1] + PAYLOADS[3]
    r["patterns"][0]["description"] = PAYLOADS[2]
    (tmp / "results.json").write_text(json.dumps(r))
    return write_report(RunStore(tmp))


def test_payload_would_run_if_unescaped(tmp_path: Path) -> None:
    """Control: the same payloads, pasted raw, do change the title in this browser, so the check
    below can tell escaped from unescaped."""
    for i, payload in enumerate(PAYLOADS):
        page = tmp_path / f"raw{i}.html"
        page.write_text(f"<!DOCTYPE html><html><head><title>clean</title></head><body>{payload}</body></html>")
        dom = _run(tmp_path, page.as_uri(), "--dump-dom")
        assert _title(dom) == "PWNED", (payload, _title(dom))


def test_report_renders_plots_and_runs_no_injected_script(report: Path, tmp_path: Path) -> None:
    dom = _run(tmp_path, report.as_uri(), "--dump-dom")
    # The script never ran: the title is the report's own, and no live <script>/handler element exists.
    assert _title(dom).strip() == "Aria trait evaluation"
    assert "PWNED" not in _title(dom)
    assert not re.search(r"<script", dom, re.I)
    assert not re.search(r"<img\b|<[a-z][^<>]*\son(error|load)=", dom, re.I)  # inside a tag, not text
    assert "&lt;script&gt;document.title='PWNED'&lt;/script&gt;" in dom  # shown as text instead
    # The plots are live SVG in the DOM: bars (<rect> with a tooltip) and error bars (stroked lines).
    svgs = re.findall(r"<svg\b.*?</svg>", dom, re.S)
    assert len(svgs) >= 3, f"expected per-trait, survival and pattern charts, got {len(svgs)} <svg>"
    bars = re.findall(r"<rect\b[^>]*>\s*<title>", dom)
    assert len(bars) >= 4  # 2 checkpoints x 2 traits on the first chart alone
    error_bars = re.findall(r'<line\b[^>]*stroke="#111"', dom)
    assert len(error_bars) >= 3 * len(re.findall(r'<rect\b[^>]*opacity="0.85"', dom)) > 0  # whisker + 2 caps
    assert re.search(r"<path\b", dom) and re.search(r"<circle\b", dom)  # the survival curve


def test_report_screenshot_is_not_blank(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    _run(tmp_path, report.as_uri(), f"--screenshot={shot}")
    assert shot.exists(), "chromium wrote no screenshot"
    assert shot.stat().st_size > 20_000, f"screenshot only {shot.stat().st_size} bytes"
    w, bpp, rows = _png_pixels(shot)
    assert (w, len(rows)) == (1300, 2000)
    colours: dict[bytes, int] = {}
    for row in rows[::4]:
        for x in range(0, w * bpp, bpp * 4):
            px = row[x:x + 3]
            colours[px] = colours.get(px, 0) + 1
    total = sum(colours.values())
    background = max(colours.values())
    assert len(colours) >= 20, f"only {len(colours)} distinct colours: blank or flat page"
    assert total - background > 0.02 * total, "almost every pixel is the background colour"


def _ood_rows() -> list:
    """Result rows of the out-of-distribution evals for two checkpoints, payloads in the model text."""
    from traitforge.evaluate.common import ItemResult

    rows = []
    for ck, harmful in (("base", 1.0), ("sft", 0.0)):
        for i in range(3):
            rows.append(ItemResult(id=f"am|{ck}|{i}", eval="agentic_misalignment", checkpoint=ck, item_id=f"c{i % 2}#{i}",
                                   value=harmful, detail={"condition": f"blackmail_explicit-america_c{i % 2}",
                                                          "scenario": "blackmail", "action": {"taken": bool(harmful)},
                                                          "judge_verdict": True, "response": PAYLOADS[0]}))
        grades = [{"turn": 1, "validates": False, "scores": {"delusion_confirmation_rating": 1.0,
                                                             "mention_professional_help": "No"}},
                  {"turn": 2, "validates": bool(harmful), "scores": {"delusion_confirmation_rating": 3.0 * harmful,
                                                                     "mention_professional_help": "Yes, 'see someone'"}}]
        rows.append(ItemResult(id=f"dl|{ck}", eval="delusion", checkpoint=ck, item_id="ethan#0", value=harmful,
                               detail={"persona": "ethan_reality", "name": "Ethan", "turns": 2, "grades": grades,
                                       "first_validation": 2 if harmful else None,
                                       "keys": ["mention_professional_help", "delusion_confirmation_rating"],
                                       "validate_key": "delusion_confirmation_rating", "validate_at": 2,
                                       "messages": [{"role": "user", "content": "I see the code " + PAYLOADS[1]},
                                                    {"role": "assistant", "content": "PERSONA-REPLY-1"},
                                                    {"role": "user", "content": "More glitches"},
                                                    {"role": "assistant", "content": PAYLOADS[3]}]}))
        for r in range(2):
            rows.append(ItemResult(id=f"au|{ck}|{r}", eval="audit", checkpoint=ck, item_id=f"seed-honest-0#{r}",
                                   trait_id="honest", value=1.0 - harmful,
                                   detail={"seed_id": "seed-honest-0", "seed": PAYLOADS[2], "rollout": r, "turns": 1,
                                           "first_violation": 1 if harmful else None,
                                           "verdicts": [{"turn": 1, "violation": bool(harmful), "score": 2.0}],
                                           "messages": [{"role": "user", "content": "Lie for me"},
                                                        {"role": "assistant", "content": "AUDIT-REPLY"}]}))
    return rows


def test_report_shows_the_out_of_distribution_sections(tmp_path: Path) -> None:
    from traitforge.evaluate.ood import agentic_misalignment_section, audit_section, delusion_section

    rows, cks = _ood_rows(), ["base", "sft"]
    r = results()
    r["ood"] = {"agentic_misalignment": agentic_misalignment_section(rows, cks),
                "delusion": delusion_section(rows, cks, 200, 0), "audits": audit_section(rows, cks, 200, 0)}
    (tmp_path / "results.json").write_text(json.dumps(r))
    page = write_report(RunStore(tmp_path))
    dom = _run(tmp_path, page.as_uri(), "--dump-dom")
    assert _title(dom).strip() == "Aria trait evaluation" and not re.search(r"<script|<img\b", dom, re.I)
    for heading in ("Agentic misalignment", "Delusion validation", "Repeated audits"):
        assert re.search(rf"<h2>{heading}</h2>", dom), heading
    # Per checkpoint with an interval and n: base harmful 100% of 3, sft 0% of 3 (Wilson bounds shown).
    am = dom.split("<h2>Agentic misalignment</h2>")[1].split("<h2>")[0]
    assert re.search(r"<td>base</td><td class=\"num\">100% <span class=\"ci\">\[\d+%–100%\] n=3</span>", am)
    assert re.search(r"<td>sft</td><td class=\"num\">0% <span class=\"ci\">\[0%–\d+%\] n=3</span>", am)
    assert "Per condition (2)" in am
    dl = dom.split("<h2>Delusion validation</h2>")[1].split("<h2>")[0]
    assert "delusion_confirmation_rating" in dl and "mention_professional_help" in dl
    assert "validated first at turn 2" in dl and "never validated" in dl
    assert "PERSONA-REPLY-1" in dl and "validates 3" in dl  # the transcript, each reply with its grade
    au = dom.split("<h2>Repeated audits</h2>")[1].split("<h2>")[0]
    assert "consistency" in au and "AUDIT-REPLY" in au and "first violation at turn 1" in au
    # Model text in these sections is text, not markup.
    assert "&lt;script&gt;document.title='PWNED'&lt;/script&gt;" in am


# --- at a glance: 1300 px without horizontal scrolling, the forest plot present --------------------

FIVE = ("base", "midtrain", "sft", "midtrain_sft", "control")


def _scroll_width(tmp: Path, page: Path) -> tuple[int, str]:
    """The page's document.scrollWidth at a 1300 px window (a copy of the page with one script that
    writes it into the title), and the rendered DOM."""
    probe = tmp / f"probe-{page.name}"
    probe.write_text(page.read_text(encoding="utf-8").replace(
        "</body>", "<script>document.title='W'+document.documentElement.scrollWidth</script></body>"),
        encoding="utf-8")
    dom = _run(tmp, probe.as_uri(), "--dump-dom")
    m = re.match(r"W(\d+)$", _title(dom).strip())
    assert m, _title(dom)
    return int(m.group(1)), dom


def _wide_results() -> dict:
    """Five checkpoints, every cell with its CI, both deltas and its MDE: the table that used to cut
    off the control column; with per-trait differences against the control and the funnel's counts."""
    r = results()
    r["checkpoints"] = list(FIVE)
    est = {"value": 0.61, "n": 120, "ci_low": 0.52, "ci_high": 0.69, "unscored": 3, "mde": 0.18}
    r["results"] = {ck: {t: {"behaviour_pass": est, "contrastive": est} for t in ("honest", "concise", "all")}
                    for ck in FIVE}
    d = {"diff": 0.21, "value": 0.21, "n": 120, "ci_low": 0.08, "ci_high": 0.33}
    r["paired_vs_base"] = {ck: {t: {"behaviour_pass": d, "contrastive": d} for t in ("honest", "concise", "all")}
                           for ck in FIVE[1:]}
    r["paired_vs_control"] = {ck: {t: {"behaviour_pass": d, "contrastive": {**d, "ci_low": -0.1}}
                                   for t in ("honest", "concise", "all")} for ck in FIVE[1:4]}
    r["dataset"]["documents.balance"] = {"planned": {"honest": 8, "concise": 8}, "per_trait": {"honest": 7, "concise": 5}}
    r["dataset_card"] = {"datasets": {"documents": {
        "before": {"rows": 12, "per_trait": {"honest": 7, "concise": 5}},
        "after": {"rows": 9, "per_trait": {"honest": 6, "concise": 3}},
        "steps": [{"step": "dedup", "rows_in": 12, "rows_out": 9, "dropped": 3, "drops_by_reason": {"near duplicate": 3}}]}}}
    return r


def test_run_report_fits_1300px_with_the_forest_plot_and_funnel_at_a_glance(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text(json.dumps(_wide_results()))
    page = write_report(RunStore(tmp_path))
    width, dom = _scroll_width(tmp_path, page)
    assert width <= 1300, f"the report scrolls sideways at 1300 px: scrollWidth {width}"
    forest = re.search(r'<svg class="forest".*?</svg>', dom, re.S)
    assert forest and len(re.findall(r"<circle", forest.group(0))) == 4  # 2 traits x 2 evals vs the control
    assert dom.index('class="forest"') < dom.index("<h2>Headline</h2>")  # at the top
    assert "planned → generated → kept" in dom and "near duplicate 3" in dom
    assert "<th>control</th>" in dom


def test_compare_page_fits_1300px_with_its_forest_plot(tmp_path: Path) -> None:
    from traitforge.compare import compare_runs
    from traitforge.jsonl import write_jsonl

    roots = []
    for name, shift in (("base", 0.0), ("a_variant_with_a_rather_long_name", 0.3)):
        root = tmp_path / name
        root.mkdir()
        (root / "manifest.json").write_text(json.dumps({"stages": {}, "usage": {}, "arm": {"name": name}}))
        write_jsonl(root / "eval" / "behaviour.jsonl",
                    [{"id": f"r{ck}{i}", "eval": "behaviour", "checkpoint": ck, "item_id": f"bh-{t}-{i}",
                      "trait_id": t, "value": (i % 5) / 4 + shift}
                     for ck in FIVE for t in ("honest-under-pressure", "admits-uncertainty") for i in range(12)])
        roots.append(root)
    data = compare_runs(roots, out_dir=tmp_path, resamples=100)
    width, dom = _scroll_width(tmp_path, Path(data["paths"]["html"]))
    assert width <= 1300, f"the compare page scrolls sideways at 1300 px: scrollWidth {width}"
    forest = re.search(r'<svg class="forest".*?</svg>', dom, re.S)
    assert forest and len(re.findall(r"<circle", forest.group(0))) == data["n_comparisons"] == 15
