"""A fault-injection HTTP server on 127.0.0.1 that speaks just enough of three APIs for error tests:
OpenAI /v1/chat/completions, Anthropic /v1/messages and Gemini .../models/<m>:generateContent.

`server.plan("429", "500")` queues faults, one per request, in order; when the queue is empty
requests get `server.default` ("ok" unless set, e.g. "503" for a server that always fails). Every
request is recorded (`server.requests`, and its arrival time and fault in `server.log`), so tests
count attempts and check timing. `rate_headers` are sent with every successful answer (e.g.
x-ratelimit-* or anthropic-ratelimit-*); `retry_after=None` sends 429s without a Retry-After.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAULTS = ("ok", "429", "500", "503", "hang", "garbage", "truncated", "401", "403", "404", "400", "fewer")


class FaultServer:
    def __init__(self, retry_after: str | None = "0.05", hang_s: float = 3.0, default: str = "ok",
                 rate_headers: dict[str, str] | None = None):
        assert default in FAULTS, f"unknown fault {default}"
        self.retry_after = retry_after
        self.hang_s = hang_s
        self.default = default
        self.rate_headers = dict(rate_headers or {})
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.log: list[tuple[float, str]] = []  # (time.monotonic() at arrival, fault served)
        self._plan: list[str] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False  # hanging handlers must not block shutdown
        # A short poll interval: shutdown waits for the serve loop to notice, and tests start many servers.
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def plan(self, *faults: str) -> None:
        unknown = [f for f in faults if f not in FAULTS]
        assert not unknown, f"unknown faults {unknown}"
        with self._lock:
            self._plan = list(faults)
            self.requests.clear()
            self.log.clear()

    def next_fault(self) -> str:
        with self._lock:
            fault = self._plan.pop(0) if self._plan else self.default
            self.log.append((time.monotonic(), fault))
            return fault

    def __enter__(self) -> "FaultServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def _handler(server: FaultServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # keep test output quiet
            pass

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None,
                  length: int | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body) if length is None else length))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()

        def do_GET(self) -> None:
            self._send(200, json.dumps({"object": "list", "data": [{"id": "fault", "object": "model"}]}).encode())

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            api = ("anthropic" if self.path.endswith("/messages") else
                   "gemini" if ":generateContent" in self.path else "openai")
            server.requests.append((self.path, body))
            fault = server.next_fault()
            if fault == "hang":
                time.sleep(server.hang_s)
                self.close_connection = True
                return
            if fault == "garbage":
                self._send(200, b'{"id": "chatcmpl-1", "choices": [{"message": {"content": "hal')
                return
            if fault == "truncated":
                # Promise more bytes than are sent, then hang up mid-body.
                self._send(200, b'{"id": "chatcmpl-1", "cho', length=400)
                self.close_connection = True
                return
            if fault not in ("ok", "fewer"):
                status = int(fault)
                headers = {"Retry-After": server.retry_after} if status == 429 and server.retry_after else {}
                self._send(status, json.dumps(_error(api, status)).encode(), headers)
                return
            self._send(200, json.dumps(_ok(api, body, fewer=fault == "fewer")).encode(), server.rate_headers)

    return Handler


def _error(api: str, status: int) -> dict[str, Any]:
    msg = {429: "Rate limit reached", 500: "internal error", 503: "overloaded", 401: "invalid api key",
           403: "forbidden", 404: "model not found", 400: "bad request: max_tokens too large"}[status]
    if api == "anthropic":
        return {"type": "error", "error": {"type": "api_error", "message": msg}}
    if api == "gemini":
        return {"error": {"code": status, "message": msg, "status": "ERROR"}}
    return {"error": {"message": msg, "type": "error", "code": status}}


def _ok(api: str, body: dict[str, Any], fewer: bool) -> dict[str, Any]:
    if api == "anthropic":
        return {"id": "msg_1", "type": "message", "role": "assistant", "model": body.get("model", "m"),
                "content": [{"type": "text", "text": "hello from anthropic"}], "stop_reason": "end_turn",
                "stop_sequence": None, "usage": {"input_tokens": 7, "output_tokens": 3}}
    if api == "gemini":
        count = (body.get("generationConfig") or {}).get("candidateCount") or 1
        return {"candidates": [{"content": {"role": "model", "parts": [{"text": f"hello from gemini {i}"}]},
                                "finishReason": "STOP", "index": i} for i in range(count)],
                "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 3 * count,
                                  "totalTokenCount": 7 + 3 * count}}
    n = 1 if fewer else body.get("n") or 1
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "m"),
            "choices": [{"index": i, "message": {"role": "assistant", "content": f"hello {i}"},
                         "finish_reason": "stop"} for i in range(n)],
            "usage": {"prompt_tokens": 7, "completion_tokens": 2 * n, "total_tokens": 7 + 2 * n}}
