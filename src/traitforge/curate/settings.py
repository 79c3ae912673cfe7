"""The curation stage's settings (the spec's `curation:` section). Built on section.py only:
importing this runs none of curation's code."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from traitforge.section import BOOTSTRAP, CHAT_MAX_TOKENS, TEMPLATE_TRAITS, VECTOR_PARAPHRASES, VECTOR_QUESTIONS, Section


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
    template_traits: list[str] = list(TEMPLATE_TRAITS)
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
        return self._chat_max_tokens or CHAT_MAX_TOKENS

    @property
    def bootstrap_resamples(self) -> int:
        """evaluation.bootstrap."""
        return self._bootstrap or BOOTSTRAP

    @property
    def vector_settings(self) -> tuple[int, int]:
        """(evaluation.vector_questions, evaluation.vector_paraphrases)."""
        return self._vectors or (VECTOR_QUESTIONS, VECTOR_PARAPHRASES)
