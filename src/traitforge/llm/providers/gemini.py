"""`gemini:` Google's Gemini API through the official `google-genai` SDK (`client.aio.models`).

System messages go to `system_instruction`, n to `candidate_count` (made up with extra calls when
fewer candidates come back), JSON to `response_mime_type` + `response_json_schema`. The SDK's own
retries are off (one attempt): the client retries. The SDK exposes a response's HTTP headers as
`sdk_http_response.headers`; they go to the client's limiter like the other providers', though the
Gemini API sends no rate-limit headers today (its quota shows only as 429s, which cool the model down).

Thinking: `thinking_budget` (-1 dynamic, 0 off, N tokens) or `thinking_level` (Gemini 3) go to
`thinking_config`; the output limit is the call's answer limit plus the thinking room, since thoughts
count against `max_output_tokens`. `usage_metadata.thoughts_token_count` is read (and billed as
output), so a reply that finished MAX_TOKENS with no parts is asked again with more room by the client.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, ClassVar, Sequence

from traitforge.llm.base import Completion, GenerateParams, Message, Usage
from traitforge.llm.errors import BackendError, RetryableError
from traitforge.llm.providers._http import SDKBackend, status_error


def _transport_errors() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """(timeouts, other transport failures) of whichever HTTP libraries the SDK may use."""
    timeouts: list[type[BaseException]] = [asyncio.TimeoutError, TimeoutError]
    transport: list[type[BaseException]] = [ConnectionError]
    for name in ("httpx", "httpx2"):
        try:
            mod = __import__(name)
        except ImportError:
            continue
        timeouts.append(mod.TimeoutException)
        transport.append(mod.TransportError)
    try:
        import aiohttp

        timeouts.append(aiohttp.ServerTimeoutError)
        transport.append(aiohttp.ClientError)
    except ImportError:
        pass
    return tuple(timeouts), tuple(transport)


class GeminiBackend(SDKBackend):
    provider: ClassVar[str] = "gemini"
    env_vars = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
    supports_n = True
    supports_json_schema = True
    default_concurrency = 8
    may_think = True

    def make_client(self) -> Any:
        from google import genai
        from google.genai import types

        opts = types.HttpOptions(timeout=int(self.timeout_s * 1000), retry_options=types.HttpRetryOptions(attempts=1))
        if self.base_url:
            opts.base_url = self.base_url
        return genai.Client(api_key=self._key, http_options=opts)

    async def close_client(self, client: Any) -> None:
        await client.aio.aclose()

    def _request_parts(self, messages: Sequence[Message], params: GenerateParams, n: int,
                       seed: int | None) -> tuple[list[dict[str, Any]], Any]:
        from google.genai import types

        contents, cfg = request_parts(messages, params, n, seed, thinking=self.thinking_config(),
                                      room=self.thinking_room())
        if "thinking_config" in cfg:
            tc = dict(cfg["thinking_config"])
            if "thinking_level" in tc:
                tc["thinking_level"] = types.ThinkingLevel(tc["thinking_level"].upper())
            cfg["thinking_config"] = types.ThinkingConfig(**tc)
        return contents, types.GenerateContentConfig(**cfg)

    def thinking_config(self) -> dict[str, Any] | None:
        cfg = {k: self.options[k] for k in ("thinking_budget", "thinking_level") if self.options.get(k) is not None}
        return cfg or None

    async def _request(self, messages: Sequence[Message], params: GenerateParams, n: int,
                       seed: int | None) -> Any:
        from google.genai import errors

        timeouts, transport = _transport_errors()
        url = self.base_url or "https://generativelanguage.googleapis.com"
        contents, config = self._request_parts(messages, params, n, seed)
        try:
            resp = await self._get_client().aio.models.generate_content(
                model=self.model, contents=contents, config=config)
        except errors.APIError as e:
            headers = getattr(getattr(e, "response", None), "headers", None)
            raise status_error(self.name, int(e.code or 0), e.message or str(e), headers=headers,
                               env_var=self.env_var, model=self.model, url=url) from None
        except timeouts:
            raise RetryableError(f"{self.name}: {url} timed out after {self.timeout_s:g}s") from None
        except transport as e:
            raise RetryableError(f"{self.name}: connection to {url} failed: {e}") from None
        except (json.JSONDecodeError, ValueError) as e:
            raise RetryableError(f"{self.name}: malformed response from {url}: {e}") from None
        if not getattr(resp, "candidates", None):
            feedback = getattr(resp, "prompt_feedback", None)
            reason = getattr(feedback, "block_reason", None) if feedback is not None else None
            if reason:
                # A blocked prompt is blocked every time: say so instead of retrying.
                raise BackendError(f"{self.name}: prompt blocked by the API ({getattr(reason, 'value', reason)})")
            raise RetryableError(f"{self.name}: response from {url} had no candidates")
        return resp

    async def generate(self, messages: Sequence[Message], params: GenerateParams) -> Completion:
        responses = [await self._request(messages, params, params.n, params.seed)]
        missing = params.n - len(responses[0].candidates)
        if missing > 0:
            responses += await asyncio.gather(*(
                self._request(messages, params, 1, None if params.seed is None else params.seed + k)
                for k in range(1, missing + 1)))
        texts: list[str] = []
        reasons: list[str] = []
        usage = Usage()
        headers = None
        for r in responses:
            headers = getattr(getattr(r, "sdk_http_response", None), "headers", None) or headers
            for cand in r.candidates[: params.n - len(texts)]:
                parts = (cand.content.parts or []) if cand.content else []
                texts.append("".join(p.text for p in parts if getattr(p, "text", None)))
                reason = cand.finish_reason
                reasons.append(str(getattr(reason, "value", reason) or ""))
            meta = r.usage_metadata
            if meta is not None:
                thoughts = getattr(meta, "thoughts_token_count", None) or 0
                usage = usage + Usage(meta.prompt_token_count or 0, (meta.candidates_token_count or 0) + thoughts,
                                      thoughts)
        return Completion(texts=texts, usage=usage, finish_reasons=reasons, headers=headers)



def request_parts(messages: Sequence[Message], params: GenerateParams, n: int = 1,
                  seed: int | None = None, *, thinking: dict[str, Any] | None = None,
                  room: int = 0) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(contents, generation config) as plain dicts, the form both a live call and a batch line take.
    `thinking`: the thinking_config; `room`: output tokens added to the answer limit for thinking."""
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    contents: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "system":
            continue
        role = "model" if m.role == "assistant" else "user"
        if contents and contents[-1]["role"] == role:  # the API wants turns to alternate
            contents[-1]["parts"].append({"text": m.content})
        else:
            contents.append({"role": role, "parts": [{"text": m.content}]})
    cfg: dict[str, Any] = {"temperature": params.temperature, "max_output_tokens": params.max_tokens + room}
    if thinking:
        cfg["thinking_config"] = dict(thinking)
        if "thinking_level" in thinking:  # the API's enum spelling
            cfg["thinking_config"]["thinking_level"] = str(thinking["thinking_level"]).upper()
    if system:
        cfg["system_instruction"] = system
    if n > 1:
        cfg["candidate_count"] = n
    if params.stop:
        cfg["stop_sequences"] = list(params.stop)
    if params.top_p is not None:
        cfg["top_p"] = params.top_p
    if seed is not None:
        cfg["seed"] = seed
    if params.json_schema is not None:
        cfg["response_mime_type"] = "application/json"
        cfg["response_json_schema"] = params.json_schema
    return contents, cfg
