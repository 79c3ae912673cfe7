"""`anthropic:` Claude through the official SDK's Messages API.

System messages go to `system=`; n>1 is done by the client with separate calls (no `n` in the API);
JSON output uses the client's instruction + validation path. SDK retries are off: the client retries.
Responses are read raw (`with_raw_response`) so the `anthropic-ratelimit-*` headers reach the limiter.
Temperature is sent only where the installed SDK's `messages.create` takes it (checked on its
signature, `sends_temperature`): SDK 2.x (API version 2026-10-21) has no sampling parameters at all,
older SDKs (pyproject allows >=0.40) do. Never with extended thinking, which wants the default.
top_p and seed are never sent.

Extended thinking: `thinking_budget` (>= 1024) is sent as `thinking={"type": "enabled",
"budget_tokens": B}` with `max_tokens` = the call's answer limit + B, so the budget always stays
below max_tokens and the answer keeps its room. The reply's thinking blocks come before the text
block; only text blocks make the reply. Their length is counted as thinking tokens (estimated).
"""

from __future__ import annotations

import functools
import inspect
import json
from typing import Any, ClassVar, Sequence

from traitforge.llm.base import Completion, GenerateParams, Message, Usage, split_system
from traitforge.llm.errors import RetryableError
from traitforge.llm.providers._http import SDKBackend, error_message, status_error


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
        kw: dict[str, Any] = {"model": self.model, "messages": turns,
                              "max_tokens": params.max_tokens + self.thinking_room()}
        if budget:
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
            raise status_error(self.name, e.status_code, error_message(e), headers=e.response.headers,
                               env_var=self.env_var, model=self.model, url=url) from None
        except (anthropic.APIResponseValidationError, json.JSONDecodeError, ValueError) as e:
            raise RetryableError(f"{self.name}: malformed response from {url}: {e}") from None
        content = getattr(resp, "content", None)
        if not isinstance(content, list):
            raise RetryableError(f"{self.name}: malformed response from {url}: {str(resp)[:200]!r}")
        text = "".join(getattr(b, "text", "") for b in content if getattr(b, "type", "") == "text")
        thought = sum(len(getattr(b, "thinking", "") or "") for b in content if getattr(b, "type", "") == "thinking")
        thinking = -(-thought // 4) + sum(getattr(b, "type", "") == "redacted_thinking" for b in content)
        u = resp.usage
        return Completion(texts=[text], usage=Usage(u.input_tokens or 0, u.output_tokens or 0, thinking) if u else Usage(),
                          finish_reasons=[resp.stop_reason or ""], headers=raw.headers)




@functools.cache
def sends_temperature() -> bool:
    """Whether the installed SDK's Messages API takes `temperature` (SDK 2.x does not)."""
    from anthropic.resources.messages.messages import AsyncMessages

    return "temperature" in inspect.signature(AsyncMessages.create).parameters
