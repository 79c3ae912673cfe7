"""Offline batch inference on your own GPUs: a stage's pending requests are written as an OpenAI
Batch API input file, which vLLM runs as it is (`python -m vllm.entrypoints.openai.run_batch
-i requests.jsonl -o results.jsonl --model MODEL`) and Ray Data can map over on a cluster; the
output file (the same format as OpenAI's batch output) is then imported into the run's cache,
so re-running the stage reads every answer from there. custom_id is the live cache key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from traitforge.errors import InputError
from traitforge.llm.batch.openai import OpenAIBatch, _item
from traitforge.llm.client import LLM, as_messages
from traitforge.llm.base import NOT_ANSWERS, GenerateParams
from traitforge.llm.cache import cache_key
from traitforge.llm.batch.base import BatchItem


def export_requests(llm: LLM, requests: Sequence[tuple[Any, GenerateParams | None]], path: str | Path) -> int:
    """Write the requests' uncached samples as OpenAI batch input lines; returns how many."""
    encoder = OpenAIBatch(llm.backend)
    ident = llm.backend.cache_identity()
    lines: dict[str, dict[str, Any]] = {}
    for messages, params in requests:
        msgs = as_messages(messages)
        p = llm._params(params, {})
        for i in range(p.n):
            key = cache_key(ident, msgs, p, i)
            if key in lines or (llm.cache is not None and llm.cache.get(key) is not None):
                continue
            seed = p.seed + i if (p.seed is not None and i > 0) else p.seed
            lines[key] = encoder.encode(BatchItem(key, tuple(msgs), p.replace(n=1, seed=seed)))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines.values()),
                    encoding="utf-8")
    return len(lines)


def import_results(llm: LLM, path: str | Path) -> dict[str, int]:
    """Put each successful line of a batch output file into the cache under its custom_id."""
    if llm.cache is None:
        raise InputError("importing batch results needs the run's cache")
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: batch results file not found")
    counts = {"imported": 0, "errored": 0}
    rows: list[tuple[str, str, int, int, str, str, str, int]] = []
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError:
            raise InputError(f"{path}: line {lineno}: not valid JSON") from None
        cid = row.get("custom_id") if isinstance(row, dict) else None
        if not isinstance(cid, str):
            raise InputError(f"{path}: line {lineno}: no custom_id (not a batch output file?)")
        res = _item(row)
        # A refusal or a filtered reply goes in as that outcome; an empty reply not at all (a live
        # call asks again), never as an empty answer.
        if res.kind == "succeeded" and (res.outcome in NOT_ANSWERS or (res.text or "").strip()):
            rows.append(res.cache_row(cid))
            counts["imported"] += 1
        else:
            counts["errored"] += 1
    llm.cache.put_many(rows)
    return counts
