"""Side-by-side capability: each checkpoint's answers to held-out everyday prompts against the
reference checkpoint's (base by default), judged blind in both orders; win rate, 50% = unchanged.
Its report section sits beside perplexity."""

from __future__ import annotations

from typing import Any

from traitforge.evaluate.common import EvalContext
from traitforge.evaluate.ood import judged_work
from traitforge.shared.eval_registry import Eval, Metric, SectionInput, Work, lazy, register


def _spec(ctx_ev: Any) -> Any:
    s = ctx_ev.capability.side_by_side
    return s if s is not None and s.enabled else None


def plan(ctx: EvalContext, items: dict[str, list]) -> list[Work]:
    spec = _spec(ctx.ev)
    if spec is None or not [ck for ck in ctx.checkpoints if ck != spec.reference]:
        return []
    from traitforge.evaluate.side_by_side import load_prompts, side_by_side_eval

    prompts, _ = load_prompts(spec.prompts, resolve=ctx.run.resolve, run_dir=ctx.store.root, n=spec.n)

    async def build(c: EvalContext):  # a JudgedEval
        return side_by_side_eval(c, spec, prompts)

    return [judged_work("side_by_side", build)]


def _section(s: SectionInput) -> dict[str, Any] | None:
    from traitforge.evaluate.side_by_side import side_by_side_section

    return side_by_side_section(s.rows, s.checkpoints, s.resamples, s.seed) or None


def _render(r: dict[str, Any]) -> str:
    s = (r.get("capability") or {}).get("side_by_side")
    return lazy("traitforge.report.judged:render_side_by_side")(s) if s else ""


register(Eval(
    "side_by_side", plan, rows=("side_by_side",), section=("capability", "side_by_side"), build_section=_section,
    render=_render, settings=("capability",),
    metrics={"side_by_side": Metric("Capability: side-by-side win rate (tie = half)", "mean", True,
                                    "held-out everyday prompts, judged blind in both orders against the reference "
                                    "checkpoint (base); 50% = unchanged")}))
