"""A capture-and-replay HTTP server on 127.0.0.1 for provider contract tests.

The real SDK clients (openai, anthropic, google-genai) are pointed at its URL. Each route answers
with a response body copied from the provider's documentation or built from the installed SDK's
own response types (fixtures under tests/fixtures/providers/, each naming its source); every
request is captured (method, path, query, headers, JSON body) so a test checks what the SDK sent.
Nothing here invents a provider's shape: the fixtures do, and each is validated against the SDK's
type (`model_validate`) by the tests that load it.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

FIXTURES = Path(__file__).parent / "fixtures" / "providers"


def fixture(name: str) -> dict[str, Any]:
    """A fixture file: {"source": ..., "sdk_type": ..., "body": ...} (plus optional "status",
    "headers"). `source` names the documentation page or SDK type and version it was copied from."""
    data = json.loads((FIXTURES / name).read_text())
    if not data.get("source"):
        raise AssertionError(f"fixture {name} does not name its source")
    return data


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict/list -> JSON; str/bytes sent as is
    headers: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def of(name: str, **overrides: Any) -> "Reply":
        f = fixture(name)
        r = Reply(f.get("status", 200), f["body"], dict(f.get("headers", {})))
        for k, v in overrides.items():
            setattr(r, k, v)
        return r


@dataclass
class Captured:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any  # parsed JSON, or raw bytes when not JSON


class ReplayServer:
    """Routes: (method, path regex) -> a Reply, a list of Replies (one per request, the last
    repeated) or a callable(Captured) -> Reply. Unrouted requests get a 404 JSON error."""

    def __init__(self) -> None:
        self.routes: list[tuple[str, re.Pattern[str], Any]] = []
        self.requests: list[Captured] = []
        self._counts: dict[int, int] = {}
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        # A short poll: shutdown() waits up to one poll interval (0.5 s by default) per server.
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def route(self, method: str, path_regex: str, reply: Reply | list[Reply] | Callable[[Captured], Reply]) -> None:
        self.routes.insert(0, (method.upper(), re.compile(path_regex), reply))  # newest wins

    def calls(self, path_regex: str = "") -> list[Captured]:
        with self._lock:
            return [c for c in self.requests if re.search(path_regex, c.path)]

    def _answer(self, cap: Captured) -> Reply:
        for i, (method, rx, reply) in enumerate(self.routes):
            if method == cap.method and rx.search(cap.path):
                if callable(reply) and not isinstance(reply, Reply):
                    return reply(cap)
                if isinstance(reply, list):
                    with self._lock:
                        k = self._counts.get(id(reply), 0)
                        self._counts[id(reply)] = k + 1
                    return reply[min(k, len(reply) - 1)]
                return reply
        return Reply(404, {"error": {"message": f"no route for {cap.method} {cap.path}", "type": "not_found"}})

    def __enter__(self) -> "ReplayServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def _handler(server: ReplayServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _do(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body: Any = json.loads(raw) if raw else None
            except (json.JSONDecodeError, UnicodeDecodeError):
                body = raw
            path, _, query = self.path.partition("?")
            cap = Captured(self.command, path, query, {k.lower(): v for k, v in self.headers.items()}, body)
            with server._lock:
                server.requests.append(cap)
            reply = server._answer(cap)
            payload = reply.body
            if isinstance(payload, (dict, list)):
                data = json.dumps(payload).encode()
                ctype = "application/json"
            else:
                data = payload.encode() if isinstance(payload, str) else (payload or b"")
                ctype = "application/octet-stream"
            self.send_response(reply.status)
            headers = {"content-type": ctype, **{k.lower(): v for k, v in reply.headers.items()}}
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = do_PUT = _do

    return Handler
