"""Content-addressed SQLite cache of LLM outputs, one row per sample.

Key: backend identity + messages + output-affecting params + sample index. Each value carries
its own checksum, so a corrupt entry is detected, deleted and refetched rather than trusted.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any, Sequence

from traitforge.llm.base import GenerateParams, Message


def cache_key(identity: dict[str, Any], messages: Sequence[Message], params: GenerateParams,
              sample_index: int) -> str:
    payload = {
        "backend": identity,
        "messages": [m.to_dict() for m in messages],
        "params": params.cache_fields(),
        "sample": sample_index,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _checksum(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:16]


def _value(text: str, input_tokens: int, output_tokens: int, *outcome_fields: Any) -> str:
    """The stored JSON; the outcome fields (outcome, finish_reason, reason, reasoning_tokens) only
    when given, so a plain answer's value is as before."""
    obj: dict[str, Any] = {"text": text, "input_tokens": input_tokens, "output_tokens": output_tokens}
    if outcome_fields:
        outcome, finish_reason, reason, reasoning_tokens = outcome_fields
        obj.update(reasoning_tokens=reasoning_tokens, outcome=outcome, finish_reason=finish_reason, reason=reason)
    return json.dumps(obj, ensure_ascii=False)


class LLMCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS llm_cache (key TEXT PRIMARY KEY, value TEXT NOT NULL,"
            " checksum TEXT NOT NULL, created REAL DEFAULT (unixepoch()))")
        self._db.commit()
        self.corrupt_entries = 0

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT value, checksum FROM llm_cache WHERE key=?", (key,)).fetchone()
        if row is None:
            return None
        value, checksum = row
        try:
            if _checksum(value) != checksum:
                raise ValueError("checksum mismatch")
            obj = json.loads(value)
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                raise ValueError("bad shape")
            return obj
        except (ValueError, json.JSONDecodeError):
            self.corrupt_entries += 1
            self.delete(key)
            return None

    def put(self, key: str, text: str, input_tokens: int, output_tokens: int, *, outcome: str | None = None,
            finish_reason: str = "", reason: str = "", reasoning_tokens: int = 0) -> None:
        extra = () if outcome is None else (outcome, finish_reason, reason, reasoning_tokens)
        value = _value(text, input_tokens, output_tokens, *extra)
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO llm_cache (key, value, checksum) VALUES (?, ?, ?)",
                             (key, value, _checksum(value)))
            self._db.commit()

    def put_many(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """(key, text, input_tokens, output_tokens[, outcome, finish_reason, reason, reasoning_tokens])
        rows in one transaction: a batch's results arrive by the thousand, and a commit per row costs
        ~45x more (bench/scale.py)."""
        values = []
        for key, *fields in rows:
            value = _value(*fields)
            values.append((key, value, _checksum(value)))
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO llm_cache (key, value, checksum) VALUES (?, ?, ?)", values)
            self._db.commit()

    def delete(self, key: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM llm_cache WHERE key=?", (key,))
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM llm_cache").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
