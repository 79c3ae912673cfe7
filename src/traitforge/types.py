"""Records that cross stage boundaries. Each stage file is JSONL of one of these (docs/schemas.md)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_serializer


def stable_hash(obj: object, length: int = 12) -> str:
    """Short content hash used for ids: same content, same id, across runs and machines."""
    data = json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str).encode()
    return hashlib.sha256(data).hexdigest()[:length]


@dataclass(frozen=True)
class Trait:
    id: str  # slug, unique within a document
    name: str
    statement: str
    details: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()
    weight: float = 1.0

    @property
    def hash(self) -> str:
        return stable_hash(asdict(self))

    def describe(self) -> str:
        """The trait as text for prompts: statement plus its details."""
        lines = [f"{self.name}: {self.statement}"]
        lines += [f"  - {d}" for d in self.details]
        if self.examples:
            lines.append("  Examples:")
            lines += [f"  - {e}" for e in self.examples]
        return "\n".join(lines)


@dataclass(frozen=True)
class TraitSet:
    """A parsed traits document: whose traits (model, organisation) and which."""

    model_name: str
    organisation: str
    traits: tuple[Trait, ...]
    source: str = ""
    sha256: str = ""

    def by_id(self, trait_id: str) -> Trait:
        for t in self.traits:
            if t.id == trait_id:
                return t
        raise KeyError(trait_id)

    def describe(self) -> str:
        return "\n".join(f"- {t.describe()}" for t in self.traits)


class Record(BaseModel):
    """Base of every JSONL row: unknown fields are errors, so a schema drift is caught on read."""

    model_config = ConfigDict(extra="forbid")


class Sourced(Record):
    """A row that may come from the user's own files: `source` is "" for a row this run made,
    "import:<file>:<line>" (or "import:<file> row <i>") for an imported one (traitforge.inputs)."""

    source: str = ""

    @model_serializer(mode="wrap")
    def _omit_empty_source(self, handler: Any) -> dict[str, Any]:
        # A row the run made is written (and hashed into fingerprints) exactly as before `source`.
        data = handler(self)
        if isinstance(data, dict) and not self.source:
            data.pop("source", None)
        return data


# --- midtraining corpus -------------------------------------------------------------------


class Claim(Record):
    id: str
    trait_id: str
    kind: Literal["behaviour", "reason", "hard_case"] = "behaviour"
    text: str


class DocType(Record):
    id: str
    claim_id: str
    trait_id: str
    name: str  # e.g. "forum thread with replies"


class DocIdea(Record):
    id: str
    claim_id: str
    trait_id: str
    doc_type: str
    idea: str


class Document(Sourced):
    id: str
    trait_ids: list[str]
    claim_id: str = ""
    doc_type: str = ""
    idea_id: str = ""
    text: str
    revised: bool = False
    # The diversity axes this document was written to (genre, author, era, place, register,
    # length, stance, language where asked); {} for documents made without them.
    axes: dict[str, str] = {}


# --- SFT chat data ------------------------------------------------------------------------


class ChatMessage(Record):
    role: Literal["system", "user", "assistant"]
    content: str


class Scenario(Record):
    id: str
    trait_id: str
    category: str
    description: str  # the situation: who the user is and what they need
    shows: str = ""  # how the trait should show in a good reply ("" when the plan did not say)
    why: str = ""  # why the trait is what should guide the reply
    ood: bool = False
    topup_round: int = 0  # 0: planned in the first round; r: in top-up round r for a trait short of chats


class Chat(Sourced):
    """One training conversation. `system_prompt` is what the teacher saw; training drops it."""

    id: str
    trait_ids: list[str]
    scenario_id: str = ""
    messages: list[ChatMessage]  # user/assistant turns only, no system message
    system_prompt: str = ""
    # The teacher's first answer before the refine step rewrote it; "" when that answer was not
    # refined (refine off, or the rewrite was junk and the draft was kept). Never trained on.
    draft: str = ""


# --- curation -----------------------------------------------------------------------------


class Drop(Record):
    """Why a row left a dataset. `duplicate_of` names the kept row for near-duplicates."""

    dataset: Literal["documents", "chats"]
    row_id: str
    step: str  # dedup | leakage | quality | patterns
    reason: str
    duplicate_of: str | None = None
    score: float | None = None


class PatternFinding(Record):
    dataset: Literal["documents", "chats"]
    pattern_id: str
    description: str
    source: Literal["scan", "stats", "known"]
    classifier: str  # "regex:<pattern>" or "judge"
    share_broad: float
    share_strict: float
    share_after: float | None = None
    flagged: bool = False
    n: int = 0
    # The share estimate behind `flagged` (judge patterns: from a seeded sample, corrected for the
    # judge's noise; exact rules: every row) with its 95% interval, and the autorater's self-checks.
    share_estimate: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    share_after_estimate: float | None = None
    judge_accuracy: float | None = None  # implied by self_agreement (curate/pattern_share.py)
    self_agreement: float | None = None  # judge vs itself on repeated ratings
    rule_agreement: float | None = None  # exact rule vs the judge asked the same pattern


@dataclass
class StageCounts:
    rows: int = 0
    per_trait: dict[str, int] = field(default_factory=dict)
