"""A chaos proxy: an OpenAI-compatible HTTP proxy on 127.0.0.1 in front of a real server (the
llama.cpp fixture) that injects faults from a seeded random plan, for whole-run tests and benchmarks.

Each request draws its fate from `random.Random(seed)` in arrival order: with probability `rate`
one of `faults` (below), else it is forwarded upstream and the upstream answer relayed. An injected
fault is answered by the proxy itself and NEVER forwarded, so a fault never costs a real answer:

    429        Retry-After: `retry_after` seconds      429-bare   a 429 with no Retry-After
    500, 503   server errors                          hang       no answer for `hang_s` (past the
    reset      the connection reset (RST), no answer             client's timeout), then a hang-up
    truncated  a 200 whose JSON body stops half way

Counters: `forwarded` (requests sent upstream), `forwarded_ok` (of those, answered 2xx and relayed
in full), `lost_to_client` (answered 2xx after the client had hung up: a client timeout on a slow
real answer, paid for and never received), `injected` (fault -> count). For the "nothing paid twice" check, forwarded_ok must equal
the cache entries the run made (one per sample; llama.cpp ignores n, so each answer is one sample).

    with ChaosProxy(upstream_url, rate=0.3, seed=1, hang_s=4) as proxy:
        ... base_url=proxy.url ...
"""

from __future__ import annotations

import json
import random
import select
import socket
import struct
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Sequence

import httpx

FAULTS = ("429", "429-bare", "500", "503", "hang", "reset", "truncated")


class ChaosProxy:
    def __init__(self, upstream: str, *, rate: float = 0.3, seed: int = 0, faults: Sequence[str] = FAULTS,
                 hang_s: float = 3.0, retry_after: str = "0.2"):
        unknown = [f for f in faults if f not in FAULTS]
        assert not unknown, f"unknown faults {unknown}"
        assert 0.0 <= rate <= 1.0
        self.upstream = upstream.rstrip("/")  # e.g. http://127.0.0.1:PORT/v1
        self.rate = rate
        self.faults = tuple(faults)
        self.hang_s = hang_s
        self.retry_after = retry_after
        self.forwarded = 0
        self.forwarded_ok = 0
        self.lost_to_client = 0  # answered 2xx after the client had given up: paid, never received
        self.injected: Counter[str] = Counter()
        self.log: list[tuple[float, str, str]] = []  # (time.monotonic(), path, fate: "forward" or a fault)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._http = httpx.Client(timeout=httpx.Timeout(600.0, connect=10.0))
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False  # hanging handlers must not block shutdown
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def url(self) -> str:
        """Base URL with the same path as the upstream's (…/v1), for `base_url`."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def fate(self, path: str) -> str:
        """The next step of the seeded plan: "forward" or a fault. GETs (model lists) are always forwarded."""
        with self._lock:
            if self.faults and self._rng.random() < self.rate:
                fate = self.faults[self._rng.randrange(len(self.faults))]
                self.injected[fate] += 1
            else:
                fate = "forward"
                self.forwarded += 1
            self.log.append((time.monotonic(), path, fate))
            return fate

    def counts(self) -> dict[str, Any]:
        with self._lock:
            return {"forwarded": self.forwarded, "forwarded_ok": self.forwarded_ok,
                    "lost_to_client": self.lost_to_client,
                    "injected": dict(self.injected), "injected_total": sum(self.injected.values())}

    def __enter__(self) -> "ChaosProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._http.close()


def _handler(proxy: ChaosProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # keep test output quiet
            pass

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()

        def _upstream_url(self) -> str:
            path = self.path
            base_path = httpx.URL(proxy.upstream).path.rstrip("/")
            if base_path and path.startswith(base_path):
                path = path[len(base_path):]
            return proxy.upstream + path

        def do_GET(self) -> None:
            r = proxy._http.get(self._upstream_url())
            self._send(r.status_code, r.content)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            fate = proxy.fate(self.path)
            if fate == "forward":
                self._forward(body)
            elif fate == "hang":
                time.sleep(proxy.hang_s)
                self.close_connection = True
            elif fate == "reset":
                # SO_LINGER 0: close() sends a RST instead of a FIN, as a dropped connection does.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                self.connection.close()
            elif fate == "truncated":
                whole = json.dumps({"id": "chatcmpl-chaos", "object": "chat.completion", "created": 0,
                                    "model": "chaos", "choices": [{"index": 0, "message": {
                                        "role": "assistant", "content": "a reply cut off half way"},
                                        "finish_reason": "stop"}]}).encode()
                self._send(200, whole[: len(whole) // 2])
            else:
                status = int(fate.split("-")[0])
                headers = {"Retry-After": proxy.retry_after} if fate == "429" else {}
                msg = {429: "Rate limit reached (chaos proxy)", 500: "internal error (chaos proxy)",
                       503: "overloaded (chaos proxy)"}[status]
                self._send(status, json.dumps({"error": {"message": msg, "type": "error", "code": status}}).encode(),
                           headers)

        def _forward(self, body: bytes) -> None:
            headers = {"Content-Type": self.headers.get("Content-Type", "application/json")}
            auth = self.headers.get("Authorization")
            if auth:
                headers["Authorization"] = auth
            try:
                r = proxy._http.post(self._upstream_url(), content=body, headers=headers)
            except httpx.HTTPError as e:
                self._send(502, json.dumps({"error": {"message": f"upstream failed: {e}", "code": 502}}).encode())
                return
            gone = _client_gone(self.connection)  # it gave up (timed out) while the server worked
            try:
                self._send(r.status_code, r.content)
            except OSError:
                gone = True
            if 200 <= r.status_code < 300:
                with proxy._lock:
                    if gone:
                        proxy.lost_to_client += 1
                    else:
                        proxy.forwarded_ok += 1

    return Handler


def _client_gone(conn: socket.socket) -> bool:
    """True when the client closed its end (a client timeout): readable, and a peek reads EOF."""
    try:
        if not select.select([conn], [], [], 0)[0]:
            return False
        return conn.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True
