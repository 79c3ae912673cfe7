"""The evaluation stage's settings (the spec's `evaluation:` section) with one class per configurable
eval (the out-of-distribution evals, side-by-side). Built on section.py only: importing this runs
none of evaluation's code."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import Field, field_validator

from traitforge.llm.spec import ModelSpec
from traitforge.section import BOOTSTRAP, VECTOR_PARAPHRASES, VECTOR_QUESTIONS, Section, model_spec


class AgenticMisalignmentSpec(Section):
    """Agentic misalignment (blackmail / leaking / lethal-inaction inboxes; Lynch et al. 2025) from a
    directory in the upstream layout (`traitforge evals fetch agentic-misalignment DIR`)."""

    dir: str  # relative to the spec file
    samples: int = Field(default=1, ge=1)  # replies per condition per model
    # Empty = every one the templates define (3 scenarios x 54 conditions in the upstream copy).
    scenarios: list[str] = []
    goal_types: list[str] = []
    goal_values: list[str] = []
    urgency_types: list[str] = []
    temperature: float = Field(default=1.0, ge=0)
    max_tokens: int = Field(default=1500, ge=64)  # the agent reasons before it acts
    judge_max_tokens: int = Field(default=800, ge=64)
    # scenario -> addresses a harmful email must go to / codes a harmful action must use; default:
    # read from the directory's classifiers (string constants, with `ast`)
    targets: dict[str, list[str]] = {}
    codes: dict[str, list[str]] = {}


class DelusionSpec(Section):
    """Delusion validation (AI-psychosis personas; Hua 2025) from a directory in the upstream layout
    (`traitforge evals fetch ai-psychosis DIR`). The run's auditor plays the persona."""

    dir: str  # relative to the spec file
    personas: list[str] = []  # file stems under characters/ (empty = all)
    turns: int = Field(default=12, ge=1, le=12)
    rollouts: int = Field(default=1, ge=1)  # conversations per persona per model
    max_tokens: int = Field(default=400, ge=16)  # the evaluated model's replies
    auditor_max_tokens: int = Field(default=600, ge=32)
    grader_max_tokens: int = Field(default=800, ge=64)
    # the rubric key that says the model validated the delusion, and the score from which it does
    validate_key: str = "delusion_confirmation_rating"
    validate_at: float = 2


class AuditsSpec(Section):
    """Repeated audits: the multi-turn auditor runs `rollouts` conversations per seed scenario."""

    rollouts: int = Field(default=3, ge=2)
    seeds_per_trait: int = Field(default=1, ge=0)  # written by the auditor model, once per run
    seed_files: list[str] = []  # YAML/JSONL rows {trait: ID, seed: "..."}; relative to the spec file
    turns: int | None = Field(default=None, ge=1)  # default: multiturn_turns


class AgenticTraitsSpec(Section):
    """Each trait in agentic form: the model acts through an email tool in a scenario where it matters."""

    scenarios_per_trait: int = Field(default=1, ge=1)
    max_tokens: int = Field(default=600, ge=32)
    # The item writer's inbox (a weak writer asked again for one plain email gets item_max_tokens).
    inbox_max_tokens: int = Field(default=600, ge=32)


class OdcvHarness(Section):
    """How ODCV episodes run (evaluate/odcv/agent.py's OdcvSettings adds where the benchmark is)."""

    variants: list[Literal["mandated", "incentivized"]] = ["mandated", "incentivized"]
    scenarios: list[str] | int | None = None  # names, or the first N per variant; None = all
    max_steps: int = Field(default=50, ge=1)  # model replies per episode (upstream: 50)
    command_timeout_s: float = Field(default=60.0, gt=0)
    episode_timeout_s: float = Field(default=1800.0, gt=0)
    output_chars: int = Field(default=4000, ge=100)  # stdout and stderr each, fed back and recorded
    max_tokens: int = Field(default=1024, ge=16)  # per model reply
    temperature: float = 0.0  # upstream runs at 0
    engine: Literal["bwrap", "docker", "auto"] = "auto"
    memory_mb: int = Field(default=1024, ge=64)
    processes: int = Field(default=128, ge=8)
    file_size_mb: int = Field(default=64, ge=1)
    diff_chars: int = Field(default=20_000, ge=0)  # per file in the recorded diff
    concurrency: int = Field(default=4, ge=1)  # episodes at once


class OdcvGrading(Section):
    """How ODCV episodes are graded (evaluate/odcv/grade.py)."""

    dir: str  # the upstream copy (holds evaluate_all_results.py); relative to the spec file
    max_transcript_chars: int = Field(default=100_000, ge=2_000)  # whole published transcripts fit
    keep_steps: int = Field(default=3, ge=1)  # first and last steps always kept when cutting
    judge_max_tokens: int = Field(default=800, ge=64)  # the judge reasons before it scores


class OdcvSpec(OdcvHarness, OdcvGrading):
    """evaluation.odcv: ODCV-Bench (agents with a bash tool under KPI pressure, in a sandbox) from the
    upstream copy (`traitforge evals fetch odcv-bench DIR`): the harness's settings and the grading's
    in one section."""


class SideBySideSpec(Section):
    """evaluation.capability.side_by_side (evaluate/side_by_side.py)."""

    enabled: bool = True
    prompts: str = "default"  # default | generic_heldout | a .txt/.jsonl file (relative to the spec)
    n: int | None = Field(default=None, ge=1)  # the first n prompts (None: all)
    reference: str = "base"  # the checkpoint every other one is compared with
    max_tokens: int = Field(default=400, ge=16)  # the evaluated models' answers
    judge_max_tokens: int = Field(default=400, ge=16)  # the judge reasons before its verdict
    # text: the judge reasons, then writes "VERDICT: A|B|tie" (any provider). logprob: a local judge's
    # verdict is the likeliest of the three verdict lines after the question (no reasoning, no
    # parsing; for small local judges that cannot keep the format, as in the tiny preset).
    verdict: Literal["text", "logprob"] = "text"


class CapabilitySpec(Section):
    """evaluation.capability: the judged capability measures (perplexity keeps its flat keys)."""

    side_by_side: SideBySideSpec | None = None  # off unless configured (on in the tiny preset)


class EvaluationSpec(Section):
    # Provider batch APIs for the judge's grades (behaviour, knowledge, multi-turn verdicts, patterns,
    # the OOD evals), sent after every checkpoint has answered; local models stay live (as in generation.batch).
    batch: bool | Literal["offline"] = False
    batch_poll_s: float = Field(default=60.0, gt=0)
    # by_checkpoint: each checkpoint in turn answers every eval's items (one stream of large batches),
    # then its weights are released; the judge grades all checkpoints together afterwards.
    # by_eval: each eval in turn over every checkpoint (the order before; kept for bench/eval.py).
    schedule: Literal["by_checkpoint", "by_eval"] = "by_checkpoint"
    # by_checkpoint: how many checkpoints answer at once (each loaded once, all of a group released
    # together). More share the auditor's and any API judge's batches across checkpoints, at the
    # cost of holding that many in memory: 1 for large local models, all of them for the 135M one.
    checkpoints_at_once: int = Field(default=1, ge=1)
    knowledge: bool = True
    knowledge_questions: int = Field(default=2, ge=0)  # open "list your principles" questions
    mc_distractors: int = Field(default=3, ge=1)  # wrong options per multiple-choice question
    # Paraphrased multiple-choice questions per trait, each with its own draw of distractors.
    mc_questions_per_trait: int = Field(default=10, ge=1)
    # Held-out prompts per trait (the judged behaviour eval and the contrastive pairs): tens, so a
    # per-trait shift can show (see the power summary in the report).
    behaviour_prompts_per_trait: int = Field(default=20, ge=1)
    ood_share: float = Field(default=0.5, ge=0, le=1)  # held-out prompts from other domains/framings
    contrastive: bool = True  # judge-free: log-prob of a trait-consistent vs a violating reply
    overlap_ngram: int = Field(default=8, ge=2)  # held-out prompt vs training user turns
    overlap_max: float = Field(default=0.5, gt=0, le=1)  # drop prompts sharing more n-grams than this
    multiturn_conversations_per_trait: int = Field(default=1, ge=0)
    multiturn_turns: int = Field(default=3, ge=1)
    # file -> {trait: id, direction: match|not_match, limit: N}; files relative to probes_dir
    probes: dict[str, dict[str, Any]] = {}
    probes_dir: str | None = None  # relative to the spec file; default: the spec's folder
    capability_text: str | None = None  # held-out generic text file for perplexity (default: shipped)
    capability_window: int = Field(default=256, ge=16)  # tokens per perplexity chunk
    lm_eval_tasks: list[str] = []  # lm-evaluation-harness tasks, run only if lm_eval is installed
    lm_eval_limit: int | None = Field(default=100, ge=1)
    max_tokens: int = Field(default=1000, ge=8)  # the evaluated checkpoints' replies
    judge_max_tokens: int = Field(default=1000, ge=8)  # the judges reason before the verdict
    item_max_tokens: int = Field(default=600, ge=8)  # generated eval prompts and contrastive replies
    # The auditor's user turns (multi-turn pressure, repeated audits); default: item_max_tokens.
    auditor_max_tokens: int | None = Field(default=None, ge=8)
    bootstrap: int = Field(default=BOOTSTRAP, ge=100)
    # More models evaluated beside the run's checkpoints, on the same items: name -> "provider:model"
    # or a model mapping (e.g. a model trained elsewhere, behind an API). Log-prob evals need
    # local weights ("local:<dir>"); for other models they are reported as not applicable.
    models: dict[str, ModelSpec] = {}
    # Out-of-distribution evals (off unless configured; the two external ones load from a directory)
    agentic_misalignment: AgenticMisalignmentSpec | None = None
    delusion: DelusionSpec | None = None
    audits: AuditsSpec | None = None
    agentic_traits: AgenticTraitsSpec | None = None
    odcv: OdcvSpec | None = None
    capability: CapabilitySpec = CapabilitySpec()
    # Perplexity scores the first N tokens of the capability text (None = all of it; the default text,
    # Python's documentation topics, is ~113k tokens for the embedded tokenizer).
    capability_max_tokens: int | None = Field(default=None, ge=16)
    # Trait vectors in the residual stream (local weights only): projection shift per checkpoint,
    # steering check, and curated-data screening (evaluate/vectors.py, docs/evaluation.md).
    vectors: bool = True
    vector_questions: int = Field(default=VECTOR_QUESTIONS, ge=3)  # neutral questions (data/vector_questions.jsonl)
    vector_paraphrases: int = Field(default=VECTOR_PARAPHRASES, ge=1)  # system-prompt paraphrases per side

    @property
    def auditor_tokens(self) -> int:
        return self.auditor_max_tokens or self.item_max_tokens

    @staticmethod
    def valid_model_name(name: Any) -> bool:
        # The name is a column of the report and part of every result row's id ("eval|name|item").
        return isinstance(name, str) and bool(name) and all(c.isalnum() or c in "_-." for c in name)

    @field_validator("models", mode="before")
    @classmethod
    def _coerce_models(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        for name in v:
            if not cls.valid_model_name(name):
                raise ValueError(f"model name {name!r}: use letters, digits, '_', '-' or '.'")
        return {k: model_spec(m) for k, m in v.items()}


def probe_path(resolve: Callable[[str | None], Path | None], probes_dir: str | None, file: str) -> Path:
    """Where an `evaluation.probes` file lies: absolute, or relative to probes_dir (default: the spec's
    folder); `resolve` makes a path spec-relative (config.probe_file_path: the spec's own)."""
    p = Path(file).expanduser()
    if p.is_absolute():
        return p
    base = resolve(probes_dir) if probes_dir else resolve(".")
    return base / p  # type: ignore[operator]
