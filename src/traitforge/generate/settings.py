"""The generation stage's settings (the spec's `generation:` section): documents, chats and the
generic mix. Built on section.py only: importing this runs none of generation's code."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from traitforge.inputs.spec import InputsSpec
from traitforge.section import CHAT_MAX_TOKENS, DEFAULT_CHECKPOINTS, Section


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
    max_tokens: int = Field(default=CHAT_MAX_TOKENS, ge=16)  # teacher, refiner and probe answers (thinking room on top)
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
        return self._control_arm if self._control_arm is not None else "control" in DEFAULT_CHECKPOINTS

    _inputs: InputsSpec | None = None  # the spec's `inputs:` section, handed over by RunSpec

    @property
    def inputs(self) -> InputsSpec | None:
        """The imported chats/documents that replace or join this stage's output."""
        return self._inputs
