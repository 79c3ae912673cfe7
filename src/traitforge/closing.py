"""The closing screen of `traitforge run`: the answer in a few lines (did training take, which traits
beat the control on which evals, how many figures are underpowered, the cost, where the report is),
read from results.json and the manifest. The full table stays in `traitforge status`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

MAX_BEATS = 6


def short_path(p: str | Path) -> str:
    """A path as the user would type it: relative to here when under here, else absolute; never
    `examples/../runs/...`."""
    p = Path(p).resolve()
    rel = os.path.relpath(p, Path.cwd())
    return rel if not rel.startswith("..") else str(p)


def closing_lines(root: Path, report: Path | None, cost: float, name: str = "") -> list[str]:
    head = f"[{name}] " if name else ""
    p = root / "results.json"
    if not p.is_file():
        return [f"{head}no results yet; cost ${cost:.4f}; `traitforge status {short_path(root)}` for the stages"]
    res: dict[str, Any] = json.loads(p.read_text(encoding="utf-8"))
    canary = res.get("canary") or {}
    took = canary.get("training_took")
    lines = [head + {True: "training took: the canary moved",
                     False: "training did NOT take: the canary did not move (check steps, learning rate, LoRA rank)",
                     None: "no canary verdict (controls.canary off or not evaluated)"}[took]]
    beats = beats_control(res)
    if not res.get("paired_vs_control"):
        lines.append("no control arm to compare with (training.checkpoints has no `control`)")
    elif not beats:
        lines.append("no trait beat the control on any eval (every CI includes zero or lies below)")
    for ck, tr, ev, d in beats[:MAX_BEATS]:
        lines.append(f"  {tr} beats the control on {ev} ({ck}): {d['value']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]")
    if len(beats) > MAX_BEATS:
        lines.append(f"  ... and {len(beats) - MAX_BEATS} more (see the report)")
    power = res.get("power") or {}
    under = power.get("underpowered") or []
    if under:
        lines.append(f"{len(under)} figures underpowered (their MDE is above {power.get('target_mde')}; "
                     f"{power.get('items_needed')} items each would do)")
    lines.append(f"cost ${cost:.4f}; full table: traitforge status {short_path(root)}")
    if report is not None:
        lines.append(f"report: {short_path(report)}")
    return lines


def arm_line(root: Path, report: Path | None, cost: float, name: str) -> str:
    """One arm of an ablation in one line (the compare page has the rest)."""
    p = root / "results.json"
    if not p.is_file():
        return f"[{name}] no results yet; ${cost:.4f}"
    res: dict[str, Any] = json.loads(p.read_text(encoding="utf-8"))
    took = {True: "training took", False: "training did NOT take", None: "no canary verdict"}[
        (res.get("canary") or {}).get("training_took")]
    beats = beats_control(res)
    shown = ", ".join(f"{tr} on {ev} {d['value']:+.2f}" for _, tr, ev, d in beats[:2]) + (", ..." if len(beats) > 2 else "")
    under = len((res.get("power") or {}).get("underpowered") or [])
    return (f"[{name}] {took}; beats the control: {len(beats)}{f' ({shown})' if beats else ''}; "
            f"{under} underpowered; ${cost:.4f}" + (f"; {short_path(report)}" if report is not None else ""))


def beats_control(res: dict[str, Any]) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(checkpoint, trait, eval, difference) where a trait's checkpoint beat the control arm: the
    paired CI excludes zero in the eval's better direction."""
    out = []
    for ck, scopes in (res.get("paired_vs_control") or {}).items():
        for tr, evs in scopes.items():
            if tr in ("all", "canary"):
                continue
            for ev, d in evs.items():
                up = (res.get("evals") or {}).get(ev, {}).get("higher_is_better", True)
                if isinstance(d, dict) and d.get("ci_low") is not None and d.get("ci_high") is not None \
                        and (d["ci_low"] > 0 if up else d["ci_high"] < 0):
                    out.append((ck, tr, ev, d))
    return out


def preset_note(spec_traits: int, kept: int, preset: str | None) -> str | None:
    """The one preset change a user would not expect: traits left out of their document."""
    if kept < spec_traits:
        by = f"the {preset} preset's " if preset else ""
        return (f"note: {by}max_traits: {kept} keeps the first {kept} of the document's {spec_traits} traits; "
                "the others are not generated, trained or evaluated")
    return None
