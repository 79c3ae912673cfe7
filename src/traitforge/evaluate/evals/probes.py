"""External probes (model-written evals): share of trait-consistent answers by log-prob."""

from __future__ import annotations

from typing import Any

from traitforge.evaluate.settings import EvaluationSpec
from traitforge.evaluate.common import EvalContext
from traitforge.shared.eval_registry import Eval, Metric, Work, register


def _weights_only(run: Any, ev: EvaluationSpec) -> list[str]:
    from traitforge.evaluate.probes import probe_specs

    return [p.name for p in probe_specs(run, ev)]


def plan(ctx: EvalContext, items: dict[str, list]) -> list[Work]:
    from traitforge.evaluate.probes import run_probes

    return [Work("probes", run_probes, per_checkpoint=True)] if ctx.ev.probes else []


register(Eval(
    "probes", plan, rows=("probes",), settings=("probes", "probes_dir"), weights_only=_weights_only,
    metrics={"probe:": Metric("Probe: {}", "proportion", True,
                              "external model-written eval; share of trait-consistent answers (log-prob)")}))
