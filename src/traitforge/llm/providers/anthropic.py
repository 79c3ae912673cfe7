"""`anthropic:` Claude through the official SDK's Messages API.

System messages go to `system=`; n>1 is done by the client with separate calls (no `n` in the API);
JSON output uses the client's instruction + validation path. SDK retries are off: the client retries.
Responses are read raw (`with_raw_response`) so the `anthropic-ratelimit-*` headers reach the limiter.
Temperature is sent only where the installed SDK's `messages.create` takes it (checked on its
signature, `sends_temperature`): SDK 2.x (API version 2026-10-21) has no sampling parameters at all,
older SDKs did (kept for an older install). Never with thinking, which wants the default.
top_p and seed are never sent.

Thinking (https://platform.claude.com/docs/en/build-with-claude/extended-thinking and
.../adaptive-thinking): `reasoning_effort` is adaptive thinking, `thinking={"type": "adaptive"}` with
`output_config={"effort": E}`, the only form Claude 4.7 and later take (they answer the budget form
with a 400); `thinking_budget` (>= 1024) is the budget form, `thinking={"type": "enabled",
"budget_tokens": B}`, the only form of Claude 4.5 and earlier (deprecated on 4.6). Which model takes
which: `MODEL_CAPS["anthropic"]` (the spec is checked against it when it loads). `max_tokens` is the
call's answer limit + the thinking room, so the answer keeps its room. Only text blocks make the reply;
thinking tokens come from `usage.output_tokens_details.thinking_tokens` (billed as output, already in
`output_tokens`), estimated from the thinking text only where a server leaves that out.

Outcomes: `stop_reason` "refusal" is a refusal (no text; the reason from `stop_details`), and
"max_tokens" / "model_context_window_exceeded" a truncation (the text so far kept).
"""

from __future__ import annotations

import functools
import inspect
import json
from typing import Any, ClassVar, Sequence

from traitforge.llm.base import OK, REFUSED, TRUNCATED_OUTCOME, Completion, GenerateParams, Message, Usage, split_system
from traitforge.llm.errors import RetryableError
from traitforge.llm.providers import model_caps
from traitforge.llm.providers._http import SDKBackend, error_message, status_error

# stop_reason -> outcome; every other stop reason is an answer ("ok").
STOP_OUTCOMES = {"refusal": REFUSED, "max_tokens": TRUNCATED_OUTCOME,
                 "model_context_window_exceeded": TRUNCATED_OUTCOME}


class AnthropicBackend(SDKBackend):
    provider: ClassVar[str] = "anthropic"
    env_vars = ("ANTHROPIC_API_KEY",)
    supports_n = False
    supports_json_schema = False
    default_concurrency = 8
    may_think = True

    def make_client(self) -> Any:
        import anthropic

        return anthropic.AsyncAnthropic(api_key=self._key, base_url=self.base_url, timeout=self.timeout_s,
                                        max_retries=0)

    async def close_client(self, client: Any) -> None:
        await client.close()

    def request(self, messages: Sequence[Message], params: GenerateParams) -> dict[str, Any]:
        """The Messages API arguments for one call."""
        system, turns = split_system(messages)
        budget = self.options.get("thinking_budget")
        effort = self.options.get("reasoning_effort")
        kw: dict[str, Any] = {"model": self.model, "messages": turns,
                              "max_tokens": params.max_tokens + self.thinking_room()}
        if effort is not None:
            if "adaptive" in model_caps(self.provider, self.model).thinking:
                kw["thinking"] = {"type": "adaptive"}
            kw["output_config"] = {"effort": effort}
        elif budget:
            kw["thinking"] = {"type": "enabled", "budget_tokens": int(budget)}
            kw["max_tokens"] = max(kw["max_tokens"], params.max_tokens + int(budget))
        elif sends_temperature():
            kw["temperature"] = min(1.0, params.temperature)  # the API's range is 0-1
        if system:
            kw["system"] = system
        if params.stop:
            kw["stop_sequences"] = list(params.stop)
        return kw

    async def generate(self, messages: Sequence[Message], params: GenerateParams) -> Completion:
        import anthropic

        kw = self.request(messages, params)
        url = self.base_url or "https://api.anthropic.com"
        try:
            raw = await self._get_client().messages.with_raw_response.create(**kw)
            resp = raw.parse()
            if inspect.isawaitable(resp):  # AsyncAPIResponse.parse is a coroutine in SDK 2.x
                resp = await resp
        except anthropic.APITimeoutError:
            raise RetryableError(f"{self.name}: {url} timed out after {self.timeout_s:g}s") from None
        except anthropic.APIConnectionError as e:
            raise RetryableError(f"{self.name}: connection to {url} failed: {e.__cause__ or e}") from None
        except anthropic.APIStatusError as e:
            raise self._status_error(e, url) from None
        except (anthropic.APIResponseValidationError, json.JSONDecodeError, ValueError) as e:
            raise RetryableError(f"{self.name}: malformed response from {url}: {e}") from None
        content = getattr(resp, "content", None)
        if not isinstance(content, list):
            raise RetryableError(f"{self.name}: malformed response from {url}: {str(resp)[:200]!r}")
        outcome, reason = read_outcome(resp)
        text = "" if outcome == REFUSED else "".join(
            getattr(b, "text", "") for b in content if getattr(b, "type", "") == "text")
        return Completion(texts=[text], usage=read_usage(resp), finish_reasons=[resp.stop_reason or ""],
                          outcomes=[outcome], reasons=[reason], headers=raw.headers)

    def _status_error(self, e: Any, url: str) -> Exception:
        message = error_message(e)
        if e.status_code == 400 and "thinking.type" in message:
            # e.g. '"thinking.type.enabled" is not supported for this model': say which option fits.
            use = "reasoning_effort (adaptive thinking)" if "enabled" in message else "thinking_budget"
            message = f"{message} (this model's thinking is set with {use} in the model's spec)"
        return status_error(self.name, e.status_code, message, headers=e.response.headers,
                            env_var=self.env_var, model=self.model, url=url, no_key=self.no_key)


def read_outcome(resp: Any) -> tuple[str, str]:
    """(outcome, reason) of a Message: a refusal's reason is its stop_details (category and
    explanation) where the API gives them, else the stop reason itself."""
    stop = getattr(resp, "stop_reason", None) or ""
    outcome = STOP_OUTCOMES.get(stop, OK)
    details = getattr(resp, "stop_details", None)
    if outcome == REFUSED and details is not None:
        said = [str(x) for x in (getattr(details, "category", None), getattr(details, "explanation", None)) if x]
        return outcome, f"refusal: {': '.join(said)}" if said else stop
    return outcome, stop if outcome != OK else ""


def read_usage(resp: Any) -> Usage:
    """Usage of a Message. Thinking tokens from `usage.output_tokens_details.thinking_tokens` (the
    raw thinking, not the shorter summary returned); where a server leaves that out but sent
    thinking blocks, estimated from their text (about 4 characters a token) and marked estimated."""
    u = getattr(resp, "usage", None)
    if u is None:
        return Usage()
    details = getattr(u, "output_tokens_details", None)
    thinking = getattr(details, "thinking_tokens", None) if details is not None else None
    estimated = False
    if thinking is None:
        blocks = [b for b in resp.content if getattr(b, "type", "") in ("thinking", "redacted_thinking")]
        chars = sum(len(getattr(b, "thinking", "") or "") for b in blocks)
        thinking = -(-chars // 4) + sum(getattr(b, "type", "") == "redacted_thinking" for b in blocks)
        estimated = bool(blocks)
    return Usage(u.input_tokens or 0, u.output_tokens or 0, int(thinking), estimated)


@functools.cache
def sends_temperature() -> bool:
    """Whether the installed SDK's Messages API takes `temperature` (SDK 2.x does not)."""
    from anthropic.resources.messages.messages import AsyncMessages

    return "temperature" in inspect.signature(AsyncMessages.create).parameters
