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
Parts marked `thought: true` (thought summaries) are never part of the reply.

Outcomes: a candidate that finished for a safety reason (SAFETY, RECITATION, BLOCKLIST,
PROHIBITED_CONTENT, SPII, the IMAGE_* ones, MODEL_ARMOR: the SDK's FinishReason enum) is blocked, with
no text; a prompt blocked before any candidate (`prompt_feedback.block_reason`) is blocked too, every
time, so it is an outcome and not a retry. MAX_TOKENS is a truncation. A 429's wait comes from the
body's `google.rpc.RetryInfo` ("retryDelay": "37s"), the API sending no Retry-After header.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, ClassVar, Sequence

from traitforge.llm.base import BLOCKED, OK, TRUNCATED_OUTCOME, Completion, GenerateParams, Message, Usage
from traitforge.llm.errors import RetryableError
from traitforge.llm.providers._http import SDKBackend, retry_delay_s, status_error

# Finish reasons of google.genai.types.FinishReason that mean the content was withheld for safety,
# recitation or policy: the candidate is blocked (any text it has is cut, not an answer).
BLOCKED_FINISH = frozenset({"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY",
                            "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION", "MODEL_ARMOR"})


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
                               env_var=self.env_var, model=self.model, url=url, no_key=self.no_key,
                               retry_after=retry_delay_s(getattr(e, "details", None))) from None
        except timeouts:
            raise RetryableError(f"{self.name}: {url} timed out after {self.timeout_s:g}s") from None
        except transport as e:
            raise RetryableError(f"{self.name}: connection to {url} failed: {e}") from None
        except (json.JSONDecodeError, ValueError) as e:
            raise RetryableError(f"{self.name}: malformed response from {url}: {e}") from None
        if not getattr(resp, "candidates", None) and prompt_block(resp) is None:
            raise RetryableError(f"{self.name}: response from {url} had no candidates")
        return resp

    async def generate(self, messages: Sequence[Message], params: GenerateParams) -> Completion:
        first = await self._request(messages, params, params.n, params.seed)
        blocked = prompt_block(first)
        if blocked is not None:
            # A blocked prompt is blocked every time: every sample is that outcome, not a retry.
            return Completion(texts=[""] * params.n, usage=read_usage(first), finish_reasons=[""] * params.n,
                              outcomes=[BLOCKED] * params.n, reasons=[blocked] * params.n,
                              headers=_headers(first))
        responses = [first]
        missing = params.n - len(first.candidates)
        if missing > 0:
            responses += await asyncio.gather(*(
                self._request(messages, params, 1, None if params.seed is None else params.seed + k)
                for k in range(1, missing + 1)))
        texts: list[str] = []
        finish: list[str] = []
        outcomes: list[str] = []
        usage = Usage()
        headers = None
        for r in responses:
            headers = _headers(r) or headers
            for cand in (r.candidates or [])[: params.n - len(texts)]:
                reason = cand.finish_reason
                reason = str(getattr(reason, "value", reason) or "")
                outcome = BLOCKED if reason in BLOCKED_FINISH else TRUNCATED_OUTCOME if reason == "MAX_TOKENS" else OK
                texts.append("" if outcome == BLOCKED else candidate_text(cand))
                finish.append(reason)
                outcomes.append(outcome)
            usage = usage + read_usage(r)
        return Completion(texts=texts, usage=usage, finish_reasons=finish, outcomes=outcomes, headers=headers)


def _headers(resp: Any) -> Any:
    return getattr(getattr(resp, "sdk_http_response", None), "headers", None)


def candidate_text(cand: Any) -> str:
    """The reply: the candidate's text parts, leaving out thought summaries (`thought: true`)."""
    parts = (cand.content.parts or []) if cand.content else []
    return "".join(p.text for p in parts if getattr(p, "text", None) and not getattr(p, "thought", None))


def prompt_block(resp: Any) -> str | None:
    """Why the prompt was blocked ("prompt blocked: SAFETY: ..."), or None when it was not."""
    feedback = getattr(resp, "prompt_feedback", None)
    reason = getattr(feedback, "block_reason", None) if feedback is not None else None
    if not reason:
        return None
    said = getattr(feedback, "block_reason_message", None)
    return f"prompt blocked: {getattr(reason, 'value', reason)}" + (f": {said}" if said else "")


def read_usage(resp: Any) -> Usage:
    """Usage of a response: thinking (`thoughts_token_count`) is billed as output, so it is in
    output_tokens as well as reasoning_tokens."""
    meta = getattr(resp, "usage_metadata", None)
    if meta is None:
        return Usage()
    thoughts = getattr(meta, "thoughts_token_count", None) or 0
    return Usage(meta.prompt_token_count or 0, (meta.candidates_token_count or 0) + thoughts, thoughts)


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
