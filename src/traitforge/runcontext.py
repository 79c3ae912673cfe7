"""The run context every stage takes (`Run`, `StageScope`), and how a command opens one
(`open_run`, presets): below the stages, which import it, and above config, the run store and llm/.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Coroutine, Iterator, TypeVar

import yaml

from traitforge.config import Models, ModelSpec, RunSpec, check_files, check_paths, load_spec
from traitforge.errors import InputError, TraitforgeError
from traitforge.llm.cache import LLMCache
from traitforge.logs import log_to_run
from traitforge.prompts import PACKAGE, PromptKit
from traitforge.llm.client import LLM
from traitforge.rundir import check_copy_place, is_spec_copy, lock_run, snapshot_spec
from traitforge.llm.identity import file_sha256
from traitforge.runstore import SPEC_COPY, RunStore
from traitforge.shared.variants import variant_names
from traitforge.traits import load_traits
from traitforge.types import TraitSet

log = logging.getLogger("traitforge.pipeline")
R = TypeVar("R")
PRESETS_DIR = Path(__file__).parent / "templates" / "presets"


def preset_overrides(name: str | None) -> dict[str, Any]:
    if not name:
        return {}
    path = PRESETS_DIR / f"{name}.yaml"
    if not path.is_file():
        names = ", ".join(sorted(p.stem for p in PRESETS_DIR.glob("*.yaml")))
        raise InputError(f"unknown preset '{name}' (available: {names})")
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


class StageScope:
    """One pipeline stage in progress (`with run.stage(name) as st`): its async work runs through
    `st.run(coro)`, which records the LLM usage of the run's clients under the stage's name and
    closes them inside that same event loop (their connection pools belong to it; the next loop
    opens new ones), also when the work raises."""

    def __init__(self, owner: "Run", name: str):
        self.owner, self.name = owner, name
        self.elapsed_s = 0.0

    def run(self, coro: Coroutine[Any, Any, R]) -> R:
        from traitforge.llm.client import close_all

        async def main() -> R:
            try:
                return await coro
            finally:
                self.record_usage()
                await close_all(self.owner.clients())
        return asyncio.run(main())

    def record_usage(self) -> None:
        """Move what the run's clients spent since the last call into the manifest, under this stage
        (a generation step drains its own clients into its step's name first)."""
        for llm in self.owner.clients():
            self.owner.store.record_llm_usage(self.name, llm, self.owner.spec.prices)


@dataclass
class Run:
    """The run context every stage takes: the spec, the run directory, the traits, the models by
    role (one pooled client per model), the prompt kit, and `stage(name)`, the one place a stage's
    usage, timing and client lifetime are kept."""

    spec: RunSpec
    store: RunStore
    traits: TraitSet
    cache: LLMCache | None = None  # None: opened at spec.cache_file on the first client made
    prompts: PromptKit = PACKAGE  # the package's templates with the spec's prompts_dir in their place
    _llms: dict[str, LLM] = field(default_factory=dict)
    _budget: Any = None
    _roles: dict[str, LLM] = field(default_factory=dict)  # clients handed in for a role (Run.of)
    _scope: StageScope | None = None
    # Other arms of the same ablation (ablation.open_arms): a stage may take an output of one of them
    # that has the same fingerprint instead of making it again (training: a checkpoint).
    share_from: dict[str, Path] = field(default_factory=dict)

    @classmethod
    def of(cls, store: RunStore, spec: RunSpec, traits: TraitSet | None = None, **clients: LLM | None) -> "Run":
        """A run context from parts, for library callers and tests: `clients` are ready LLMs by
        role (judge=..., generator=...); a role not given is built from the spec when asked for.
        No traits (training, which does not read them): an empty set."""
        if traits is None:
            traits = TraitSet(model_name=spec.model_name or "", organisation=spec.organisation or "", traits=())
        return cls(spec=spec, store=store, traits=traits, prompts=PromptKit(spec.prompts_folder),
                   _roles={k: v for k, v in clients.items() if v is not None})

    # --- what a stage may read besides its own section, by name ---------------------------
    @property
    def name(self) -> str:
        """The spec's run name (training names its trainer runs "<name>-<checkpoint>")."""
        return self.spec.name

    @property
    def seed(self) -> int:
        return self.spec.seed

    def mix_path(self, stage: Any) -> Path | None:
        """A training stage's mix file: "generic" is this run's generated generic mix."""
        return self.spec.mix_path(stage)

    @property
    def prices(self) -> str | None:
        """The prices file (None: the package's prices)."""
        return self.spec.prices

    def resolve(self, path: str | None) -> Path | None:
        """A path from the spec, relative to the spec's folder."""
        return self.spec.resolve(path)

    @property
    def cache_file(self) -> Path:
        return self.spec.cache_file(self.store.root)

    @property
    def models(self) -> Models:
        """The model names by role; `models.base` is the model that is trained (the student)."""
        return self.spec.models

    @property
    def model_name(self) -> str:
        """The name the traits give the model ("the assistant" when neither spec nor traits do)."""
        return self.spec.model_name or self.traits.model_name or "the assistant"

    @property
    def organisation(self) -> str:
        """The organisation the traits name ("its developer" when neither spec nor traits do)."""
        return self.spec.organisation or self.traits.organisation or "its developer"

    @property
    def max_traits(self) -> int | None:
        """max_traits: set, the traits were cut to the first n (probes of a cut trait are left out)."""
        return self.spec.max_traits

    @property
    def canary(self) -> bool:
        """controls.canary: the positive control is on (its items join the evaluation's)."""
        return self.spec.controls.canary

    @property
    def canary_file(self) -> Path | None:
        """controls.canary_file, resolved (None: the package's canary)."""
        return self.spec.resolve(self.spec.controls.canary_file)

    @property
    def target_mde(self) -> float:
        """controls.target_mde: the smallest effect the evaluation's power summary is sized for."""
        return self.spec.controls.target_mde

    @property
    def base_weights(self) -> str:
        """The base model's weights: the embedded model's name, or its checkpoint as an absolute path."""
        from traitforge.llm.embedded import EMBEDDED_NAME

        base = self.spec.models.base
        return base if base == EMBEDDED_NAME else str(Path(self.spec.resolve(base) or base).expanduser().resolve())

    def llm(self, role: str) -> LLM:
        """The LLM for a role (generator, refiner, judge, auditor, item_writer, and student: the base
        model as a `local:` model). An unset refiner is the generator."""
        if role in self._roles:
            return self._roles[role]
        if role == "student":
            from traitforge.llm.embedded import EMBEDDED_NAME

            base = self.spec.models.base
            return self.client(ModelSpec(model=f"local:{base}" if base == EMBEDDED_NAME else
                                         f"local:{self.spec.resolve(base)}"))
        if role == "refiner" and self.spec.models.refiner is None:
            return self.llm("generator")
        if role == "item_writer" and self.spec.models.item_writer is None:
            return self.llm("judge")
        return self.client(getattr(self.spec.models, role) or self.spec.models.generator)

    def client(self, spec: ModelSpec) -> LLM:
        """The run's one client for a model: roles and evaluated models naming the same model (same
        options) share it, and with it one connection pool and rate limiter; every client shares the
        run's cache and budget."""
        from traitforge.llm.budget import Budget
        from traitforge.llm.registry import make_llm

        key = spec.model_dump_json()
        if key not in self._llms:
            if self.cache is None:
                self.cache = open_cache(self.store, self.spec.cache_file(self.store.root))
            fallback = self.client(ModelSpec(model=spec.fallback)) if spec.on_refusal == "fallback_model" \
                and spec.fallback else None
            llm = make_llm(spec, cache=self.cache, fallback=fallback)
            self._keep_usage(llm)
            if self.spec.budget.max_usd is not None:
                if self._budget is None:
                    self._budget = Budget(self.spec.budget.max_usd, store=self.store,
                                          prices_file=self.spec.prices)
                llm.budget = self._budget
            self._llms[key] = llm
        return self._llms[key]

    def _keep_usage(self, llm: LLM) -> None:
        """Each paid call of the client appended to the run's per-call ledger as it completes
        (usage_ledger.py), priced at the run's prices."""
        from traitforge.usage_ledger import sink_for

        if isinstance(llm, LLM) and llm.sink is None:
            llm.sink = sink_for(self.store, lambda: self._scope.name if self._scope is not None else "")
            llm.prices_file = self.spec.prices

    def narrowed(self, store: RunStore, traits: TraitSet) -> "Run":
        """This run with another run directory and traits (a preview in RUN/preview/): the same
        spec, prompt kit, client pool, cache and budget."""
        return replace(self, store=store, traits=traits, _scope=None)

    def adopt(self, llm: LLM) -> LLM:
        """A ready client handed to a stage (an evaluated model given as an LLM): from now on the run's
        stages record its usage and close it like the run's own clients."""
        self._roles.setdefault(f"adopted:{id(llm)}", llm)
        return llm

    def clients(self) -> list[LLM]:
        """Every distinct client of the run: those handed in (by role, or adopted) and the pooled ones."""
        return list({id(c): c for c in [*self._roles.values(), *self._llms.values()]}.values())

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[StageScope]:
        """`with run.stage("curate") as st: st.run(coro)`: the run's prompt kit active, the stage
        timed (run log), its LLM usage recorded into the manifest once, under `name`, and its clients
        closed, also on error. Entered again inside a stage, it is the same stage (a stage function
        calling another's entry point does not record or time twice)."""
        if self._scope is not None:
            yield self._scope
            return
        scope = self._scope = StageScope(self, name)
        for llm in self.clients():  # clients handed in get the run's per-call ledger too
            self._keep_usage(llm)
        t0 = time.perf_counter()
        try:
            with self.prompts.active():
                yield scope
        finally:
            self._scope = None
            scope.record_usage()  # what ran outside st.run (nothing, usually)
            scope.elapsed_s = round(time.perf_counter() - t0, 2)
            log.info("stage %s: %.1fs", name, scope.elapsed_s)


def resolve_spec_path(target: str | Path) -> Path:
    """Commands take a spec file or a run directory: a directory's own spec copy (RUN/spec.yaml), or,
    for a run made before it kept one, the spec its manifest names."""
    p = Path(target)
    if p.is_dir():
        manifest = p / "manifest.json"
        if not manifest.is_file():
            raise InputError(f"{p}: not a run directory (no manifest.json) and not a spec file")
        if is_spec_copy(p / SPEC_COPY):
            return p / SPEC_COPY
        spec_path = RunStore(p).manifest.get("spec_path")  # a corrupt manifest: one line
        if not spec_path or not Path(spec_path).is_file():
            raise InputError(f"{manifest}: the run's spec file {spec_path!r} is gone; pass the spec instead")
        return Path(spec_path)
    return p


def open_run(target: str | Path, preset: str | None = None, variant: str | None = None) -> Run:
    """The run a command works on. A spec file: its output_dir, where the spec and the files it names
    are copied (rundir.py). A run directory: that directory, with the spec copy it holds, wherever it
    was made (a copied or moved run never writes to the original). Everything the spec names is
    checked before the directory is touched; then the run's lock is taken (one process per run).
    `variant`: that arm of the spec (config.load_spec), in its own directory (ablation.py)."""
    target = Path(target)
    spec_path = resolve_spec_path(target)
    given_dir = target.is_dir()
    if preset is None and given_dir and spec_path.resolve() != (target / SPEC_COPY).resolve():  # made before spec copies
        preset = RunStore(target).manifest.get("preset")
    spec = load_spec(spec_path, overrides=preset_overrides(preset), variant=variant)
    if given_dir and variant is None:
        spec.output_dir = str(target.resolve())  # this directory, whatever output_dir said
    check_paths(spec, spec_path)  # a missing file fails here, not after hours of generation and training
    check_files(spec, spec_path)  # and a malformed one, with its file and line
    traits = load_traits(spec.resolve(spec.traits), spec.model_name, spec.organisation)
    _check_probe_traits(spec, spec_path, traits)
    PromptKit(spec.prompts_folder)  # an override with an unknown name or variable fails here, at open
    root = spec.output_path
    check_copy_place(root)
    store = RunStore(root)
    store.lock = lock_run(root)  # held while the store lives (and at most until the process ends)
    cache_home = spec.resolve(spec.cache_dir) if spec.cache_dir else None
    if cache_home is not None and cache_home.resolve() != root.resolve() and (cache_home / "manifest.json").is_file():
        lock_run(cache_home)  # an ablation arm: the base run's lock covers the cache the arms share
    rebuilt = store.recover()  # a corrupt manifest: moved aside and rebuilt from the run's files
    if rebuilt:
        print(f"traitforge: {rebuilt}", file=sys.stderr)
    if spec_path.resolve() == (root / SPEC_COPY).resolve():  # the run's own copy: keep its origin
        origin, preset = store.manifest.get("spec_path"), preset or store.manifest.get("preset")
    else:
        origin = str(spec_path.resolve())
    copy, copies = snapshot_spec(spec, root, store.manifest.get("inputs"))
    spec = load_spec(copy)  # from here on the run reads its own copies
    traits_path = spec.resolve(spec.traits)
    traits = load_traits(traits_path, spec.model_name, spec.organisation)
    if spec.max_traits is not None:
        traits = replace(traits, traits=traits.traits[:spec.max_traits])
    log_to_run(store.root)
    store.manifest["spec_path"] = origin  # where it came from (informative: commands read the copy)
    store.manifest["spec"] = SPEC_COPY
    store.manifest["preset"] = preset
    store.manifest["traits"] = {"model_name": traits.model_name, "organisation": traits.organisation,
                                "ids": [t.id for t in traits.traits]}
    store.record_inputs(spec.model_dump(mode="json"),
                        {"spec": {"path": origin, "copy": SPEC_COPY, "sha256": file_sha256(copy)}, **copies})
    kit = PromptKit(spec.prompts_folder)  # the copies of the overrides checked above
    return Run(spec=spec, store=store, traits=traits, cache=open_cache(store, spec.cache_file(store.root)),
               prompts=kit)


def open_cache(store: RunStore, path: Path) -> LLMCache:
    """The run's LLM cache; one that is not a readable database is moved aside (the run goes on with
    an empty one) and the user told in one line what that costs."""
    try:
        cache = LLMCache(path)
    except sqlite3.OperationalError as e:  # a read-only or full disk: the path, in one line
        raise TraitforgeError(f"{path}: {e}; everything written before is kept") from None
    if cache.moved_aside is not None:
        calls = sum(u.get("calls", 0) for models in store.manifest["usage"].values() for u in models.values())
        cost = store.total_cost() if calls else 0.0
        spent = (f"this run's manifest counts {calls} model calls (${cost:.4f}) made so far; those whose rows "
                 "are not on disk yet will be sent again" if calls else "no model calls are counted in the manifest")
        print(f"traitforge: {path}: not a readable database ({cache.moved_aside_reason}); moved aside to "
              f"{cache.moved_aside.name}, the run goes on with an empty cache: {spent}", file=sys.stderr)
    return cache


def _check_probe_traits(spec: RunSpec, spec_path: Path, traits: TraitSet) -> None:
    """Probe traits against the whole traits document (max_traits may leave some of them out: their
    probes are then not run, but a typo is still an error)."""
    ids = {t.id for t in traits.traits}
    for file, opts in spec.evaluation.probes.items():
        if not isinstance(opts, dict):
            raise InputError(f"{spec_path}: key 'evaluation.probes.{file}': expected a mapping with trait, "
                             "direction, limit")
        trait = opts.get("trait")
        if trait not in ids:
            raise InputError(f"{spec_path}: key 'evaluation.probes.{file}.trait': {trait!r} is not a trait id "
                             f"in the traits document ({', '.join(sorted(ids))})")


def checkpoints_for_eval(run: Run) -> dict[str, str]:
    """The checkpoints the evaluation compares: base (when listed) and every trained one on disk."""
    out: dict[str, str] = {}
    if "base" in run.spec.training.checkpoints:
        out["base"] = run.spec.models.base
    for name in variant_names(run.spec.training, list(run.spec.training.checkpoints)):
        path = run.store.root / "checkpoints" / name
        if (path / "config.json").is_file():
            out[name] = str(path)
    return out


def evaluation_settings(run: Run) -> Any:
    """The evaluation section of the run's spec, for an evaluation entry point that opens the run
    itself (`traitforge.evaluate.inspect_tasks`)."""
    return run.spec.evaluation
