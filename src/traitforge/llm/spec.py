"""`ModelSpec`: a model and its options, validated against the provider table when a spec loads
(an option the provider does not take is one error naming the field and the provider).
Re-exported by the run spec (config.py), where each role of a run is one of these."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from traitforge.llm.embedded import EMBEDDED_NAME
from traitforge.llm.providers import PROVIDERS, model_caps, providers_taking, unknown_provider

EMBEDDED_MODEL = f"local:{EMBEDDED_NAME}"
# The error type of an option the provider does not take; ctx["field"] names the option, so a spec
# loader can point at the YAML key itself (config._first_error).
PROVIDER_OPTION = "provider_option"
# Anthropic's output_config.effort values (anthropic.types.OutputConfigParam).
ANTHROPIC_EFFORTS = ("low", "medium", "high", "xhigh", "max")
# Thinking option -> the thinking form (ModelCaps.thinking) it needs, per provider.
_FORMS = {("anthropic", "reasoning_effort"): "adaptive", ("anthropic", "thinking_budget"): "budget",
          ("gemini", "thinking_budget"): "budget", ("gemini", "thinking_level"): "level",
          ("openai", "reasoning_effort"): "effort"}
_FORM_OPTION = {"adaptive": "reasoning_effort", "budget": "thinking_budget", "level": "thinking_level",
                "effort": "reasoning_effort"}


class ModelSpec(BaseModel):
    """A model for one role. In YAML either a string "provider:model" or a mapping with options.
    Which options each provider takes: llm.providers.PROVIDERS."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description='"provider:model", e.g. openai:gpt-4o-mini, local:smollm2-135m')
    base_url: str | list[str] | None = None  # OpenAI-compatible servers; a list balances over several
    api_key_env: str | None = None
    concurrency: int | None = Field(default=None, ge=1)
    rpm: float | None = Field(default=None, gt=0)  # requests per minute
    tpm: float | None = Field(default=None, gt=0)  # tokens per minute
    timeout_s: float | None = Field(default=None, gt=0)  # default: the backend's own (API 120 s, local 1 h)
    max_retries: int = Field(default=6, ge=0)
    temperature: float | None = Field(default=None, ge=0, le=2)
    batch_size: int | None = Field(default=None, ge=1)  # local backends: prompts per forward pass
    # Thinking models (docs/recipes.md). openai: reasoning_effort (sent without temperature).
    # gemini: thinking_budget (-1 dynamic, 0 off, N tokens) or thinking_level (Gemini 3). anthropic:
    # reasoning_effort (low..max: adaptive thinking with that effort, Claude 4.6 and later) or
    # thinking_budget (>= 1024 tokens of budgeted thinking, Claude 4.6 and earlier); which model
    # takes which is MODEL_CAPS' "thinking". thinking_room: output tokens added to every call's
    # answer limit for the thinking (default: the budget, else 4096 when one is set).
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = None
    thinking_budget: int | None = Field(default=None, ge=-1)
    thinking_level: Literal["minimal", "low", "medium", "high", "xhigh"] | None = None
    thinking_room: int | None = Field(default=None, ge=0)
    # A refused or safety-blocked reply (docs/recipes.md, "What a refusal does"): skip (the unit is
    # skipped, "refused"), retry (asked again refusal_retries times, each a new cached call), or
    # fallback_model (the same request to `fallback`, "provider:model"). Not part of the cache identity.
    on_refusal: Literal["skip", "retry", "fallback_model"] | None = None
    refusal_retries: int | None = Field(default=None, ge=1, le=10)
    fallback: str | None = None

    @property
    def provider(self) -> str:
        return self.model.partition(":")[0]

    @field_validator("model")
    @classmethod
    def _has_provider(cls, v: str) -> str:
        if ":" not in v:
            raise ValueError(f'"{v}" must be "provider:model" (e.g. openai:gpt-4o-mini or {EMBEDDED_MODEL})')
        if v.partition(":")[0] not in PROVIDERS:
            raise ValueError(unknown_provider(v.partition(":")[0]))
        return v

    @model_validator(mode="after")
    def _options_fit_provider(self) -> "ModelSpec":
        provider = PROVIDERS[self.provider]
        for name in type(self).model_fields:
            if name == "model" or name in provider.all_options or getattr(self, name) is None:
                continue
            where = " and ".join(", ".join(providers_taking(name)).rsplit(", ", 1))
            raise PydanticCustomError(
                PROVIDER_OPTION, "{field} is for {where} models, not {provider} ({provider} takes: {takes})",
                {"field": name, "where": where, "provider": provider.name,
                 "takes": ", ".join(provider.all_options)})
        if isinstance(self.base_url, list) and not provider.url_list:
            raise PydanticCustomError(
                PROVIDER_OPTION, "a list of base_url is for {where} models; {provider} takes one URL",
                {"field": "base_url", "where": ", ".join(p.name for p in PROVIDERS.values() if p.url_list),
                 "provider": provider.name})
        if self.on_refusal == "fallback_model" and not self.fallback:
            raise ValueError('on_refusal: fallback_model needs fallback: "provider:model"')
        if self.fallback is not None:
            if ":" not in self.fallback or self.fallback.partition(":")[0] not in PROVIDERS:
                raise ValueError(f'fallback "{self.fallback}" must be "provider:model" with a known provider '
                                 f'({", ".join(sorted(PROVIDERS))})')
            if self.on_refusal != "fallback_model":
                raise ValueError("fallback is used only with on_refusal: fallback_model")
        if self.refusal_retries is not None and self.on_refusal != "retry":
            raise ValueError("refusal_retries is used only with on_refusal: retry")
        if self.thinking_budget is not None and self.thinking_level is not None:
            raise ValueError("give thinking_budget or thinking_level, not both")
        if provider.name == "anthropic" and self.thinking_budget is not None and self.thinking_budget < 1024:
            raise ValueError(f"thinking_budget for anthropic must be >= 1024 tokens (got {self.thinking_budget})")
        if provider.name == "anthropic":
            self._anthropic_thinking()
        return self

    def _anthropic_thinking(self) -> None:
        if self.reasoning_effort is not None and self.thinking_budget is not None:
            raise ValueError("give reasoning_effort (adaptive thinking) or thinking_budget, not both")
        if self.reasoning_effort is not None and self.reasoning_effort not in ANTHROPIC_EFFORTS:
            raise PydanticCustomError(
                PROVIDER_OPTION, "reasoning_effort for anthropic models is one of {takes} (got {got})",
                {"field": "reasoning_effort", "takes": ", ".join(ANTHROPIC_EFFORTS), "got": self.reasoning_effort})

    @model_validator(mode="after")
    def _thinking_fits_model(self) -> "ModelSpec":
        """A thinking option the model does not take (MODEL_CAPS): one error naming the one it takes."""
        name = self.model.partition(":")[2]
        forms = model_caps(self.provider, name).thinking
        for option in ("reasoning_effort", "thinking_budget", "thinking_level"):
            form = _FORMS.get((self.provider, option))
            if form is None or getattr(self, option) is None or not forms or form in forms:
                continue
            if option == "thinking_budget" and self.thinking_budget == 0:
                continue  # "thinking off" is always taken
            use = " or ".join(dict.fromkeys(_FORM_OPTION[f] for f in forms))
            raise PydanticCustomError(
                PROVIDER_OPTION, "{field}: {model} does not take {form} thinking; set {use} instead",
                {"field": option, "model": self.model, "form": form, "use": use})
        return self
