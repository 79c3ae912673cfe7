"""The one interface every backend implements: chat messages in, texts + usage out.

A backend is one async `generate` plus capability flags (after simonw/llm and inspect_ai).
Caching, retries, rate limits and usage accounting live in `client.LLM`, not in backends.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Mapping, Sequence

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "Message":
        return Message(role=d["role"], content=d["content"])


def split_system(messages: Sequence[Message]) -> tuple[str, list[dict[str, str]]]:
    """System text apart; consecutive turns of one role merged (Anthropic and Gemini want the
    turns alternating)."""
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    turns: list[dict[str, str]] = []
    for m in messages:
        if m.role == "system":
            continue
        if turns and turns[-1]["role"] == m.role:
            turns[-1]["content"] += "\n\n" + m.content
        else:
            turns.append({"role": m.role, "content": m.content})
    return system, turns


@dataclass(frozen=True)
class GenerateParams:
    """Sampling parameters. `json_schema` asks for structured output (validated by the client)."""

    temperature: float = 0.7
    max_tokens: int = 512
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    n: int = 1
    seed: int | None = None
    json_schema: dict[str, Any] | None = None

    def replace(self, **changes: Any) -> "GenerateParams":
        return dataclasses.replace(self, **changes)

    def cache_fields(self) -> dict[str, Any]:
        """Fields that change the output; `n` is left out because each sample is keyed by its index."""
        d = dataclasses.asdict(self)
        d.pop("n")
        d["stop"] = list(self.stop)
        return d


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens)


@dataclass
class Completion:
    texts: list[str]
    usage: Usage = field(default_factory=Usage)
    finish_reasons: list[str] = field(default_factory=list)
    # HTTP headers of the (last) response, for the client's limiter to follow the provider's
    # rate-limit headers; None where there are none (local and scripted backends).
    headers: Mapping[str, str] | None = None


class Backend(ABC):
    """A model behind a provider. Subclasses set the flags and implement `generate`.

    `generate` must return exactly `params.n` texts when `supports_n` is True; otherwise the
    client calls it n times with n=1. It raises `RetryableError` for transient failures and
    `BackendError` for permanent ones.
    """

    provider: ClassVar[str] = ""
    supports_n: ClassVar[bool] = False
    supports_json_schema: ClassVar[bool] = False
    # Local backends batch many prompts in one forward pass; the client groups calls for them.
    supports_batch: ClassVar[bool] = False
    default_concurrency: ClassVar[int] = 8
    # A local batch on a busy CPU can take minutes; an API call that long has hung.
    default_timeout_s: ClassVar[float] = 120.0

    def __init__(self, model: str, **options: Any):
        self.model = model
        self.options = options

    @property
    def name(self) -> str:
        return f"{self.provider}:{self.model}"

    def cache_identity(self) -> dict[str, Any]:
        """What identifies this backend's outputs in the cache (not keys, URLs or timeouts)."""
        return {"provider": self.provider, "model": self.model}

    @abstractmethod
    async def generate(self, messages: Sequence[Message], params: GenerateParams) -> Completion: ...

    async def generate_batch(
        self, requests: Sequence[tuple[Sequence[Message], GenerateParams]]
    ) -> list[Completion]:
        """Many requests at once; local backends override this to batch on the device."""
        return [await self.generate(m, p) for m, p in requests]

    async def aclose(self) -> None:
        return None
