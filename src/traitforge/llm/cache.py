"""Content-addressed SQLite cache of LLM outputs, one row per sample.

Key: backend identity + messages + output-affecting params + sample index (+ the attempt, for a
retry after a refusal: a new cached call). Each value carries its own checksum, so a corrupt entry
is detected, deleted and refetched rather than trusted.

A value holds the text, its outcome ("ok", "refused", "blocked", "truncated"), the finish reason,
the provider's reason for a refusal, and the token counts with thinking. A refusal is cached as
that outcome (the client raises `Refused(cached=True)` for it, without calling). Schema version 1
(`PRAGMA user_version`); rows of version 0 carry no outcome: their texts keep working, but an empty
one cannot be told from a refusal, so `get` treats it as unknown (a miss) and the client asks once
more, caching the new answer with its outcome in its place.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any, Sequence

from traitforge.llm.base import OK, OUTCOMES, GenerateParams, Message


SCHEMA_VERSION = 1


def cache_key(identity: dict[str, Any], messages: Sequence[Message], params: GenerateParams,
              sample_index: int, attempt: int = 0) -> str:
    payload: dict[str, Any] = {
        "backend": identity,
        "messages": [m.to_dict() for m in messages],
        "params": params.cache_fields(),
        "sample": sample_index,
    }
    if attempt:  # attempt 0 keeps the key every earlier version wrote
        payload["attempt"] = attempt
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _checksum(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:16]


def _value(text: str, input_tokens: int, output_tokens: int, outcome: str = OK, finish_reason: str = "",
           reason: str = "", reasoning_tokens: int = 0) -> str:
    return json.dumps({"text": text, "input_tokens": input_tokens, "output_tokens": output_tokens,
                       "reasoning_tokens": reasoning_tokens, "outcome": outcome, "finish_reason": finish_reason,
                       "reason": reason}, ensure_ascii=False)


class LLMCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # A file that is no readable cache is moved aside (path.corrupt-TIMESTAMP) and a new one made:
        # every answer in it can be asked for again, and the caller says what that costs.
        self.moved_aside: Path | None = None
        self.moved_aside_reason = ""
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as e:
            if isinstance(e, sqlite3.OperationalError):  # locked, read-only, disk full: not corruption
                raise
            self.moved_aside_reason = str(e)
            self.moved_aside = self._move_aside()
            self._db = self._open()
        if self._db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
            # Nothing to rewrite: version-0 rows are read as they are (see the module's doc).
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self._db.commit()
        self.corrupt_entries = 0
        self.unknown_empty = 0  # version-0 empty answers met (asked again)

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS llm_cache (key TEXT PRIMARY KEY, value TEXT NOT NULL,"
                " checksum TEXT NOT NULL, created REAL DEFAULT (unixepoch()))")
            db.commit()
            db.execute("SELECT key, value, checksum FROM llm_cache LIMIT 1").fetchall()
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def _move_aside(self) -> Path:
        import os
        import time

        aside = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
        os.replace(self.path, aside)
        for suffix in ("-wal", "-shm"):  # the journal of the old file belongs with it
            side = self.path.with_name(self.path.name + suffix)
            if side.exists():
                os.replace(side, aside.with_name(aside.name + suffix))
        return aside

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
            if obj.get("outcome", OK) not in OUTCOMES:
                raise ValueError("bad outcome")
        except (ValueError, json.JSONDecodeError):
            self.corrupt_entries += 1
            self.delete(key)
            return None
        if "outcome" not in obj:
            if not obj["text"].strip():
                self.unknown_empty += 1  # a version-0 empty answer: maybe a refusal; ask again
                return None
            obj["outcome"] = OK
        return obj

    def put(self, key: str, text: str, input_tokens: int, output_tokens: int, *, outcome: str = OK,
            finish_reason: str = "", reason: str = "", reasoning_tokens: int = 0) -> None:
        value = _value(text, input_tokens, output_tokens, outcome, finish_reason, reason, reasoning_tokens)
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
