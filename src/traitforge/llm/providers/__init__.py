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
COMMON_OPTIONS = ("concurrency", "rpm", "tpm", "timeout_s", "max_retries", "temperature",
                  # what a refused or safety-blocked reply gets (client.LLM); not part of the cache identity
                  "on_refusal", "refusal_retries", "fallback")


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
             _API + ("reasoning_effort", "thinking_budget", "thinking_room"),
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


# --- what each model family accepts ----------------------------------------------------------
# Live calls, batch encoders and the estimate read `model_caps`; a live call that learns from a 400
# (e.g. "Unsupported parameter: 'temperature'") records it with `learn`, and the batch encoders of
# the same process see it. Entries: (regex on the model name, caps); the first match wins.
@dataclass(frozen=True)
class ModelCaps:
    sampling: bool = True  # takes temperature / top_p
    token_limit: str = "max_tokens"  # the output-limit parameter's name on the provider's own host
    takes_n: bool = True  # an explicit n > 1 is accepted in one request
    thinking: tuple[str, ...] = ()  # thinking forms taken: "effort", "adaptive", "budget", "level"
    default_temperature: float | None = None  # the provider's own advice, where it gives one

    def replace(self, **changes: Any) -> "ModelCaps":
        import dataclasses

        return dataclasses.replace(self, **changes)


# Thinking forms: "effort" (OpenAI reasoning_effort), "adaptive" (Anthropic adaptive thinking with
# output_config.effort, set by reasoning_effort), "budget" (thinking_budget), "level" (Gemini thinking_level).
_CLAUDE = ModelCaps(takes_n=False)  # the Messages API has no n
MODEL_CAPS: dict[str, tuple[tuple[str, ModelCaps], ...]] = {
    "openai": (
        # Reasoning models: no temperature / top_p, max_completion_tokens, and no explicit n
        # (openai SDK: "Newer models reject an explicit `n`, even `n=1`").
        (r"^(o\d|gpt-5)", ModelCaps(sampling=False, token_limit="max_completion_tokens", takes_n=False,
                                    thinking=("effort",))),
        (r"", ModelCaps(token_limit="max_completion_tokens")),
    ),
    # https://platform.claude.com/en/docs/build-with-claude/extended-thinking: the budget form is
    # deprecated on the 4.6 models, rejected (400) by Claude 4.7 and later, and the only form of
    # Claude 4.5 and earlier; Claude Mythos Preview takes both.
    "anthropic": (
        (r"^claude-(opus|sonnet)-4-6|^claude-mythos-preview", _CLAUDE.replace(thinking=("adaptive", "budget"))),
        (r"^claude-3|^claude-(opus|sonnet|haiku)-4(-[0-5])?($|-\d{8}$|-latest$)",
         _CLAUDE.replace(thinking=("budget",))),
        (r"^claude-", _CLAUDE.replace(thinking=("adaptive",))),  # 4.7 and later
        (r"", _CLAUDE.replace(thinking=("adaptive", "budget"))),  # a name we do not know (a proxy's alias)
    ),
    # Gemini 3: thinking_level (thinking_budget still taken), and temperature 1.0: Google's Gemini 3
    # guide (https://ai.google.dev/gemini-api/docs/gemini-3) says to keep its default of 1.0, lower
    # values risking loops or degraded reasoning. The client's default where the spec sets none.
    # Thinking levels are for Gemini 3 and later, budgets for Gemini 2.5
    # (https://ai.google.dev/gemini-api/docs/thinking, https://firebase.google.com/docs/ai-logic/thinking).
    "gemini": (
        (r"^gemini-3", ModelCaps(thinking=("level", "budget"), default_temperature=1.0)),
        (r"^gemini-(2|flash|pro)", ModelCaps(thinking=("budget",))),  # 2.x (and the -latest aliases)
        (r"", ModelCaps(thinking=("level", "budget"))),  # a name we do not know
    ),
}
_LEARNED: dict[tuple[str, str], dict[str, Any]] = {}


def model_caps(provider_name: str, model: str) -> ModelCaps:
    """What `provider_name:model` accepts: the table's first matching row, with what live calls
    learned about this model in this process on top."""
    import re

    caps = ModelCaps()
    for pattern, row in MODEL_CAPS.get(provider_name, ()):
        if re.search(pattern, model):
            caps = row
            break
    learned = _LEARNED.get((provider_name, model))
    return caps.replace(**learned) if learned else caps


def learn(provider_name: str, model: str, **facts: Any) -> None:
    """Record what a provider's 400 taught about a model (e.g. sampling=False)."""
    _LEARNED.setdefault((provider_name, model), {}).update(facts)
