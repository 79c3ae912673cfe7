"""Build an `LLM` from a model spec: "provider:model" picks the backend class by provider name
(never by model-name prefix), imported lazily so the core works without any SDK installed."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from traitforge.config import ModelSpec
from traitforge.errors import InputError
from traitforge.llm.base import REASONING_OPTIONS, Backend
from traitforge.llm.cache import LLMCache
from traitforge.llm.client import LLM
from traitforge.llm.limits import Limiter

PROVIDERS: dict[str, str] = {
    "openai": "traitforge.llm.providers.openai_compat:OpenAIBackend",
    "anthropic": "traitforge.llm.providers.anthropic:AnthropicBackend",
    "gemini": "traitforge.llm.providers.gemini:GeminiBackend",
    "local": "traitforge.llm.providers.local_hf:LocalHFBackend",
    "scripted": "traitforge.llm.providers.scripted:ScriptedBackend",
}


def backend_class(provider: str) -> type[Backend]:
    if provider not in PROVIDERS:
        raise InputError(f'unknown provider "{provider}": use one of {", ".join(sorted(PROVIDERS))}')
    module, _, cls = PROVIDERS[provider].partition(":")
    return getattr(importlib.import_module(module), cls)


def make_backend(spec: ModelSpec | str) -> Backend:
    if isinstance(spec, str):
        spec = ModelSpec(model=spec)
    provider, _, model = spec.model.partition(":")
    cls = backend_class(provider)
    options: dict[str, Any] = {"timeout_s": spec.timeout_s or cls.default_timeout_s}
    if spec.base_url is not None:
        options["base_url"] = spec.base_url
    if spec.api_key_env is not None:
        options["api_key_env"] = spec.api_key_env
    if spec.batch_size is not None:
        options["batch_size"] = spec.batch_size
    for name in REASONING_OPTIONS:  # validated per provider by ModelSpec
        if getattr(spec, name) is not None:
            options[name] = getattr(spec, name)
    return cls(model, **options)


def make_llm(spec: ModelSpec | str, cache: LLMCache | Path | str | None = None) -> LLM:
    if isinstance(spec, str):
        spec = ModelSpec(model=spec)
    backend = make_backend(spec)
    if cache is not None and not isinstance(cache, LLMCache):
        cache = LLMCache(cache)
    # Network backends learn their rate limits from the first answer's headers; local ones batch.
    limiter = Limiter(spec.concurrency or backend.default_concurrency, rpm=spec.rpm, tpm=spec.tpm,
                      learn_first=not backend.supports_batch)
    return LLM(backend, cache=cache, limiter=limiter, max_retries=spec.max_retries,
               timeout_s=spec.timeout_s or backend.default_timeout_s, default_temperature=spec.temperature,
               batch_size=spec.batch_size or getattr(backend, "batch_size", 8))
