"""External probes (model-written evals): share of trait-consistent answers by log-prob."""

from __future__ import annotations

from traitforge.evaluate.common import EvalContext
from traitforge.shared.eval_registry import Eval, Metric, Work, register


def plan(ctx: EvalContext, items: dict[str, list]) -> list[Work]:
    from traitforge.evaluate.probes import run_probes

    return [Work("probes", run_probes, per_checkpoint=True)] if ctx.ev.probes else []


register(Eval(
    "probes", plan, rows=("probes",), settings=("probes", "probes_dir"),
    metrics={"probe:": Metric("Probe: {}", "proportion", True,
                              "external model-written eval; share of trait-consistent answers (log-prob)")}))
