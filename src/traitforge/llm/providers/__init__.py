"""The one provider table: for each provider its backend class, its batch API (if any) and the
model-spec options it takes. The registry, the batch runner and the model spec's validation all
read it. Classes are named "module:Class" and imported only when a model is built, so validating
a spec imports no SDK (and not even the backend modules)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from traitforge.errors import InputError

if TYPE_CHECKING:
    from traitforge.llm.base import Backend
    from traitforge.llm.batch.base import BatchProvider

# Options every provider takes: they set the client (retries, limits, default temperature).
COMMON_OPTIONS = ("concurrency", "rpm", "tpm", "timeout_s", "max_retries", "temperature")


@dataclass(frozen=True)
class Provider:
    name: str
    backend: str  # "module:Class" of its Backend
    options: tuple[str, ...]  # model-spec options the backend takes, besides COMMON_OPTIONS
    batch: str | None = None  # "module:Class" of its provider batch API; None: it has none
    url_list: bool = False  # base_url may be a list of servers to balance over

    @property
    def all_options(self) -> tuple[str, ...]:
        return COMMON_OPTIONS + self.options

    def backend_class(self) -> type["Backend"]:
        return _load(self.backend)

    def batch_class(self) -> type["BatchProvider"] | None:
        return _load(self.batch) if self.batch else None


def _load(path: str) -> Any:
    module, _, cls = path.partition(":")
    return getattr(importlib.import_module(module), cls)


_API = ("base_url", "api_key_env")
# Order matters only for messages: "thinking_budget is for gemini and anthropic models".
PROVIDERS: dict[str, Provider] = {p.name: p for p in (
    Provider("openai", "traitforge.llm.providers.openai_compat:OpenAIBackend",
             _API + ("reasoning_effort", "thinking_room"),
             batch="traitforge.llm.batch.openai:OpenAIBatch", url_list=True),
    Provider("gemini", "traitforge.llm.providers.gemini:GeminiBackend",
             _API + ("thinking_budget", "thinking_level", "thinking_room"),
             batch="traitforge.llm.batch.gemini:GeminiBatch"),
    Provider("anthropic", "traitforge.llm.providers.anthropic:AnthropicBackend",
             _API + ("thinking_budget", "thinking_room"),
             batch="traitforge.llm.batch.anthropic:AnthropicBatch"),
    Provider("local", "traitforge.llm.providers.local_hf:LocalHFBackend", ("batch_size",)),
    Provider("scripted", "traitforge.llm.providers.scripted:ScriptedBackend", ()),
)}


def unknown_provider(name: str) -> str:
    return f'unknown provider "{name}": use one of {", ".join(sorted(PROVIDERS))}'


def provider(name: str) -> Provider:
    """The table's row for a provider name; an unknown one is an InputError naming the choices."""
    if name not in PROVIDERS:
        raise InputError(unknown_provider(name))
    return PROVIDERS[name]


def providers_taking(option: str) -> list[str]:
    return [p.name for p in PROVIDERS.values() if option in p.all_options]
