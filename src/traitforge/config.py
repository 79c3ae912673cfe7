"""The run spec: one YAML file, validated by pydantic; unknown keys and wrong types name the key.

Each stage owns one section class below. Paths inside the spec are relative to the spec file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Callable, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from traitforge.errors import InputError
from traitforge.inputs.spec import InputsSpec
# The model spec lives with the backends (llm/spec.py); re-exported here for every role of a run spec.
from traitforge.llm.spec import EMBEDDED_MODEL, PROVIDER_OPTION, ModelSpec  # noqa: F401

GENERIC_MIX = "generic"  # training.<stage>.mix_file: the run's generated generic chats


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _model_spec(v: Any) -> Any:
    return {"model": v} if isinstance(v, str) else v


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
        return _model_spec(v)


class DocumentsSpec(Section):
    claims_per_trait: int = Field(default=4, ge=1)  # split over behaviour / reason / hard_case
    doc_types_per_claim: int = Field(default=3, ge=1)
    ideas_per_type: int = Field(default=2, ge=1)
    docs_per_idea: int = Field(default=1, ge=1)
    doc_types: list[str] = []  # user-supplied genres; empty = brainstorm
    revise: bool = True
    # A frontier teacher's long genres (a full research paper, a long feature) need room; the
    # model's thinking room comes on top. A draft cut at the limit: generation.on_truncated.
    max_tokens: int = Field(default=4000, ge=16)
    # Extra rounds for traits whose documents fell short of the plan (junk output); 0 = none.
    topup_rounds: int = Field(default=1, ge=0)
    min_chars: int = Field(default=200, ge=1)  # shorter documents are junk
    # What the generator sees of the traits document for each document: "traits" the whole of it
    # (the universe every document agrees with), "trait" only the document's own trait.
    context: Literal["traits", "trait"] = "traits"
    axes: bool = True  # sample author, era, place, register, length, stance per document (prompts/axes.txt)
    languages: list[str] = []  # e.g. [English, Spanish]: a language axis; empty = the prompts' language
    # Name curation's known over-represented patterns as things to avoid. Off by default: a ban in
    # every call ("no 'Yes,' openers") breeds a new tic; curation measures and mitigates instead.
    avoid_known: bool = False


class ChatsSpec(Section):
    scenarios_per_trait: int = Field(default=8, ge=1)
    prompts_per_scenario: int = Field(default=1, ge=1)
    multiturn_share: float = Field(default=0.25, ge=0, le=1)
    max_turns: int = Field(default=3, ge=1)  # user turns in a multi-turn chat
    critique: bool = True
    probe_default: bool = True
    # Who judges the probe's plain answer: "judge" (models.judge: not the model grading its own
    # answer) or "generator".
    probe_judge: Literal["judge", "generator"] = "judge"
    dpo_pairs: bool = True  # write dpo_pairs.jsonl from the probe's default responses
    refine: bool = True  # rewrite each draft in a fresh context with models.refiner
    max_tokens: int = Field(default=4000, ge=16)  # teacher, refiner and probe answers (thinking room on top)
    # Extra rounds of new scenarios for traits whose chats fell short of the plan; 0 = none.
    topup_rounds: int = Field(default=1, ge=0)
    # Of the multi-turn chats, the share whose simulated user builds on the answers instead of pushing back.
    cooperative_share: float = Field(default=0.5, ge=0, le=1)
    # Which traits go into the teacher's system prompt besides the scenario's own: "generator" asks
    # the generator which bear on the prompt (one short call per prompt), "keywords" matches trait names.
    select_traits: Literal["generator", "keywords"] = "generator"
    avoid_known: bool = False  # name curation's known reply patterns in the teacher's prompt (see DocumentsSpec)


class GenerationSpec(Section):
    documents: DocumentsSpec = DocumentsSpec()
    chats: ChatsSpec = ChatsSpec()
    trait_weights: dict[str, float] = {}  # trait id -> relative share (default: the trait's weight)
    concurrency: int = Field(default=8, ge=1)  # items in flight per step
    list_max_tokens: int = Field(default=1500, ge=16)  # lists (several scenarios with their reasoning), critiques
    # Provider batch APIs (OpenAI, Anthropic, Gemini): half price, results within 24h. Steps
    # prefetch their requests as batches into the cache, then run as usual (llm.batch.prefetch_batch).
    # true: provider batch APIs. "offline": write each step's requests as an OpenAI batch file
    # (RUN/offline/) for vLLM's run_batch or Ray Data, then `traitforge import-batch` the results.
    batch: bool | Literal["offline"] = False
    batch_poll_s: float = Field(default=60.0, gt=0)  # seconds between status polls of a batch
    # The older name of the top-level prompts_dir (which covers every stage); still read.
    prompts_dir: str | None = None
    # The probe's verdict on the default answer (one word, but a model may explain first). Thinking
    # models get their thinking room on top of this (models.<role>.thinking_room).
    verdict_max_tokens: int = Field(default=1000, ge=8)  # the probe's reasoning, then its verdict
    # A document or answer cut at its max_tokens: "retry" asks once more with twice the room, then
    # drops it; "drop" drops it at once; "keep" keeps it (the tiny preset: the 135M model hits its
    # small limits on almost every reply). Dropped and kept ones are counted per step.
    on_truncated: Literal["retry", "drop", "keep"] = "retry"
    # The generic mix: this many everyday prompts (prompts/generic_topics.txt) answered by the teacher
    # without the trait system prompt, into RUN/generated/generic.jsonl; SFT mixes them in with
    # training.sft.mix_file: generic and mix_ratio. 0 = none.
    generic_prompts: int = Field(default=0, ge=0)

    # Not a key of this section: whether training.checkpoints lists the control arm, wired by RunSpec
    # (generation then writes the arm's untraited answers).
    _control_arm: bool | None = None

    @property
    def control_arm(self) -> bool:
        return self._control_arm if self._control_arm is not None else "control" in TrainingSpec().checkpoints

    _inputs: InputsSpec | None = None  # the spec's `inputs:` section, handed over by RunSpec

    @property
    def inputs(self) -> InputsSpec | None:
        """The imported chats/documents that replace or join this stage's output."""
        return self._inputs


class CurationSpec(Section):
    # Provider batch APIs for the judge's row grades (quality) and pattern scans and labels; local models stay live (as in generation.batch).
    batch: bool | Literal["offline"] = False
    batch_poll_s: float = Field(default=60.0, gt=0)
    dedup_threshold: float = Field(default=0.8, gt=0, le=1)
    dedup_shingle: int = Field(default=3, ge=1)  # words per MinHash shingle
    leakage_ngram: int = Field(default=8, ge=3)
    leakage_overlap: float = Field(default=0.5, gt=0, le=1)
    quality: bool = True
    quality_threshold: float = Field(default=5.0, ge=0, le=10)
    patterns: bool = True
    pattern_scans: int = Field(default=3, ge=1)
    scan_batch: int = Field(default=8, ge=2)
    pattern_max_share: float = Field(default=0.2, gt=0, le=1)
    pattern_max_judged: int = Field(default=12, ge=0)  # scan-found patterns rated by the judge (pattern_sample calls each)
    pattern_max_drop: float = Field(default=0.5, ge=0, le=1)  # most of a dataset downsampling may remove
    pattern_mitigation: Literal["downsample", "rewrite", "regenerate", "none"] = "downsample"
    quality_max_tokens: int = Field(default=1000, ge=8)  # the judge's reasoning per criterion, then its grade
    pattern_judge_max_tokens: int = Field(default=160, ge=4)  # the judge's reason, then STRICT / BROAD / NO per example
    # Project the curated rows on the trait vectors (built from models.base when it has local
    # weights; settings in evaluation.vector_*); the dataset card lists rows pushing the wrong way.
    screen: bool = False  # loads the base model in curation; the tiny preset turns it on
    screen_max_tokens: int = Field(default=48, ge=8)  # the base model's own reply to each chat prompt
    pattern_sample: int = Field(default=200, ge=10)  # rows the judge rates per candidate pattern (share + CI)
    pattern_check_sample: int = Field(default=30, ge=0)  # rows re-rated (self-agreement) and rated beside rules
    # Rows of these traits are templated on purpose (a control such as the canary): never near-duplicate
    # removed against each other, never counted in pattern shares, never dropped or rewritten by mitigation.
    template_traits: list[str] = ["canary"]
    # DPO's rejected side: the generator's plain answer, or the student's (base model's) own (on-policy).
    dpo_rejected: Literal["generator", "student"] = "generator"

    # Not keys of this section: RunSpec wires them from the sections curation works like (on-policy
    # rejected replies as long as the chats' replies; screening vectors and intervals built like the
    # evaluation's), so that curation reads its own section only.
    _chat_max_tokens: int | None = None
    _bootstrap: int | None = None
    _vectors: tuple[int, int] | None = None

    @property
    def chat_max_tokens(self) -> int:
        """generation.chats.max_tokens."""
        return self._chat_max_tokens or ChatsSpec().max_tokens

    @property
    def bootstrap_resamples(self) -> int:
        """evaluation.bootstrap."""
        return self._bootstrap or EvaluationSpec().bootstrap

    @property
    def vector_settings(self) -> tuple[int, int]:
        """(evaluation.vector_questions, evaluation.vector_paraphrases)."""
        ev = EvaluationSpec()
        return self._vectors or (ev.vector_questions, ev.vector_paraphrases)


# The checkpoints training can build (train/run.py: RECIPES), base being the untrained model.
CHECKPOINTS = ("base", "midtrain", "sft", "midtrain_sft", "control", "joint", "sft_dpo", "midtrain_sft_dpo")
Checkpoint = Literal[CHECKPOINTS]  # type: ignore[valid-type]


class StageTrainSpec(Section):
    """Hyperparameters of one training stage (midtrain, sft or dpo)."""

    learning_rate: float = Field(default=2e-4, gt=0)
    epochs: float = Field(default=1.0, gt=0)
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = Field(default=4, ge=1)  # per device
    grad_accum: int = Field(default=1, ge=1)
    # Packed sequence length (midtrain) / longest chat (sft) / pair (dpo) in tokens. "auto": chosen from
    # the data's token lengths (train.data.choose_max_length), at most training.max_length_cap.
    max_length: Annotated[int, Field(ge=16)] | Literal["auto"] = "auto"
    # generic text {"text"} (midtrain) or ordinary chats {"messages"} (sft), JSONL; for sft, "generic" is the
    # run's own generic mix (generation.generic_prompts, RUN/generated/generic.jsonl)
    mix_file: str | None = None
    mix_ratio: float = Field(default=0.0, ge=0, lt=1)  # share of training examples drawn from mix_file
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "cosine"
    warmup_ratio: float = Field(default=0.03, ge=0, lt=1)
    weight_decay: float = Field(default=0.0, ge=0)

    @field_validator("mix_ratio")
    @classmethod
    def _mix_needs_file(cls, v: float, info: ValidationInfo) -> float:
        # mix_file is declared first, so it is validated already; a ratio without a file would mix nothing.
        if v > 0 and info.data.get("mix_file") is None:
            raise PydanticCustomError("mix_file_missing", "> 0 needs mix_file beside it, the JSONL to mix in")
        return v


class TrainingSpec(Section):
    method: Literal["lora", "full"] = "lora"
    lora_r: int = Field(default=16, ge=1)
    lora_alpha: int = Field(default=32, ge=1)
    # 0 by default: PEFT with dropout > 0 cannot reuse the base output and ran LoRA ~2x slower here
    lora_dropout: float = Field(default=0.0, ge=0, lt=1)
    lora_target_modules: str | list[str] = "all-linear"
    # "<x>_dpo" checkpoints run DPO (training.dpo, RUN/generated/dpo_pairs.jsonl) on top of checkpoint <x>.
    # "control": the negative control arm, trained like sft on as many tokens of trait-free data
    # (the teacher's answers without the trait system prompt, RUN/generated/untraited.jsonl).
    # "joint": documents and chats in one stage, shuffled together (hyperparameters: training.joint).
    checkpoints: list[Checkpoint] = ["base", "midtrain", "sft", "midtrain_sft", "control"]
    midtrain: StageTrainSpec = StageTrainSpec()
    sft: StageTrainSpec = StageTrainSpec(learning_rate=1e-4)
    joint: StageTrainSpec = StageTrainSpec()  # no mix_file: the documents are the mix
    # Characters of documents trained per character of chats (e.g. 4: four times as much midtraining
    # text as chat text), over the trait rows; the larger side is cut (seeded, never repeated) in every
    # checkpoint, the control arm matches the chats as cut, control-trait rows (the canary) stay whole.
    # null: all of both, whatever their ratio.
    docs_to_chats: float | None = Field(default=None, gt=0)
    dpo: StageTrainSpec | None = None  # defaults apply when a *_dpo checkpoint is listed without it
    dpo_beta: float = Field(default=0.1, gt=0)
    max_length_cap: int = Field(default=2048, ge=16)  # memory cap for max_length: "auto"
    pack_chats: bool = False  # pack SFT conversations (padding-free) instead of padding each batch
    # Unpacked chats: batches of similar-length conversations (train/data.length_grouped_order), so
    # a batch pads to its own longest chat, not to a stray long one (tiny run's SFT: 122 s -> 42 s).
    group_by_length: bool = True
    gradient_checkpointing: bool = False
    bf16: bool | Literal["auto"] = "auto"  # auto = on when a CUDA device supports it (bf16 is slow on CPU)
    save_steps: int = Field(default=50, ge=1)
    save_total_limit: int = Field(default=2, ge=1)
    keep_trainer_checkpoints: bool = False  # keep RUN/train/<name>/trainer/checkpoint-* once the stage is done
    logging_steps: int = Field(default=10, ge=1)
    # Training variance: train (and evaluate) every checkpoint with this many seeds (seed, seed+1, ...);
    # the extra ones are named "<checkpoint>.s<k>" and the report shows the spread across seeds.
    seeds: int = Field(default=1, ge=1)
    # Data scaling: also train every checkpoint on these fractions of its data ("<checkpoint>.f<x>"),
    # so the report can draw a data-scaling curve per trait. 1.0 is the main run and always present.
    fractions: list[float] = []
    # "auto": tensorboard and trackio when installed, wandb when installed and configured
    # (WANDB_API_KEY or WANDB_MODE); a list names them; [] = metrics.jsonl only.
    report_to: Literal["auto"] | list[Literal["tensorboard", "wandb", "trackio"]] = "auto"

    # Not a key of this section: curation.template_traits, wired by RunSpec (training leaves these
    # traits' templated rows out of the mixes).
    _template_traits: list[str] | None = None

    @property
    def template_traits(self) -> list[str]:
        return self._template_traits if self._template_traits is not None else CurationSpec().template_traits


    @field_validator("joint")
    @classmethod
    def _joint_mixes_nothing(cls, v: StageTrainSpec) -> StageTrainSpec:
        if v.mix_ratio > 0:
            raise ValueError("joint training mixes documents into the chats already: use mix_ratio 0 here")
        return v

    @field_validator("fractions")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        if any(not 0 < f <= 1 for f in v):
            raise ValueError("each fraction must be in (0, 1]")
        return sorted({round(f, 4) for f in v if f < 1})


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
    bootstrap: int = Field(default=1000, ge=100)
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
    vector_questions: int = Field(default=12, ge=3)  # neutral questions (data/vector_questions.jsonl)
    vector_paraphrases: int = Field(default=4, ge=1)  # system-prompt paraphrases per side

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
        return {k: _model_spec(m) for k, m in v.items()}


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


def probe_path(resolve: Callable[[str | None], Path | None], probes_dir: str | None, file: str) -> Path:
    """probe_file_path from its parts: `resolve` makes a path spec-relative."""
    p = Path(file).expanduser()
    if p.is_absolute():
        return p
    base = resolve(probes_dir) if probes_dir else resolve(".")
    return base / p  # type: ignore[operator]


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
