"""A fake of three thinking-model APIs on 127.0.0.1, in each API's documented response shape, for
tests of the reasoning controls. The visible answer comes from a responder (messages -> text);
before it, the "model" thinks `think` tokens (a token here is a word), and thinking counts
against the output limit as it does on the real APIs:

- OpenAI reasoning models (/v1/chat/completions): `max_completion_tokens` / `max_tokens` covers
  reasoning + answer; a starved reply has `finish_reason: "length"`, empty content and
  `usage.completion_tokens_details.reasoning_tokens`. `reject_sampling=True` answers 400
  "Unsupported value: 'temperature' ..." to a request that sends temperature, as o-series and
  gpt-5 models do.
- Gemini 2.5/3 (...:generateContent): thinks by default (`thinkingConfig.thinkingBudget` caps it,
  0 turns it off;
  the SDK writes its inner keys in snake_case, which the API accepts too); `maxOutputTokens` covers thoughts + answer; starved: `finishReason: MAX_TOKENS`
  with a content that has no parts; `usageMetadata.thoughtsTokenCount`.
- Anthropic extended thinking (/v1/messages): only with `thinking: {type: enabled, budget_tokens}`,
  which must be >= 1024 and < `max_tokens` (else 400); `thinking` content blocks come before the
  `text` block; `stop_reason: max_tokens` when cut. A request with `temperature` while thinking is
  enabled gets a 400, as the API does.

`server.requests` records (path, body) of every request.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Sequence

from traitforge.llm.base import GenerateParams, Message

Responder = Callable[[Sequence[Message], GenerateParams], str]


class ThinkingServer:
    def __init__(self, responder: Responder, think: int = 300, reject_sampling: bool = False):
        self.responder = responder
        self.think = think
        self.reject_sampling = reject_sampling
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "ThinkingServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    # --- the three APIs --------------------------------------------------------------------
    def answer(self, messages: list[Message], limit: int, think: int) -> tuple[str, int, bool]:
        """(visible text, answer tokens, cut off) within `limit` output tokens after `think`."""
        words = self.responder(messages, GenerateParams()).split(" ")
        room = max(0, limit - think)
        return " ".join(words[:room]), min(room, len(words)), room < len(words)

    def openai(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if self.reject_sampling and "temperature" in body:
            return 400, {"error": {"message": "Unsupported value: 'temperature' does not support 0.0 with this "
                                              "model. Only the default (1) value is supported.",
                                   "type": "invalid_request_error", "param": "temperature",
                                   "code": "unsupported_value"}}
        msgs = [Message(m["role"], m["content"]) for m in body["messages"]]
        limit = body.get("max_completion_tokens") or body.get("max_tokens") or 4096
        think = min(self.think, limit)
        choices, out, reasoning = [], 0, 0
        for i in range(body.get("n") or 1):
            text, used, cut = self.answer(msgs, limit, think)
            choices.append({"index": i, "message": {"role": "assistant", "content": text, "refusal": None},
                            "finish_reason": "length" if cut else "stop"})
            out, reasoning = out + think + used, reasoning + think
        return 200, {"id": "chatcmpl-t", "object": "chat.completion", "created": 0, "model": body["model"],
                     "choices": choices,
                     "usage": {"prompt_tokens": 10, "completion_tokens": out, "total_tokens": 10 + out,
                               "completion_tokens_details": {"reasoning_tokens": reasoning}}}

    def gemini(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        cfg = body.get("generationConfig") or {}
        system = " ".join(p.get("text", "") for p in (body.get("systemInstruction") or {}).get("parts", []))
        msgs = ([Message("system", system)] if system else []) + [
            Message("assistant" if c["role"] == "model" else "user", "\n\n".join(p["text"] for p in c["parts"]))
            for c in body["contents"]]
        limit = cfg.get("maxOutputTokens") or 8192
        tc = cfg.get("thinkingConfig") or {}
        budget = tc.get("thinkingBudget", tc.get("thinking_budget"))  # protobuf JSON takes either spelling
        think = min(self.think if budget in (None, -1) else min(self.think, budget), limit)
        cands, out = [], 0
        for i in range(cfg.get("candidateCount") or 1):
            text, used, cut = self.answer(msgs, limit, think)
            content: dict[str, Any] = {"role": "model"}
            if text:
                content["parts"] = [{"text": text}]
            cands.append({"content": content, "finishReason": "MAX_TOKENS" if cut else "STOP", "index": i})
            out += used
        n = len(cands)
        return 200, {"candidates": cands,
                     "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": out,
                                       "thoughtsTokenCount": think * n, "totalTokenCount": 10 + out + think * n}}

    def anthropic(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        thinking = body.get("thinking") or {}
        limit = body["max_tokens"]
        think = 0
        if thinking.get("type") == "enabled":
            budget = thinking.get("budget_tokens", 0)
            if budget < 1024 or budget >= limit:
                return 400, {"type": "error", "error": {"type": "invalid_request_error", "message":
                             "thinking.budget_tokens: must be >= 1024 and less than max_tokens"}}
            if "temperature" in body:
                return 400, {"type": "error", "error": {"type": "invalid_request_error", "message":
                             "temperature may only be set to 1 when thinking is enabled"}}
            think = min(self.think, budget)
        msgs = ([Message("system", body["system"])] if body.get("system") else []) + [
            Message(m["role"], m["content"]) for m in body["messages"]]
        text, used, cut = self.answer(msgs, limit, think)
        blocks: list[dict[str, Any]] = []
        if think:
            blocks.append({"type": "thinking", "thinking": " ".join(["hmm"] * think), "signature": "c2ln"})
        if text:
            blocks.append({"type": "text", "text": text})
        return 200, {"id": "msg_t", "type": "message", "role": "assistant", "model": body["model"],
                     "content": blocks, "stop_reason": "max_tokens" if cut else "end_turn", "stop_sequence": None,
                     "usage": {"input_tokens": 10, "output_tokens": think + used}}


def _handler(server: ThinkingServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            with server._lock:
                server.requests.append((self.path, body))
            if self.path.endswith("/messages"):
                status, out = server.anthropic(body)
            elif ":generateContent" in self.path:
                status, out = server.gemini(body)
            else:
                status, out = server.openai(body)
            data = json.dumps(out).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler
