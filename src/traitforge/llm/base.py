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
    output_tokens: int = 0  # everything billed as output, thinking included
    reasoning_tokens: int = 0  # of output_tokens, those spent thinking (where the provider says)
    # True when a figure was estimated (e.g. thinking counted from summarised thinking text) rather
    # than read from the provider's own usage fields.
    estimated: bool = False

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens,
                     self.reasoning_tokens + other.reasoning_tokens, self.estimated or other.estimated)


# Reasoning options of a model spec (llm.spec.ModelSpec) that reach the backends as options.
REASONING_OPTIONS = ("reasoning_effort", "thinking_budget", "thinking_level", "thinking_room")
# Output tokens reserved for thinking on top of each call's answer limit when a reasoning option
# is set without an explicit budget (models.<role>.thinking_room overrides it).
DEFAULT_THINKING_ROOM = 4096
# Finish reasons that mean "stopped at the output limit" (OpenAI, Anthropic, Gemini).
TRUNCATED = frozenset({"length", "max_tokens", "MAX_TOKENS"})


# What became of one sample. A refusal or a safety block is never an answer: the client raises
# `errors.Refused` for it (after its role's `on_refusal` policy) and caches it as that outcome.
# "truncated" has text, cut at the output limit (or the context window).
OK, REFUSED, BLOCKED, TRUNCATED_OUTCOME = "ok", "refused", "blocked", "truncated"
OUTCOMES = (OK, REFUSED, BLOCKED, TRUNCATED_OUTCOME)
NOT_ANSWERS = frozenset({REFUSED, BLOCKED})


@dataclass
class Completion:
    texts: list[str]
    usage: Usage = field(default_factory=Usage)
    finish_reasons: list[str] = field(default_factory=list)
    # Per sample, one of OUTCOMES (set by the provider from its finish reason / refusal fields);
    # empty means every sample is "ok" unless its finish reason is in TRUNCATED (see `outcome`).
    outcomes: list[str] = field(default_factory=list)
    # Per sample, the provider's reason for a refused / blocked / truncated outcome where it says
    # more than the finish reason (OpenAI's message.refusal text, Anthropic's stop_details
    # explanation, a Gemini prompt block): see `reason`.
    reasons: list[str] = field(default_factory=list)
    # HTTP headers of the (last) response, for the client's limiter to follow the provider's
    # rate-limit headers; None where there are none (local and scripted backends).
    headers: Mapping[str, str] | None = None

    def outcome(self, i: int) -> str:
        """Sample i's outcome: the provider's word, else "truncated" for a finish reason in
        TRUNCATED, else "ok"."""
        if i < len(self.outcomes) and self.outcomes[i]:
            return self.outcomes[i]
        reason = self.finish_reasons[i] if i < len(self.finish_reasons) else ""
        return TRUNCATED_OUTCOME if reason in TRUNCATED else OK

    def reason(self, i: int) -> str:
        """Sample i's reason in the provider's words: `reasons[i]`, else its finish reason."""
        if i < len(self.reasons) and self.reasons[i]:
            return self.reasons[i]
        return self.finish_reasons[i] if i < len(self.finish_reasons) else ""


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
    # The model may spend output tokens thinking (API models): an empty or thinking-starved reply
    # cut off at the output limit is asked again with more room by the client.
    may_think: ClassVar[bool] = False

    def __init__(self, model: str, **options: Any):
        self.model = model
        self.options = options

    @property
    def name(self) -> str:
        return f"{self.provider}:{self.model}"

    def cache_identity(self) -> dict[str, Any]:
        """What identifies this backend's outputs in the cache (not keys, URLs or timeouts).
        Reasoning options change the outputs, so those that are set are part of it."""
        ident: dict[str, Any] = {"provider": self.provider, "model": self.model}
        ident.update({k: self.options[k] for k in REASONING_OPTIONS if self.options.get(k) is not None})
        return ident

    def thinking_room(self) -> int:
        """Output tokens added to every call's answer limit for the model's thinking: the spec's
        thinking_room, else a positive thinking_budget, else DEFAULT_THINKING_ROOM when any other
        reasoning option is set, else 0 (the client still retries a starved reply with more room)."""
        return thinking_room_of(self.options)

    @abstractmethod
    async def generate(self, messages: Sequence[Message], params: GenerateParams) -> Completion: ...

    async def generate_batch(
        self, requests: Sequence[tuple[Sequence[Message], GenerateParams]]
    ) -> list[Completion]:
        """Many requests at once; local backends override this to batch on the device. The client
        sends requests that share top_p and json_schema; their n, temperatures (at top_p 1),
        max_tokens, stop strings and seeds may differ: each reply keeps to its own."""
        return [await self.generate(m, p) for m, p in requests]

    async def aclose(self) -> None:
        return None


def thinking_room_of(o: Mapping[str, Any]) -> int:
    """Backend.thinking_room for a set of options (also a model spec's reasoning options)."""
    if o.get("thinking_room") is not None:
        return int(o["thinking_room"])
    if (o.get("thinking_budget") or 0) > 0:
        return int(o["thinking_budget"])
    if o.get("reasoning_effort") not in (None, "none") or o.get("thinking_level") is not None \
            or o.get("thinking_budget") == -1:
        return DEFAULT_THINKING_ROOM
    return 0
