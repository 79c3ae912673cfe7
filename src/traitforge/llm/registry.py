"""Build an `LLM` from a model spec: "provider:model" picks the backend class by provider name
(never by model-name prefix), imported lazily so the core works without any SDK installed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from traitforge.llm.base import Backend
from traitforge.llm.cache import LLMCache
from traitforge.llm.client import LLM
from traitforge.llm.limits import Limiter
from traitforge.llm.providers import PROVIDERS, model_caps, provider
from traitforge.llm.spec import ModelSpec

__all__ = ["PROVIDERS", "backend_class", "make_backend", "make_llm"]


def backend_class(name: str) -> type[Backend]:
    return provider(name).backend_class()


def make_backend(spec: ModelSpec | str) -> Backend:
    if isinstance(spec, str):
        spec = ModelSpec(model=spec)
    name, _, model = spec.model.partition(":")
    row = provider(name)
    cls = row.backend_class()
    options: dict[str, Any] = {"timeout_s": spec.timeout_s or cls.default_timeout_s}
    for option in row.options:  # the provider's own options (the spec took no others)
        if getattr(spec, option) is not None:
            options[option] = getattr(spec, option)
    return cls(model, **options)


def make_llm(spec: ModelSpec | str, cache: LLMCache | Path | str | None = None, *,
             fallback: LLM | None = None) -> LLM:
    """The client for a spec. on_refusal: fallback_model asks `fallback` (default: a client built
    from the spec's `fallback` name, on the same cache)."""
    if isinstance(spec, str):
        spec = ModelSpec(model=spec)
    backend = make_backend(spec)
    if cache is not None and not isinstance(cache, LLMCache):
        cache = LLMCache(cache)
    if spec.on_refusal == "fallback_model" and fallback is None and spec.fallback:
        fallback = make_llm(spec.fallback, cache)
    # Network backends learn their rate limits from the first answer's headers; local ones batch.
    limiter = Limiter(spec.concurrency or backend.default_concurrency, rpm=spec.rpm, tpm=spec.tpm,
                      learn_first=not backend.supports_batch)
    # The spec's temperature, else the provider's advice for the model (Gemini 3: 1.0); a call that
    # passes its own temperature keeps it.
    temperature = spec.temperature if spec.temperature is not None else \
        model_caps(spec.provider, spec.model.partition(":")[2]).default_temperature
    return LLM(backend, cache=cache, limiter=limiter, max_retries=spec.max_retries,
               timeout_s=spec.timeout_s or backend.default_timeout_s, default_temperature=temperature,
               batch_size=spec.batch_size or getattr(backend, "batch_size", 8),
               on_refusal=spec.on_refusal or "skip", refusal_retries=spec.refusal_retries or 1,
               fallback=fallback if spec.on_refusal == "fallback_model" else None)
