"""The `inputs:` settings: the user's own documents and chats brought into a run (docs/schemas.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator

Format = Literal["auto", "openai", "sharegpt", "parquet", "hf", "text"]
# Which formats say how a row is shaped (chats or documents only) and which say only the container.
CHAT_FORMATS = ("openai", "sharegpt")
DOCUMENT_FORMATS = ("text",)


class InputsSpec(BaseModel):
    """`documents` / `chats`: a JSONL (or JSON array) file, a Parquet file, a folder saved by
    `datasets.save_to_disk`, or a folder of such files (documents: also .txt/.md files, one
    document each). `mode`: the imported rows replace what generation would make, or are added
    to it. `trait_field`: the row field holding a trait id or a list of them (rows without one are
    untagged). `format`: auto detects each file's format from its name and each row's fields.
    `untagged`: what a run does with a row without a tag: `judge` asks the judge model which of the
    run's traits it shows (a reply it cannot parse leaves the row untagged), `keep` leaves it
    untagged (trait_ids [], evaluated on all traits)."""

    model_config = ConfigDict(extra="forbid")

    documents: str | None = None
    chats: str | None = None
    mode: Literal["replace", "add"] = "replace"
    trait_field: str | None = None
    format: Format = "auto"
    untagged: Literal["judge", "keep"] = "judge"

    @model_validator(mode="after")
    def _check(self) -> "InputsSpec":
        if self.documents is None and self.chats is None:
            raise ValueError("inputs: give `documents`, `chats` or both")
        if self.format in CHAT_FORMATS and self.documents is not None:
            raise ValueError(f"inputs.format: '{self.format}' is a chat format but `documents` is set too (use auto)")
        if self.format in DOCUMENT_FORMATS and self.chats is not None:
            raise ValueError(f"inputs.format: '{self.format}' is for documents but `chats` is set too (use auto)")
        if self.trait_field is not None and not self.trait_field.strip():
            raise ValueError("inputs.trait_field: empty field name")
        return self
