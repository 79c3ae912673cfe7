"""What every evaluation shares: the records written to RUN/eval/*.jsonl, prompt templates,
the context (the run context, the evaluation section, judge, targets, scorers) and resumable row writing."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Collection, Iterator, Literal, Sequence

from pydantic import model_validator

from traitforge import prompts, steps
from traitforge.errors import InputError
from traitforge.evaluate.settings import EvaluationSpec
from traitforge.jsonl import append_jsonl, read_jsonl
from traitforge.llm.client import LLM
from traitforge.llm.embedded import EMBEDDED_NAME
from traitforge.llm.errors import BackendError, Refused
from traitforge.llm.spec import ModelSpec
from traitforge.runstore import RunStore
from traitforge.section import CHECKPOINTS
from traitforge.steps import StepRun, Unit
from traitforge.types import Record, TraitSet, stable_hash

if TYPE_CHECKING:
    from traitforge.runcontext import Run
    from traitforge.prefetch import Prefetch

log = logging.getLogger("traitforge.evaluate")

CHECKPOINT_NAMES = CHECKPOINTS
# Prompts: traitforge.prompts (the run's kit, with the spec's prompts_dir overrides, is active
# while the evaluation stage runs).
render = prompts.render
prompt_lines = prompts.lines


class EvalItem(Record):
    """One evaluation item, generated once per run and answered by every checkpoint."""

    id: str
    kind: Literal["knowledge", "mc", "behaviour", "multiturn"]
    trait_id: str = ""  # "" = about all traits (open knowledge questions)
    prompt: str = ""
    category: str = ""
    ood: bool = False
    options: list[str] = []  # mc: options[0] is the trait, the rest distractors
    option_sources: list[str] = []
    consistent: str = ""  # contrastive pair for behaviour items
    violating: str = ""
    dropped: str | None = None  # why the item is not used (overlap with training, junk)


# checkpoint name -> the identity of what is being evaluated under it (`row_identity`), while an
# evaluation runs: every row made then is stamped with it (`ItemResult.identity`).
_EVALUATING: ContextVar[dict[str, str] | None] = ContextVar("evaluating", default=None)


class ItemResult(Record):
    """One checkpoint's result on one item for one eval. value None = unscored (reason says why).
    identity: what was evaluated (`row_identity`: the checkpoint's content and the settings that
    shape its rows); "" in rows made before identities, or outside an evaluation (Inspect logs)."""

    id: str
    eval: str
    checkpoint: str
    item_id: str
    trait_id: str = ""
    ood: bool = False
    value: float | None = None
    reason: str = ""
    detail: dict[str, Any] = {}
    identity: str = ""

    @model_validator(mode="before")
    @classmethod
    def _stamp(cls, data: Any) -> Any:
        # Every eval makes its rows with ItemResult(...): stamping here keys them all by what was
        # evaluated without each eval passing it. Rows read back already carry theirs (or, from
        # before identities, belong to no checkpoint being evaluated: set aside first, `versions`).
        current = _EVALUATING.get()
        if current and isinstance(data, dict) and not data.get("identity") and data.get("checkpoint") in current:
            data = {**data, "identity": current[data["checkpoint"]]}
        return data


@contextlib.contextmanager
def evaluating(identities: dict[str, str]) -> Iterator[None]:
    """Rows made inside are stamped with their checkpoint's identity (asyncio tasks and
    `asyncio.to_thread` inherit it)."""
    token = _EVALUATING.set(dict(identities))
    try:
        yield
    finally:
        _EVALUATING.reset(token)


def result_id(eval_name: str, checkpoint: str, item_id: str) -> str:
    """A row's key within its eval file. One version of a checkpoint has rows there at a time: a
    changed one's rows are set aside before it is evaluated again (`versions.set_aside_stale`)."""
    return f"{eval_name}|{checkpoint}|{item_id}"


def refusal_text(e: Refused, role: str) -> str:
    """An unscored row's reason for a refused call: who, the outcome, the provider's reason."""
    return f"{role} {e.outcome}: {e.reason or 'no reason given'}"[:300]


def refusal_detail(e: Refused, role: str) -> dict[str, Any]:
    """What a row records of a refusal: outcome ("refused" / "blocked"), by which role and model, and
    the provider's reason (results.refusal_summary counts them)."""
    return {"outcome": e.outcome, "refused_by": role, "refusing_model": e.model, "provider_reason": e.reason[:300]}


@dataclass
class EvalContext:
    run: "Run"  # the run context: store, traits, seed, names, settings by name, the client pool
    ev: EvaluationSpec  # the evaluation's own section
    judge: LLM
    auditor: LLM
    # name -> what is evaluated: a model spec (local weights or an API model) or a ready LLM
    checkpoints: dict[str, ModelSpec | LLM]
    # Writes the eval items (questions, distractors, held-out prompts, contrastive replies): models.item_writer
    # when set, so the model that writes an item is not the one that grades the answers; else the judge.
    item_writer: LLM | None = None
    _targets: dict[str, LLM] = field(default_factory=dict)
    # Every model of the evaluation, when `checkpoints` is narrowed to one (see `only`).
    whole: dict[str, ModelSpec | LLM] | None = None

    @property
    def all_checkpoints(self) -> dict[str, ModelSpec | LLM]:
        return self.whole if self.whole is not None else self.checkpoints

    @property
    def writer(self) -> LLM:
        return self.item_writer or self.judge

    @property
    def store(self) -> RunStore:
        return self.run.store

    @property
    def traits(self) -> TraitSet:
        return self.run.traits

    def cache_path(self) -> Path:
        return self.run.cache_file

    async def step(self, name: str, units: Sequence[Unit], work: Callable[[Unit], Awaitable[Any]], *,
                   out: Path | None = None, done: Collection[str] | Callable[[Unit], bool] | None = None,
                   shuffle: str | None = None, grade: bool = False, desc: str | None = None) -> StepRun[Any]:
        """One evaluation step on the step engine (steps.py). A unit is done when `done` says so
        (default: its key, the result id, is already a row of `out`); the others run, blind-shuffled
        by the run's seed and `shuffle` when given, and each unit's rows (an ItemResult, a list of
        them, or None) are appended to `out` as it finishes, so a crash keeps what was done. A
        backend that gives up on one unit skips it for this run only (logged; a re-run retries it):
        such a unit's value is None. grade: the judge's calls of the units go as provider batches
        first in batch mode (evaluation.batch), and the live calls' estimate is printed where money
        is at stake (step `evaluate.<name>`)."""
        todo = steps.pending(units, steps.done_keys(out) if done is None else done)
        if shuffle is not None:
            self.rng(shuffle).shuffle(todo)

        async def guarded(u: Unit) -> Any:
            try:
                return await work(u)
            except Refused as e:
                return self.refused(u, e, out)
        return await steps.run_step(f"evaluate.{name}", todo, guarded, out=out, transient=(BackendError,),
                                    prefetch=self.prefetch() if grade else None, desc=desc or name)

    def role_of(self, model: str) -> str:
        """Which role of the evaluation a model name plays: "judge", "auditor", "item writer", else
        "model" (an evaluated model)."""
        if any(t.name == model for t in self._targets.values()):
            return "model"
        for role, llm in (("judge", self.judge), ("auditor", self.auditor), ("item writer", self.item_writer)):
            if llm is not None and model in (llm.name, getattr(llm.fallback, "name", None)):
                return role
        return "model"

    def refused(self, u: Unit, e: Refused, out: Path | None) -> Any:
        """A unit whose call was refused or blocked (after the role's on_refusal policy). Keyed by a
        result id ("eval|checkpoint|item"), it becomes that eval's row, unscored with the outcome and
        the provider's reason: for an evaluated model a refusal is itself a result (results.json
        "refusals"); for the judge an unscored grade, never a verdict. In a step without an output
        (the models' replies) the row goes to the eval's file and the unit is not graded. Other
        units (item writing) are skipped with the reason."""
        parts = u.key.split("|", 2)
        log.info("evaluation: %s", e)
        if len(parts) != 3:
            return steps.Skip(e.skip_reason)
        eval_name, ck, item_id = parts
        role = self.role_of(e.model)
        row = ItemResult(id=u.key, eval=eval_name, checkpoint=ck, item_id=item_id, trait_id=u.trait_id,
                         value=None, reason=refusal_text(e, role), detail=refusal_detail(e, role))
        if out is not None:
            return row
        append_jsonl(eval_path(self.store, eval_name), [row])
        return steps.Skip(e.skip_reason)

    def prefetch(self) -> "Prefetch":
        """The prefetch of the judge's calls: by provider batches first in batch mode (evaluation.batch)."""
        from traitforge import prefetch

        return prefetch.for_stage(self.store, self.run.prices, {"judge": self.judge}, self.ev)

    def target(self, name: str) -> LLM:
        """The evaluated model as an `LLM` (cached like every other call)."""
        if name not in self._targets:
            t = self.checkpoints[name]
            # A ready LLM as it is; else the run's pool: shared with a role naming the same model.
            self._targets[name] = t if isinstance(t, LLM) else self.run.client(t)
        return self._targets[name]

    def weights(self, name: str) -> str | None:
        """The local checkpoint ("smollm2-135m" or a directory) behind `name`; None for a model
        without local weights (an API model), whose token log-probs we cannot read."""
        provider, model = provider_model(self.all_checkpoints[name])
        return model if provider == "local" else None

    def logprob_checkpoints(self) -> list[str]:
        """The names the log-prob evals (multiple choice, contrastive, probes, perplexity) run on."""
        return [n for n in self.checkpoints if self.weights(n)]

    def not_applicable(self) -> dict[str, str]:
        """name -> why the log-prob evals do not apply to it."""
        return {n: f"{describe(self.checkpoints[n])} has no local weights: this eval needs token log-probabilities"
                for n in self.checkpoints if not self.weights(n)}

    def scorer(self, name: str):  # noqa: ANN201 - LogProbScorer, imported lazily (torch)
        from traitforge.shared.logprob import scorer_for

        weights = self.weights(name)
        if weights is None:
            raise ValueError(f"{name}: no local weights to score log-probs with")
        return scorer_for(weights)

    def only(self, name: str) -> "EvalContext":
        """This context narrowed to one evaluated model; clients, targets and usage are shared."""
        return dataclasses.replace(self, checkpoints={name: self.checkpoints[name]}, _targets=self._targets,
                                   whole=self.all_checkpoints)

    def release(self, name: str) -> bool:
        """Free the weights of a local checkpoint whose evaluation is over, unless the judge, the
        auditor or the item writer runs on the same weights. True if something was freed."""
        weights = self.weights(name)
        if weights is None:
            return False
        from traitforge.llm.embedded import resolve_model_path
        from traitforge.llm.providers.local_hf import unload_model

        path = resolve_model_path(weights).resolve()
        kept = {Path(llm.backend.path).resolve() for llm in (self.judge, self.auditor, self.item_writer)
                if llm is not None and llm.backend.provider == "local" and hasattr(llm.backend, "path")}
        return path not in kept and unload_model(path)

    def rng(self, salt: str) -> random.Random:
        return random.Random(f"{self.run.seed}:{salt}")

    def model_name(self) -> str:
        return self.run.model_name

    def organisation(self) -> str:
        return self.run.organisation


@dataclass
class JudgedEval:
    """An eval whose judge grades what the evaluated models did, in two phases: every unit not yet a
    row of `out` is answered (`respond`: the models' reply or transcript, cached; no judge call),
    then each answer is graded (`grade`: unit, answer -> its rows; the judge's calls only), blind
    and shuffled, with grade=True: by provider batches first in batch mode (evaluation.batch), the
    estimate printed. The evaluation's schedule runs `answers` a checkpoint at a time, then `run`
    over every checkpoint (the answers come from the cache). A unit whose models' call failed is
    not graded this run (a re-run retries it)."""

    ctx: EvalContext
    name: str  # the eval, as in RUN/eval/<name>.jsonl
    units: list[Unit]  # keyed by result id
    respond: Callable[[Unit], Awaitable[Any]]
    grade: Callable[[Unit, Any], Awaitable[Any]]
    desc: str

    @property
    def out(self) -> Path:
        return eval_path(self.ctx.store, self.name)

    async def answers(self) -> list[tuple[Unit, Any]]:
        """(unit, answer) for each unit not yet graded whose models answered."""
        res = await self.ctx.step(f"{self.name} replies", self.units, self.respond, done=steps.done_keys(self.out),
                                  shuffle=self.name, desc=f"{self.desc}: replies")
        return res.done()

    async def run(self) -> None:
        answered = await self.answers()
        await self.ctx.step(self.name, [Unit(u.key, u.trait_id, (u, a)) for u, a in answered],
                            lambda g: self.grade(*g.data), out=self.out, shuffle=self.name, grade=True,
                            desc=self.desc)


def eval_path(store: RunStore, name: str) -> Path:
    return store.path("eval", f"{name}.jsonl")


def load_items(path: Path) -> list[EvalItem]:
    return read_jsonl(path, EvalItem) if path.exists() else []


def load_results(path: Path) -> list[ItemResult]:
    return read_jsonl(path, ItemResult) if path.exists() else []


def provider_model(target: ModelSpec | LLM) -> tuple[str, str]:
    if isinstance(target, LLM):
        return target.backend.provider, target.backend.model
    provider, _, model = target.model.partition(":")
    return provider, model


def describe(target: ModelSpec | LLM) -> str:
    return ":".join(provider_model(target))


def _local(where: str, resolve: Callable[[str], Path | None]) -> ModelSpec:
    """A `local:` spec with an absolute checkpoint path (the embedded model keeps its name)."""
    if where != EMBEDDED_NAME:
        where = str(Path(resolve(where) or where).expanduser().resolve())
    return ModelSpec(model="local:" + where)


def normalise_checkpoints(checkpoints: dict[str, Any], models: dict[str, ModelSpec] | None = None,
                          resolve: Callable[[str], Path | None] = Path) -> dict[str, ModelSpec | LLM]:
    """The run's checkpoints (name -> checkpoint directory, "smollm2-135m", a ModelSpec or a ready
    LLM) plus `evaluation.models` (any backend, e.g. a model trained elsewhere behind an API);
    `resolve` makes their relative local paths absolute (the spec's folder)."""
    out: dict[str, ModelSpec | LLM] = {}
    for name, where in checkpoints.items():
        if isinstance(where, (LLM, ModelSpec)):  # a model by any name
            if not EvaluationSpec.valid_model_name(name):
                raise InputError(f"evaluation: model name {name!r}: use letters, digits, '_', '-' or '.'")
            out[name] = where
        elif name.partition(".")[0] in CHECKPOINT_NAMES:  # a trained checkpoint's folder (or a seed/fraction variant)
            out[name] = _local(str(where), Path)
        else:
            raise InputError(f"evaluation: unknown checkpoint name '{name}' (use {', '.join(CHECKPOINT_NAMES)})")
    for name, ms in (models or {}).items():
        if name in out:
            raise InputError(f"evaluation.models.{name}: the name is taken by the run's checkpoint '{name}'")
        provider, model = provider_model(ms)
        out[name] = ms.model_copy(update={"model": _local(model, resolve).model}) if provider == "local" else ms
    if not out:
        raise InputError("evaluation: no checkpoints and no evaluation.models to evaluate")
    return out


def fingerprint_of(target: ModelSpec | LLM) -> Any:
    """What identifies a target's outputs (never API keys). The refusal options count only when set
    (a spec written before they existed keeps its fingerprint)."""
    if isinstance(target, LLM):
        return target.backend.cache_identity()
    d = target.model_dump(exclude={"api_key_env"})
    return {k: v for k, v in d.items() if v is not None or k not in ("on_refusal", "refusal_retries", "fallback")}


def model_identity(target: ModelSpec | LLM) -> Any:
    """What a model's answers depend on: for local weights their content identity (a checkpoint
    retrained in place is another model), for any other model its cache identity (provider, model,
    the reasoning options set); a spec's temperature besides."""
    from traitforge.llm.base import REASONING_OPTIONS
    from traitforge.llm.embedded import resolve_model_path
    from traitforge.llm.identity import checkpoint_identity, weights_problem

    provider, model = provider_model(target)
    extra = {} if isinstance(target, LLM) or target.temperature is None else {"temperature": target.temperature}
    if provider != "local":
        if isinstance(target, LLM):
            return {**target.backend.cache_identity(), **extra}
        options = {k: getattr(target, k) for k in REASONING_OPTIONS if getattr(target, k, None) is not None}
        return {"provider": provider, "model": model, **options, **extra}
    path = resolve_model_path(model).resolve()
    problem = weights_problem(path)
    if problem:  # before any model call, not a traceback when it loads
        raise InputError(f"{problem}: train it again (traitforge train) or point to a complete checkpoint")
    return {"local": checkpoint_identity(path), **extra}


def eval_settings(ev: EvaluationSpec, judge: LLM, auditor: LLM) -> dict[str, Any]:
    """The settings every eval's rows depend on: the evaluated model's answer length, the judge and
    the auditor, the conversation and perplexity sizes (not the schedule, the item counts or the
    bootstrap: those change which rows exist or how they are summed, not what a row says)."""
    return {"max_tokens": ev.max_tokens, "judge_max_tokens": ev.judge_max_tokens,
            "auditor_tokens": ev.auditor_tokens, "multiturn_turns": ev.multiturn_turns,
            "capability_window": ev.capability_window, "capability_max_tokens": ev.capability_max_tokens,
            "judge": model_identity(judge), "auditor": model_identity(auditor)}


def row_identity(target: ModelSpec | LLM, settings: dict[str, Any]) -> str:
    """The identity stamped on a model's rows: its own and the evaluation's settings."""
    return stable_hash({"model": model_identity(target), "settings": settings}, 16)


def clean_generated(text: str) -> str:
    """Strip the wrappers small models put around a requested message (quotes, labels)."""
    t = text.strip()
    for label in ("User message:", "User:", "Message:", "Reply:", "Assistant:", "Answer:"):
        if t.lower().startswith(label.lower()):
            t = t[len(label):].strip()
    if len(t) >= 2 and t[0] == t[-1] and t[0] in "\"'":
        t = t[1:-1].strip()
    return t
