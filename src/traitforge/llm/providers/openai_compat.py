"""`openai:` the OpenAI API or any OpenAI-compatible server (vLLM, llama.cpp, ...), on the official SDK.

`base_url` may be a list of servers that serve the same model: each request goes to the least busy
live server (round-robin among equals). A server is marked dead for `dead_for_s` when it refuses
connections, or after `dead_after` failures in a row that were timeouts or 5xx answers; a refused or
5xx request moves straight to the next server, a timed-out one is retried by the client (which then
avoids the dead server). Retries are the client's job, so the SDK's own are off (max_retries=0).
Responses are read raw (`with_raw_response`) so their rate-limit headers reach the client's limiter.

Reasoning models: `reasoning_effort` (spec option) is sent as such, without `temperature` or
`top_p`; models the table (`MODEL_CAPS["openai"]`) knows take no sampling parameters never get them,
and a server that answers 400 naming `temperature` or `top_p` gets the request again without them
(remembered with `providers.learn`, so the batch encoders know it too). Likewise `n`: a model that
rejects an explicit n (the table, or a 400 naming it) gets n separate calls, seeds offset. The output
limit is `max_completion_tokens` on OpenAI's own host (`hosts.is_provider_host`; compatible servers
know `max_tokens`): the call's answer limit plus the model's thinking room;
`usage.completion_tokens_details.reasoning_tokens` is read so the client can ask again with more room
when the thinking used it all up.

Outcomes: `finish_reason` "content_filter" is a block, and `message.refusal` with no content a
refusal (its text the reason); both have no text. "length" is a truncation.

Keys: `OPENAI_API_KEY` goes only to OpenAI's own host; any other base_url gets the key named by
`api_key_env`, or none (`_http.api_key`).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import time
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar, Sequence

from traitforge.llm.base import (BLOCKED, NOT_ANSWERS, OK, REFUSED, TRUNCATED_OUTCOME, Backend, Completion,
                                 GenerateParams, Message, Usage)
from traitforge.llm.errors import RetryableError
from traitforge.llm.hosts import is_provider_host
from traitforge.llm.providers import learn, model_caps
from traitforge.llm.providers._http import api_key, closing_with_loop, error_message, no_key_note, status_error

OPENAI_URL = "https://api.openai.com/v1"


@dataclass
class _Server:
    url: str | None  # None: the SDK's default (api.openai.com)
    client: Any = None
    in_flight: int = 0
    dead_until: float = 0.0
    failures: int = 0  # timeouts and 5xx answers in a row
    served: int = 0  # successful requests, for balancing reports and tests
    # llama-cpp-python's server knows only {"type": "json_object", "schema": ...}; switched on first refusal.
    json_mode: str = "json_schema"
    # Switched off when the server rejects sampling parameters (OpenAI reasoning models).
    sampling: bool = True


class OpenAIBackend(Backend):
    provider: ClassVar[str] = "openai"
    supports_n = True
    # Constrained decoding: OpenAI and vLLM take response_format json_schema, llama.cpp servers a
    # json_object + schema (see _Server.json_mode); the client validates the reply either way.
    supports_json_schema = True
    default_concurrency = 8
    may_think = True

    def __init__(self, model: str, *, base_url: str | list[str] | None = None,
                 api_key_env: str | None = None, timeout_s: float = 120.0, dead_for_s: float = 30.0,
                 dead_after: int = 2, **options: Any):
        super().__init__(model, **options)
        urls: list[str | None] = list(base_url) if isinstance(base_url, (list, tuple)) else [base_url]
        if not urls:
            urls = [None]
        self._key, self.env_var = api_key(f"openai:{model}", "openai", ("OPENAI_API_KEY",), base_url, api_key_env)
        self.no_key = no_key_note(self._key, self.env_var, bool(api_key_env))
        self.timeout_s = timeout_s
        self.dead_for_s = dead_for_s
        self.dead_after = dead_after
        self.servers = [_Server(u.rstrip("/") if u else None) for u in urls]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closer: Any = None  # closes this loop's clients inside it (see closing_with_loop)
        self._turn = 0
        self._partial: dict[str, dict[int, tuple[Any, Any]]] = {}  # see generate

    # --- servers ---------------------------------------------------------------------
    def _ensure_clients(self) -> None:
        # httpx connection pools belong to one event loop; a new asyncio.run gets new clients.
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        import openai  # lazy: the core works without the SDK

        for s in self.servers:
            s.client = openai.AsyncOpenAI(api_key=self._key, base_url=s.url, timeout=self.timeout_s,
                                          max_retries=0)
        self._loop = loop
        self._closer = closing_with_loop(partial(_close_clients, [s.client for s in self.servers]))

    def _pick(self, tried: set[int]) -> _Server | None:
        """Least busy live server not yet tried; round-robin breaks ties. None when all were tried."""
        now = time.monotonic()
        left = [i for i in range(len(self.servers)) if i not in tried]
        if not left:
            return None
        live = [i for i in left if self.servers[i].dead_until <= now] or left
        self._turn += 1
        n = len(self.servers)
        best = min(live, key=lambda i: (self.servers[i].in_flight, (i - self._turn) % n))
        tried.add(best)
        return self.servers[best]

    def _failed(self, server: _Server) -> None:
        """A timeout or 5xx: after `dead_after` in a row the server sits out `dead_for_s`."""
        server.failures += 1
        if server.failures >= self.dead_after:
            server.dead_until = time.monotonic() + self.dead_for_s

    # --- requests --------------------------------------------------------------------
    def _kwargs(self, messages: Sequence[Message], params: GenerateParams, n: int,
                seed: int | None, server: _Server) -> dict[str, Any]:
        kw: dict[str, Any] = {"model": self.model, "messages": [m.to_dict() for m in messages]}
        caps = model_caps(self.provider, self.model)
        effort = self.options.get("reasoning_effort")
        sampling = server.sampling and caps.sampling and effort in (None, "none")
        if sampling:
            kw["temperature"] = params.temperature
        if effort is not None:
            kw["reasoning_effort"] = effort
        # OpenAI's newer models only take max_completion_tokens; compatible servers know max_tokens.
        limit = caps.token_limit if is_provider_host(self.provider, server.url) else "max_tokens"
        kw[limit] = params.max_tokens + self.thinking_room()
        if n > 1 and caps.takes_n:  # "newer models reject an explicit n" (the SDK's own docs)
            kw["n"] = n
        if params.stop:
            kw["stop"] = list(params.stop)
        if seed is not None:
            kw["seed"] = seed
        if params.top_p is not None and sampling:
            kw["top_p"] = params.top_p
        if params.json_schema is not None and server.json_mode == "json_object":
            kw["response_format"] = {"type": "json_object", "schema": params.json_schema}
        elif params.json_schema is not None:
            kw["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "reply", "schema": params.json_schema, "strict": False}}
        return kw

    async def _request(self, messages: Sequence[Message], params: GenerateParams, n: int,
                       seed: int | None) -> tuple[Any, Any]:
        """(parsed response, its HTTP headers) from the first server that answers."""
        import openai

        self._ensure_clients()
        tried: set[int] = set()
        last: Exception | None = None
        while (server := self._pick(tried)) is not None:
            url = server.url or OPENAI_URL
            server.in_flight += 1
            try:
                raw = await server.client.chat.completions.with_raw_response.create(
                    **self._kwargs(messages, params, n, seed, server))
                resp = raw.parse()
                if inspect.isawaitable(resp):  # the SDK's non-legacy raw responses parse asynchronously
                    resp = await resp
            except openai.APITimeoutError:
                self._failed(server)
                raise RetryableError(f"{self.name}: {url} timed out after {self.timeout_s:g}s") from None
            except openai.APIConnectionError as e:
                # Refused or dropped: this server is out for a while; try the next one now.
                server.dead_until = time.monotonic() + self.dead_for_s
                last = RetryableError(f"{self.name}: connection to {url} failed: {e.__cause__ or e}")
                continue
            except openai.APIStatusError as e:
                if params.json_schema is not None and server.json_mode == "json_schema" \
                        and "json_schema" in error_message(e) and e.status_code in (400, 422, 500):
                    server.json_mode = "json_object"  # this server wants the other dialect: ask again
                    tried.discard(self.servers.index(server))
                    continue
                if server.sampling and e.status_code == 400 and _rejects_sampling(error_message(e)):
                    server.sampling = False  # a reasoning model: ask again without temperature / top_p
                    learn(self.provider, self.model, sampling=False)
                    tried.discard(self.servers.index(server))
                    continue
                if n > 1 and e.status_code == 400 and model_caps(self.provider, self.model).takes_n \
                        and _rejects_n(e):
                    learn(self.provider, self.model, takes_n=False)  # ask once; `generate` makes up the rest
                    tried.discard(self.servers.index(server))
                    continue
                err = status_error(self.name, e.status_code, error_message(e), headers=e.response.headers,
                                   env_var=self.env_var, model=self.model, url=url, no_key=self.no_key)
                if e.status_code >= 500:
                    self._failed(server)  # and the request moves to the next server, if any
                    last = err
                    continue
                raise err from None
            except (openai.APIResponseValidationError, json.JSONDecodeError, ValueError) as e:
                raise RetryableError(f"{self.name}: malformed response from {url}: {e}") from None
            finally:
                server.in_flight -= 1
            if not getattr(resp, "choices", None):
                # The SDK hands back raw text when a 200 is not JSON; a truncated body lands here too.
                raise RetryableError(f"{self.name}: malformed response from {url}: {str(resp)[:200]!r}")
            server.served += 1
            server.failures = 0
            return resp, raw.headers
        assert last is not None
        raise last

    async def generate(self, messages: Sequence[Message], params: GenerateParams) -> Completion:
        # Answers already received for this same request by an earlier attempt that failed part way
        # (a make-up call below failed): the client's retry sends only what is still missing, so no
        # answer is paid for twice. k -> (response, headers); k = 0 is the first call.
        key = json.dumps([[m.to_dict() for m in messages], params.cache_fields(), params.n], sort_keys=True)
        got: dict[int, tuple[Any, Any]] = self._partial.pop(key, {})
        if 0 not in got:
            got[0] = await self._request(messages, params, params.n, params.seed)
        missing = params.n - len(got[0][0].choices)
        todo = [k for k in range(1, missing + 1) if k not in got]
        if todo:
            # Some servers (llama.cpp) ignore n: make up the rest with single-sample calls, each
            # with its own seed so a fixed seed does not give identical samples.
            more = await asyncio.gather(*(
                self._request(messages, params, 1, None if params.seed is None else params.seed + k)
                for k in todo), return_exceptions=True)
            failed = [r for r in more if isinstance(r, BaseException)]
            got.update((k, r) for k, r in zip(todo, more) if not isinstance(r, BaseException))
            if failed:
                self._partial[key] = got
                raise failed[0]
        responses = [got[k][0] for k in sorted(got) if k <= max(missing, 0)]
        headers = got[max(k for k in got if k <= max(missing, 0))][1]  # the latest word on the rate limits
        texts: list[str] = []
        finish: list[str] = []
        outcomes: list[str] = []
        reasons: list[str] = []
        usage = Usage()
        for r in responses:
            for choice in r.choices[: params.n - len(texts)]:
                outcome, reason = choice_outcome(choice)
                texts.append("" if outcome in NOT_ANSWERS else choice.message.content or "")
                finish.append(choice.finish_reason or "")
                outcomes.append(outcome)
                reasons.append(reason)
            if r.usage is not None:
                details = getattr(r.usage, "completion_tokens_details", None)
                usage = usage + Usage(r.usage.prompt_tokens or 0, r.usage.completion_tokens or 0,
                                      getattr(details, "reasoning_tokens", None) or 0)
        return Completion(texts=texts, usage=usage, finish_reasons=finish, outcomes=outcomes, reasons=reasons,
                          headers=headers)

    async def aclose(self) -> None:
        if self._closer is not None and self._loop is asyncio.get_running_loop():
            await self._closer.aclose()
        self._loop = self._closer = None


async def _close_clients(clients: list[Any]) -> None:
    """Close every server's client, even when one fails to close (then raise its error)."""
    errors = [e for e in await asyncio.gather(*(c.close() for c in clients), return_exceptions=True) if e]
    if errors:
        raise errors[0]



def choice_outcome(choice: Any) -> tuple[str, str]:
    """(outcome, reason) of one choice: a content filter is a block, a `message.refusal` with no
    content a refusal (its text the reason); "length" a truncation; otherwise "ok"."""
    if choice.finish_reason == "content_filter":
        return BLOCKED, "content_filter"
    message = getattr(choice, "message", None)
    refusal = getattr(message, "refusal", None)
    if refusal and not getattr(message, "content", None):
        return REFUSED, str(refusal)
    if choice.finish_reason == "length":
        return TRUNCATED_OUTCOME, "length"
    return OK, ""


def _rejects_n(e: Any) -> bool:
    """A 400 about `n`: the error's `param` is "n", or its message names 'n' as unsupported."""
    body = getattr(e, "body", None)
    err = body.get("error", body) if isinstance(body, dict) else None
    if isinstance(err, dict) and err.get("param") == "n":
        return True
    m = error_message(e).casefold()
    return bool(re.search(r"['\"`]n['\"`]", m)) and ("unsupported" in m or "not supported" in m or "only" in m)


def _rejects_sampling(message: str) -> bool:
    """A 400 that says the model does not take temperature / top_p (OpenAI reasoning models:
    "Unsupported parameter: 'temperature' ..." or "Unsupported value: 'temperature' ...")."""
    m = message.casefold()
    return ("temperature" in m or "top_p" in m) and ("unsupported" in m or "not supported" in m)
