"""The evals, one registration each. An eval is a module (evaluate/evals/) that builds an `Eval` and
hands it to `register`; the evaluation's planner (evaluate/run.py), results.json
(evaluate/results.py), the report (report/html.py) and the Inspect integration
(evaluate/inspect_tasks.py, inspect_merge.py) read this registry, so adding an eval is its module
plus its line in `MODULES`. Below the stages: the report reads it without importing the evaluation
(an eval names its renderer and Inspect task as "module:function", imported when called)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Coroutine

if TYPE_CHECKING:
    from traitforge.evaluate.settings import EvaluationSpec
    from traitforge.runstore import RunStore

# The evaluation's context (evaluate/common.py EvalContext) and its result rows (ItemResult): a stage's
# types, so named here only.
EvalContext = Any
ItemResult = Any

# The eval modules, in the order their work is planned and their sections are written.
MODULES = (
    "traitforge.evaluate.evals.knowledge",
    "traitforge.evaluate.evals.behaviour",
    "traitforge.evaluate.evals.contrastive",
    "traitforge.evaluate.evals.multiturn",
    "traitforge.evaluate.evals.probes",
    "traitforge.evaluate.evals.agentic_misalignment",
    "traitforge.evaluate.evals.delusion",
    "traitforge.evaluate.evals.audits",
    "traitforge.evaluate.evals.odcv",
    "traitforge.evaluate.evals.judge_check",
    "traitforge.evaluate.evals.agentic_traits",
    "traitforge.evaluate.evals.capability",
    "traitforge.evaluate.evals.side_by_side",
    "traitforge.evaluate.evals.vectors",
    "traitforge.evaluate.evals.patterns",
)


@dataclass(frozen=True)
class Work:
    """One piece of an eval's work in the evaluation. `run` does it for the checkpoints of the
    context it is given; `respond` only makes its calls to the evaluated models (cached, not
    graded); `per_checkpoint`: `run` on a one-checkpoint context is that checkpoint's share of the
    work (the log-prob evals)."""

    name: str
    run: Callable[[EvalContext], Coroutine[Any, Any, Any]]
    respond: Callable[[EvalContext], Coroutine[Any, Any, Any]] | None = None
    per_checkpoint: bool = False
    # Runs with nothing else on the model: it hooks the model's layers (steering), which would
    # change what any concurrent forward pass computes.
    alone: bool = False
    # Reads another eval's rows (e.g. the behaviour replies): graded after the others.
    after_others: bool = False


@dataclass(frozen=True)
class Metric:
    """One row of the headline table (results.json["evals"]): label, kind (proportion, mean, ppl,
    accuracy), which way is better, what it measures."""

    label: str
    kind: str
    higher_is_better: bool
    description: str

    def meta(self, suffix: str = "") -> dict[str, Any]:
        return {"label": self.label.format(suffix), "kind": self.kind, "higher_is_better": self.higher_is_better,
                "description": self.description}


@dataclass(frozen=True)
class SectionInput:
    """What an eval's results.json section is built from. `ev`: the evaluation's settings (None when
    results.json is rebuilt from Inspect logs); not_applicable: checkpoint -> why it takes no
    log-prob eval."""

    store: "RunStore"
    rows: list[ItemResult]
    checkpoints: list[str]
    results: dict[str, Any]
    resamples: int
    seed: int
    ev: "EvaluationSpec | None" = None
    not_applicable: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class InspectTask:
    """The eval as an Inspect task: `make(ctx, checkpoint)` builds it; its scores merge back into
    RUN/eval/<rows>.jsonl (rows named by the eval's own name there), the score's `value_key` the
    row's value; `detail(sample, score, messages, main)` adds the eval's own row detail."""

    task: str  # Inspect's task name, "traitforge_<...>"
    rows: str
    value_key: str
    make: Callable[[EvalContext, str | None], Any]
    detail: Callable[[Any, Any, list[dict[str, str]], float | None], dict[str, Any]] | None = None


@dataclass(frozen=True)
class Eval:
    """An eval. `plan(ctx, items)`: its work for this evaluation ([] when not configured); items:
    kind -> the run's eval items (evaluate/items.py). `rows`: its files under RUN/eval/. `metrics`:
    its headline rows (a name ending in ':' is a prefix: "probe:" covers "probe:<file>", the label's
    {} gets the rest). `section`: where its own part of results.json goes (("ood", "delusion") nests),
    built by `build_section` (None or {}: left out). `render(results)`: its report section ("" when
    it has nothing to show). `settings`: the keys under `evaluation:` that are this eval's own (an
    out-of-distribution eval's whole section; the others' flat keys)."""

    name: str
    plan: Callable[[EvalContext, dict[str, list]], list[Work]] | None = None
    rows: tuple[str, ...] = ()
    metrics: dict[str, Metric] = field(default_factory=dict)
    section: tuple[str, ...] = ()
    build_section: Callable[[SectionInput], Any] | None = None
    render: Callable[[dict[str, Any]], str] | None = None
    inspect: InspectTask | None = None
    settings: tuple[str, ...] = ()
    # Out-of-distribution: their calls are announced together before they start (ood.announce_ood).
    ood: bool = False
    # weights_only(run, ev): its metrics that read token log-probs, so a model without local weights
    # (one behind an API) cannot take them; they are reported as not applicable, never as zero.
    weights_only: Callable[[Any, "EvaluationSpec"], list[str]] | None = None


# The keys under `evaluation:` that no one eval owns: the schedule, lengths, judge and bootstrap.
SHARED_SETTINGS = ("batch", "batch_poll_s", "schedule", "checkpoints_at_once", "max_tokens", "judge_max_tokens",
                   "item_max_tokens", "auditor_max_tokens", "bootstrap", "models")

_EVALS: dict[str, Eval] = {}
_loaded = False


def register(ev: Eval) -> Eval:
    """Adds an eval (a second registration of a name replaces the first, keeping its place)."""
    _EVALS[ev.name] = ev
    return ev


def unregister(name: str) -> None:
    _EVALS.pop(name, None)


def evals() -> list[Eval]:
    """Every registered eval, the shipped ones first, in `MODULES` order."""
    global _loaded
    if not _loaded:
        for mod in MODULES:
            importlib.import_module(mod)
        _loaded = True
    return list(_EVALS.values())


def row_files() -> list[str]:
    out: list[str] = []
    for ev in evals():
        out += [f for f in ev.rows if f not in out]
    return out


def metric_meta(name: str) -> dict[str, Any] | None:
    """The headline row of a metric by its name (or its prefix), None when no eval declares it."""
    for ev in evals():
        if name in ev.metrics:
            return ev.metrics[name].meta()
        for key, m in ev.metrics.items():
            if key.endswith(":") and name.startswith(key):
                return m.meta(name[len(key):])
    return None


def lazy(where: str) -> Callable[..., Any]:
    """A function named "module:function", imported when first called: an eval's registration names
    its Inspect task and report renderer without importing inspect-ai or the report."""
    mod, _, fn = where.partition(":")

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(mod), fn)(*args, **kwargs)

    call.__name__ = fn
    return call


def weights_only(run: Any, ev: "EvaluationSpec") -> list[str]:
    """The configured metrics, over every eval, that need local weights."""
    return [name for e in evals() if e.weights_only is not None for name in e.weights_only(run, ev)]


def inspect_tasks() -> dict[str, InspectTask]:
    """Inspect task name -> its eval's task, for every eval that has one."""
    return {ev.inspect.task: ev.inspect for ev in evals() if ev.inspect is not None}
