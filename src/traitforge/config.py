"""The run spec: one YAML file, validated by pydantic; unknown keys and wrong types name the key.

Each stage's section class lives beside the stage that reads it (generate/settings.py,
curate/settings.py, train/settings.py, evaluate/settings.py, on the base in section.py); this module
composes them into `RunSpec`, holds the run-level sections no single stage owns, and loads and checks
spec files. Paths inside the spec are relative to the spec file. Importing it runs no stage's code
(tests/test_import_layers.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from traitforge.curate.settings import CurationSpec
from traitforge.errors import InputError
from traitforge.evaluate.settings import EvaluationSpec, probe_path
from traitforge.generate.settings import GenerationSpec
from traitforge.inputs.spec import InputsSpec
# The model spec lives with the backends (llm/spec.py); re-exported here for every role of a run spec.
from traitforge.llm.spec import EMBEDDED_MODEL, PROVIDER_OPTION, ModelSpec  # noqa: F401
from traitforge.section import Section, model_spec
from traitforge.train.settings import GENERIC_MIX, StageTrainSpec, TrainingSpec


# Run-level, not a stage's: the run context builds every stage's clients by role from it.
class Models(Section):
    generator: ModelSpec = ModelSpec(model=EMBEDDED_MODEL)
    judge: ModelSpec = ModelSpec(model=EMBEDDED_MODEL)
    auditor: ModelSpec = ModelSpec(model=EMBEDDED_MODEL)
    # Rewrites the chat drafts (generation.chats.refine): critique-and-rewrite is easier than
    # generating, so this is where a stronger model pays most. Unset: the generator.
    refiner: ModelSpec | None = None
    # Writes the eval items (questions, distractors, held-out prompts, contrastive pairs), so that
    # one model does not both write an item and grade the answers to it. Unset: the judge.
    item_writer: ModelSpec | None = None
    # The model that is trained: "smollm2-135m" (embedded) or a local HF checkpoint directory.
    base: str = "smollm2-135m"

    @field_validator("generator", "judge", "auditor", "refiner", "item_writer", mode="before")
    @classmethod
    def _coerce(cls, v: Any) -> Any:
        return model_spec(v)


# Run-level, not a stage's: generation writes the canary's data and the control arm's, evaluation
# reads canary, canary_file and target_mde through the run context.
class ControlsSpec(Section):
    """Controls that make the figures believable (docs/controls.md)."""

    # The canary (positive control): an invented fact and habit trained from templated documents and
    # chats and evaluated like a trait. If its rows reach training and it does not move, training did
    # not take.
    canary: bool = False
    canary_documents: int = Field(default=160, ge=1)
    canary_chats: int = Field(default=48, ge=1)  # at most the canary file's training prompts
    canary_file: str | None = None  # replaces src/traitforge/controls/canary.yaml
    # Smallest effect (absolute, on a 0-1 share) the evals should be able to detect; the report
    # prints each figure's minimum detectable effect beside it and warns where n is too small.
    target_mde: float = Field(default=0.2, gt=0, lt=1)


# Run-level, not a stage's: one budget over every stage's paid calls (the run context's).
class BudgetSpec(Section):
    max_usd: float | None = Field(default=None, ge=0)


class RunSpec(Section):
    name: str = "run"
    traits: str = Field(description="path to the traits document (Markdown or YAML)")
    model_name: str | None = None  # overrides the traits document's own
    organisation: str | None = None
    # Only the first N traits of the document (small runs: the tiny preset keeps CI time flat).
    max_traits: int | None = Field(default=None, ge=1)
    output_dir: str = "runs/run"
    cache_dir: str | None = None  # default: <output_dir>/cache.sqlite
    seed: int = 0
    models: Models = Models()
    generation: GenerationSpec = GenerationSpec()
    curation: CurationSpec = CurationSpec()
    training: TrainingSpec = TrainingSpec()
    evaluation: EvaluationSpec = EvaluationSpec()
    budget: BudgetSpec = BudgetSpec()
    controls: ControlsSpec = ControlsSpec()
    # The user's own chats/documents, replacing or joining what generation makes (docs/schemas.md).
    inputs: InputsSpec | None = None
    prices_file: str | None = None
    # A folder (relative to the spec file) whose <name>.txt files replace the package's prompt template
    # of the same name, in any stage: generation, curation's judge, evaluation's judges and item writers
    # (traitforge.prompts; the names are the files under src/traitforge/*/prompts/).
    prompts_dir: str | None = None
    # Arms of an ablation: NAME -> a partial spec merged over this one (ablation.py); each arm runs
    # in its own run directory (default <output_dir>@NAME) and shares what it has in common.
    variants: dict[str, dict[str, Any]] = {}

    # Where the spec lives; paths are resolved against it. Not a YAML key.
    _base_dir: Path = Path(".")

    def resolve(self, p: str | None) -> Path | None:
        if p is None:
            return None
        path = Path(p).expanduser()
        return path if path.is_absolute() else (self._base_dir / path)

    @property
    def output_path(self) -> Path:
        return self.resolve(self.output_dir)  # type: ignore[return-value]

    def cache_file(self, run_root: Path) -> Path:
        """The LLM cache every stage uses: `cache_dir`/cache.sqlite (shared between runs), else
        RUN/cache.sqlite. Written once here: copies of it disagreed (cache_dir as the file itself)."""
        return (self.resolve(self.cache_dir) if self.cache_dir else Path(run_root)) / "cache.sqlite"  # type: ignore[operator]

    @model_validator(mode="after")
    def _wire_sections(self) -> "RunSpec":
        """The few settings one stage takes from another's section, handed to the reader's section
        here, so that every stage reads its own section only."""
        ev = self.evaluation
        self.curation._chat_max_tokens = self.generation.chats.max_tokens
        self.curation._bootstrap = ev.bootstrap
        self.curation._vectors = (ev.vector_questions, ev.vector_paraphrases)
        self.training._template_traits = self.curation.template_traits
        self.generation._control_arm = "control" in self.training.checkpoints
        self.generation._inputs = self.inputs
        return self

    @model_validator(mode="after")
    def _one_prompts_dir(self) -> "RunSpec":
        if self.prompts_dir is not None and self.generation.prompts_dir is not None:
            raise ValueError("give prompts_dir (it covers every stage), not generation.prompts_dir as well")
        return self

    @property
    def prices(self) -> str | None:
        """The prices file for cost figures (prices_file, resolved), or None: the package's own."""
        return str(self.resolve(self.prices_file)) if self.prices_file else None

    @property
    def prompts_folder(self) -> Path | None:
        """The prompt overrides: prompts_dir, or generation.prompts_dir (its older, generation-only name)."""
        return self.resolve(self.prompts_dir or self.generation.prompts_dir)

    def mix_path(self, stage: StageTrainSpec) -> Path | None:
        """A training stage's mix file: "generic" is the run's generated generic mix."""
        if stage.mix_file == GENERIC_MIX:
            return self.output_path / "generated" / "generic.jsonl"
        return self.resolve(stage.mix_file)


def _first_error(path: Path, err: ValidationError) -> str:
    e = err.errors()[0]
    loc = ".".join(str(x) for x in e["loc"]) or "(top level)"
    if e["type"] == "extra_forbidden":
        return f"{path}: unknown key '{loc}'"
    if e["type"] == "missing":
        return f"{path}: missing required key '{loc}'"
    if e["type"] == PROVIDER_OPTION:  # the option's own key, not the whole model mapping
        return f"{path}: key '{loc}.{e['ctx']['field']}': {e['msg']}"
    return f"{path}: key '{loc}': {e['msg']} (got {e.get('input')!r})"


def load_spec(path: str | Path, overrides: dict[str, Any] | None = None, variant: str | None = None) -> RunSpec:
    """The spec at `path` (a preset's `overrides` merged over it); with `variant`, that arm of it:
    the variant's overrides merged over the base, in <output_dir>@NAME, its cache the base's."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: run spec not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise InputError(f"{path}: run spec is not UTF-8 text") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise InputError(f"{path}: invalid YAML{where}: {getattr(e, 'problem', e)}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: run spec must be a YAML mapping, got {type(data).__name__}")
    if overrides:
        data = _deep_merge(data, overrides)
    try:
        spec = RunSpec.model_validate(data)
    except ValidationError as e:
        raise InputError(_first_error(path, e)) from None
    spec._base_dir = path.resolve().parent
    for name in spec.variants:  # every arm checked now, with one line naming the variant and key
        arm = _validate(path, variant_data(path, data, name), f"variant '{name}': ")
        arm._base_dir = spec._base_dir
    if variant is None:
        return spec
    if variant not in spec.variants:
        raise InputError(f"{path}: no variant '{variant}' (variants: {', '.join(spec.variants) or 'none'})")
    merged = variant_data(path, data, variant)
    if "output_dir" not in spec.variants[variant]:
        merged["output_dir"] = f"{spec.output_path.resolve()}@{variant}"
    if spec.cache_dir is None and "cache_dir" not in spec.variants[variant]:
        merged["cache_dir"] = str(spec.output_path.resolve())  # one LLM cache for every arm: the base's
    arm = _validate(path, merged, f"variant '{variant}': ")
    arm._base_dir = spec._base_dir
    return arm


VARIANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def variant_data(path: Path, data: dict[str, Any], name: str) -> dict[str, Any]:
    """The base spec's data with variant `name`'s overrides merged over it (no `variants` key)."""
    over = (data.get("variants") or {})[name]
    if not VARIANT_NAME.match(name):
        raise InputError(f"{path}: variant '{name}': a name of letters, digits, '.', '_' and '-' only")
    if "variants" in over:
        raise InputError(f"{path}: variant '{name}': key 'variants': a variant cannot have variants")
    base = {k: v for k, v in data.items() if k != "variants"}
    if "output_dir" in over and over["output_dir"] == base.get("output_dir", "runs/run"):
        raise InputError(f"{path}: variant '{name}': key 'output_dir': the base run's own directory")
    return _deep_merge(base, over)


def _validate(path: Path, data: dict[str, Any], what: str = "") -> RunSpec:
    try:
        return RunSpec.model_validate(data)
    except ValidationError as e:
        line = _first_error(path, e)
        raise InputError(line.replace(f"{path}: ", f"{path}: {what}", 1)) from None


def _deep_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def example_spec() -> str:
    return (Path(__file__).parent / "templates" / "spec.example.yaml").read_text(encoding="utf-8")


def probe_file_path(spec: RunSpec, file: str) -> Path:
    """Where an `evaluation.probes` file lies: absolute, or relative to probes_dir (default: the spec's folder)."""
    return probe_path(spec.resolve, spec.evaluation.probes_dir, file)


def spec_paths(spec: RunSpec) -> list[tuple[str, Path, Literal["file", "dir"]]]:
    """(key, path, kind) for every file or folder the spec names, resolved the way the stage that
    reads it resolves it: spec-relative, except `local:` role models and models.base, which the
    backends resolve against the working directory."""
    from traitforge.llm.embedded import EMBEDDED_NAME

    out: list[tuple[str, Path, Literal["file", "dir"]]] = [("traits", spec.resolve(spec.traits), "file")]  # type: ignore[list-item]
    ev, tr = spec.evaluation, spec.training
    out += [("evaluation.probes", probe_file_path(spec, f), "file") for f in ev.probes]
    for key, value, kind in (("generation.prompts_dir", spec.generation.prompts_dir, "dir"),
                             ("prompts_dir", spec.prompts_dir, "dir"),
                             ("evaluation.capability_text", ev.capability_text, "file"),
                             ("training.midtrain.mix_file", tr.midtrain.mix_file, "file"),
                             ("training.sft.mix_file", tr.sft.mix_file, "file"),
                             ("training.dpo.mix_file", tr.dpo.mix_file if tr.dpo else None, "file"),
                             ("prices_file", spec.prices_file, "file"),
                             ("controls.canary_file", spec.controls.canary_file, "file")):
        if value is not None:
            out.append((key, spec.resolve(value), kind))  # type: ignore[arg-type]
    for key in ("documents", "chats"):  # a file or a folder, whichever it is
        value = getattr(spec.inputs, key) if spec.inputs else None
        if value is not None:
            path = spec.resolve(value)
            out.append((f"inputs.{key}", path, "dir" if path.is_dir() else "file"))  # type: ignore[union-attr]
    if spec.models.base != EMBEDDED_NAME:
        out.append(("models.base", Path(spec.models.base).expanduser(), "dir"))
    for role in ("generator", "judge", "auditor", "refiner", "item_writer"):
        ms = getattr(spec.models, role)
        provider, _, model = ms.model.partition(":") if ms else ("", "", "")
        if provider == "local" and model != EMBEDDED_NAME:
            out.append((f"models.{role}", Path(model).expanduser(), "dir"))
    for name, ms in ev.models.items():
        provider, _, model = ms.model.partition(":")
        if provider == "local" and model != EMBEDDED_NAME:
            out.append((f"evaluation.models.{name}", spec.resolve(model), "dir"))  # type: ignore[arg-type]
    return out


def check_paths(spec: RunSpec, spec_path: str | Path) -> None:
    """Every path the spec names exists, checked when a run opens, before any model call; the
    first missing one is a one-line InputError naming the spec file and the key."""
    for key, path, kind in spec_paths(spec):
        ok = path.is_file() if kind == "file" else path.is_dir()
        if not ok:
            what = "folder" if kind == "dir" else "file"
            problem = f"{what} not found" if not path.exists() else f"not a {what}"
            raise InputError(f"{spec_path}: key '{key}': {problem}: {path}")


def check_files(spec: RunSpec, spec_path: str | Path) -> None:
    """Every file the spec names is readable as what it is meant to be, checked at open like
    `check_paths` (before the run directory is touched): probe options and every probe row, mix files,
    seed files, YAML and text files; a problem is one line naming the spec key, or the file and line."""
    from traitforge.inputfiles import check_jsonl, check_probe_options, check_yaml, load_probe_file, text_lines

    for file, opts in spec.evaluation.probes.items():
        check_probe_options(f"{spec_path}: key 'evaluation.probes.{file}", opts)
        load_probe_file(probe_file_path(spec, file))
    tr = spec.training
    for key, stage, field in (("training.midtrain.mix_file", tr.midtrain, "text"), ("training.sft.mix_file", tr.sft, "messages"),
                              ("training.dpo.mix_file", tr.dpo, "messages")):
        if stage is not None and stage.mix_file not in (None, GENERIC_MIX):
            check_jsonl(spec.resolve(stage.mix_file), field)  # type: ignore[arg-type]
    for value in (spec.prices_file, spec.controls.canary_file):
        if value is not None:
            check_yaml(spec.resolve(value))  # type: ignore[arg-type]
    if spec.evaluation.capability_text is not None:
        text_lines(spec.resolve(spec.evaluation.capability_text))  # type: ignore[arg-type]
    for f in spec.evaluation.audits.seed_files if spec.evaluation.audits else []:
        path = spec.resolve(f)
        if path is None or not path.is_file():
            raise InputError(f"{spec_path}: key 'evaluation.audits.seed_files': file not found: {path}")
        check_jsonl(path) if path.suffix == ".jsonl" else check_yaml(path)
