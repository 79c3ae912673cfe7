"""A local stand-in for the OpenAI files+batches API, Anthropic Message Batches and Gemini batch mode
(inlined requests), on 127.0.0.1, speaking their REST shapes closely enough for the official SDKs
pointed at its base_url.

Each batch answers `polls_before_done` status polls with in_progress, then ends. Requests whose
last message contains `fail_marker` error inside a batch (the live endpoints always answer), and
the next `expire_next` batches expire with only their first `expire_partial` items done. Every
batch creation and live call is recorded, so tests count them.
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def reply_text(messages: list[dict[str, Any]], seed: Any = None) -> str:
    last = messages[-1] if messages else {}
    if "parts" in last:  # gemini contents
        last = "".join(p.get("text", "") for p in last["parts"])
    else:
        last = last.get("content", "")
    if isinstance(last, list):  # anthropic content blocks
        last = "".join(b.get("text", "") for b in last)
    return f"reply to: {last[:60]}" + (f" #{seed}" if seed else "")


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat().replace("+00:00", "Z")


class FakeBatchServer:
    def __init__(self, polls_before_done: int = 1, fail_marker: str = "FAIL", out_tokens: int = 5):
        self.polls_before_done = polls_before_done
        self.fail_marker = fail_marker
        self.out_tokens = out_tokens
        self.expire_next = 0
        self.expire_partial = 0
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.created: list[tuple[str, str, int]] = []  # (api, batch id, request count)
        self.live_calls: list[tuple[str, dict[str, Any]]] = []
        self.polls = 0
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "FakeBatchServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids):06d}"

    # --- batch lifecycle ---------------------------------------------------------------
    def create(self, api: str, requests: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        with self._lock:
            bid = self.new_id({"openai": "batch", "anthropic": "msgbatch", "gemini": "gbatch"}[api])
            expire = self.expire_next > 0
            if expire:
                self.expire_next -= 1
            b = {"id": bid, "api": api, "requests": requests, "polls": 0, "expire": expire,
                 "created": time.time(), "done": False, **extra}
            self.batches[bid] = b
            self.created.append((api, f"batches/{bid}" if api == "gemini" else bid, len(requests)))  # id as clients see it
            return b

    def advance(self, bid: str) -> dict[str, Any]:
        """Count a poll; a batch ends after polls_before_done polls (results computed once)."""
        with self._lock:
            self.polls += 1
            b = self.batches[bid]
            if not b["done"]:
                b["polls"] += 1
                if b["polls"] > self.polls_before_done:
                    b["done"] = True
                    b["outcomes"] = [self._outcome(b, i, r) for i, r in enumerate(b["requests"])]
            return b

    def _outcome(self, b: dict[str, Any], i: int, r: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
        if b["expire"] and i >= self.expire_partial:
            return "expired", None
        body = {"openai": lambda: r["body"], "anthropic": lambda: r["params"], "gemini": lambda: r["request"]}[b["api"]]()
        last = (body.get("messages") or body.get("contents"))[-1]
        if self.fail_marker and self.fail_marker in json.dumps(last):
            return "errored", None
        return "succeeded", body


def _chat_completion(body: dict[str, Any], n: int, out_tokens: int) -> dict[str, Any]:
    text = reply_text(body["messages"], body.get("seed"))
    prompt = sum(len(str(m.get("content", ""))) for m in body["messages"]) // 4
    return {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "m"),
            "choices": [{"index": k, "message": {"role": "assistant", "content": text}, "finish_reason": "stop",
                         "logprobs": None} for k in range(n)],
            "usage": {"prompt_tokens": prompt, "completion_tokens": out_tokens * n,
                      "total_tokens": prompt + out_tokens * n}}


def _anthropic_message(params: dict[str, Any], out_tokens: int) -> dict[str, Any]:
    prompt = sum(len(str(m.get("content", ""))) for m in params["messages"]) // 4
    return {"id": "msg_fake", "type": "message", "role": "assistant", "model": params.get("model", "m"),
            "content": [{"type": "text", "text": reply_text(params["messages"])}], "stop_reason": "end_turn",
            "stop_sequence": None, "usage": {"input_tokens": prompt, "output_tokens": out_tokens}}


def _gemini_response(request: dict[str, Any], out_tokens: int) -> dict[str, Any]:
    cfg = request.get("generationConfig") or {}
    text = reply_text(request["contents"], cfg.get("seed"))
    prompt = sum(len(json.dumps(c)) for c in request["contents"]) // 4
    n = int(cfg.get("candidateCount") or 1)
    return {"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP",
                            "index": k} for k in range(n)],
            "usageMetadata": {"promptTokenCount": prompt, "candidatesTokenCount": out_tokens * n,
                              "totalTokenCount": prompt + out_tokens * n},
            "modelVersion": "fake"}


def _handler(srv: FakeBatchServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, obj: Any, raw: bytes | None = None, ctype: str = "application/json") -> None:
            body = raw if raw is not None else json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length", 0)))

        # --- OpenAI -----------------------------------------------------------------
        def _openai_batch(self, b: dict[str, Any]) -> dict[str, Any]:
            status = "in_progress"
            out_id = err_id = None
            counts = {"total": len(b["requests"]), "completed": 0, "failed": 0}
            if b["done"]:
                status = "expired" if b["expire"] else "completed"
                if "out_id" not in b:
                    out_lines, err_lines = [], []
                    for r, (kind, body) in zip(b["requests"], b["outcomes"]):
                        if kind == "succeeded":
                            out_lines.append({"id": srv.new_id("batch_req"), "custom_id": r["custom_id"], "error": None,
                                              "response": {"status_code": 200, "request_id": "req",
                                                           "body": _chat_completion(body, 1, srv.out_tokens)}})
                        elif kind == "errored":
                            err_lines.append({"id": srv.new_id("batch_req"), "custom_id": r["custom_id"], "error": None,
                                              "response": {"status_code": 500, "request_id": "req", "body": {
                                                  "error": {"message": "internal error", "type": "server_error"}}}})
                        else:
                            err_lines.append({"id": srv.new_id("batch_req"), "custom_id": r["custom_id"],
                                              "response": None, "error": {"code": "batch_expired",
                                                                          "message": "not run before expiry"}})
                    b["out_id"] = self._store_file(out_lines) if out_lines else None
                    b["err_id"] = self._store_file(err_lines) if err_lines else None
                    b["n_ok"], b["n_err"] = len(out_lines), len(err_lines)
                out_id, err_id = b["out_id"], b["err_id"]
                counts.update(completed=b["n_ok"], failed=b["n_err"])
            return {"id": b["id"], "object": "batch", "endpoint": b["endpoint"], "errors": None,
                    "input_file_id": b["input_file_id"], "completion_window": "24h", "status": status,
                    "output_file_id": out_id, "error_file_id": err_id, "created_at": int(b["created"]),
                    "request_counts": counts, "metadata": b.get("metadata")}

        def _store_file(self, lines: list[dict[str, Any]]) -> str:
            fid = srv.new_id("file")
            srv.files[fid] = "".join(json.dumps(x) + "\n" for x in lines).encode()
            return fid

        def _upload(self) -> None:
            raw = self._body()
            msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + raw)
            data, purpose = b"", ""
            for part in msg.iter_parts():
                name = part.get_param("name", header="content-disposition")
                if name == "file":
                    data = part.get_payload(decode=True)
                elif name == "purpose":
                    purpose = part.get_payload(decode=True).decode()
            fid = srv.new_id("file")
            srv.files[fid] = data
            self._send(200, {"id": fid, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                             "filename": "batch.jsonl", "purpose": purpose, "status": "processed"})

        # --- Anthropic --------------------------------------------------------------
        def _anthropic_batch(self, b: dict[str, Any]) -> dict[str, Any]:
            n = len(b["requests"])
            counts = {"processing": n, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
            ended = b["done"]
            if ended:
                counts["processing"] = 0
                for kind, _ in b["outcomes"]:
                    counts[kind] += 1
            return {"id": b["id"], "type": "message_batch", "processing_status": "ended" if ended else "in_progress",
                    "request_counts": counts, "created_at": _iso(b["created"]),
                    "expires_at": _iso(b["created"] + 86400), "ended_at": _iso(time.time()) if ended else None,
                    "archived_at": None, "cancel_initiated_at": None,
                    "results_url": f"{srv.url}/v1/messages/batches/{b['id']}/results" if ended else None}

        def _anthropic_results(self, b: dict[str, Any]) -> bytes:
            lines = []
            for r, (kind, params) in zip(b["requests"], b["outcomes"]):
                if kind == "succeeded":
                    res = {"type": "succeeded", "message": _anthropic_message(params, srv.out_tokens)}
                elif kind == "errored":
                    res = {"type": "errored", "error": {"type": "error", "error": {
                        "type": "api_error", "message": "internal error"}}}
                else:
                    res = {"type": "expired"}
                lines.append(json.dumps({"custom_id": r["custom_id"], "result": res}) + "\n")
            return "".join(lines).encode()

        # --- Gemini (an operation whose metadata carries the batch) -------------------
        def _gemini_batch(self, b: dict[str, Any]) -> dict[str, Any]:
            meta: dict[str, Any] = {"@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
                                    "model": b["model"], "displayName": b.get("display_name", ""),
                                    "createTime": _iso(b["created"]), "state": "BATCH_STATE_RUNNING"}
            if b["done"]:
                meta["state"] = "BATCH_STATE_EXPIRED" if b["expire"] else "BATCH_STATE_SUCCEEDED"
                inlined = []
                for r, (kind, request) in zip(b["requests"], b["outcomes"]):
                    if kind == "succeeded":
                        inlined.append({"response": _gemini_response(request, srv.out_tokens),
                                        "metadata": r.get("metadata")})
                    elif kind == "errored":
                        inlined.append({"error": {"code": 500, "message": "internal error", "status": "INTERNAL"},
                                        "metadata": r.get("metadata")})
                    # expired items have no entry: the batch ended before them
                meta["output"] = {"inlinedResponses": {"inlinedResponses": inlined}}
                meta["endTime"] = _iso(time.time())
            return {"name": f"batches/{b['id']}", "metadata": meta, "done": b["done"]}

        # --- routing ----------------------------------------------------------------
        def do_POST(self) -> None:
            path = self.path.split("?")[0]
            if path == "/v1/files":
                return self._upload()
            body = json.loads(self._body() or b"{}")
            if path == "/v1/batches":
                lines = [json.loads(x) for x in srv.files[body["input_file_id"]].decode().splitlines() if x.strip()]
                b = srv.create("openai", lines, endpoint=body["endpoint"], input_file_id=body["input_file_id"],
                               metadata=body.get("metadata"))
                return self._send(200, self._openai_batch(b))
            if path == "/v1/chat/completions":
                srv.live_calls.append(("openai", body))
                return self._send(200, _chat_completion(body, int(body.get("n") or 1), srv.out_tokens))
            if path == "/v1/messages/batches":
                b = srv.create("anthropic", body["requests"])
                return self._send(200, self._anthropic_batch(b))
            if path == "/v1/messages":
                srv.live_calls.append(("anthropic", body))
                return self._send(200, _anthropic_message(body, srv.out_tokens))
            if path.startswith("/v1/models/") and path.endswith(":batchGenerateContent"):
                batch = body["batch"]
                b = srv.create("gemini", batch["inputConfig"]["requests"]["requests"],
                               model=path[len("/v1/"):-len(":batchGenerateContent")],
                               display_name=batch.get("displayName", ""))
                return self._send(200, self._gemini_batch(b))
            if path.startswith("/v1/models/") and path.endswith(":generateContent"):
                srv.live_calls.append(("gemini", body))
                return self._send(200, _gemini_response(body, srv.out_tokens))
            self._send(404, {"error": {"message": f"no route {path}", "type": "not_found"}})

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            parts = path.strip("/").split("/")
            if path.startswith("/v1/batches/") and srv.batches.get(parts[2], {}).get("api") == "gemini":
                return self._send(200, self._gemini_batch(srv.advance(parts[2])))
            if path.startswith("/v1/batches/") and parts[2] in srv.batches:
                return self._send(200, self._openai_batch(srv.advance(parts[2])))
            if path.startswith("/v1/files/") and path.endswith("/content") and parts[2] in srv.files:
                return self._send(200, None, raw=srv.files[parts[2]], ctype="application/octet-stream")
            if path.startswith("/v1/messages/batches/") and len(parts) >= 4 and parts[3] in srv.batches:
                b = srv.batches[parts[3]]
                if len(parts) == 5 and parts[4] == "results":
                    return self._send(200, None, raw=self._anthropic_results(b), ctype="application/binary")
                return self._send(200, self._anthropic_batch(srv.advance(parts[3])))
            self._send(404, {"error": {"message": f"no route {path}", "type": "not_found"}})

    return Handler
