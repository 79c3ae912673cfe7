"""`BatchRunner`: serve a stage's requests through a provider batch API, into the LLM cache.

One sample = one batch item whose custom_id is the sample's live cache key, so a stage that then
calls `llm.generate` as usual is served from the cache. Crash-safe: each batch is written to the
ledger (`llm.ledger.Ledger`, the run manifest's "batches"[stage]) the moment the provider returns
its id, before any polling; a restarted runner re-attaches to batches not yet collected instead
of submitting again.
Items that error inside a batch are retried live through the client (or, when many, once in a
smaller batch); items a batch did not reach before it expired are resubmitted once, then reported
and left to the stage's live calls. A batch whose every item was rejected for a request parameter
the model does not take (sampling on a reasoning model) is sent once more without it, the lesson
shared with live calls through the model table. Refused or blocked items are cached as that outcome
and charged like every reply the provider made. Cost: the price table at batch (half) price; the
estimate reserved for a batch counts the output limit each request allows, thinking room included.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from traitforge.errors import BudgetExceeded
from traitforge.jsonl import write_json_atomic
from traitforge.llm.secrets import scrub
from traitforge.llm.base import NOT_ANSWERS, GenerateParams, Message
from traitforge.llm.batch.base import TERMINAL, BatchItem, BatchProvider, ItemResult
from traitforge.llm.budget import Budget
from traitforge.llm.cache import cache_key
from traitforge.llm.client import LLM, MessagesLike, as_messages
from traitforge.llm.errors import BackendError, RetryableError
from traitforge.llm.ledger import Ledger
from traitforge.llm.pricing import estimate_cost
from traitforge.llm.providers import PROVIDERS

log = logging.getLogger("traitforge.batch")

Request = tuple[MessagesLike, GenerateParams | None]


def batch_provider(llm: LLM) -> BatchProvider | None:
    """The batch API for this LLM's provider, or None (local and scripted models have none)."""
    row = PROVIDERS.get(llm.backend.provider)
    cls = row.batch_class() if row is not None else None
    return cls(llm.backend) if cls is not None else None


def json_request(llm: LLM, messages: MessagesLike, schema: Any, params: GenerateParams | None = None,
                 **overrides: Any) -> tuple[list[Message], GenerateParams]:
    """The first request `llm.generate_json(messages, schema, ...)` makes, so it can be batched
    (its re-asks, if any, go live)."""
    return llm.json_request(messages, schema, params, **overrides)


@dataclass
class BatchReport:
    samples: int = 0  # samples asked for (requests x n)
    cached: int = 0  # already in the cache before anything was sent
    submitted: int = 0  # samples sent in new batches (resubmissions included)
    reattached: list[str] = field(default_factory=list)  # batch ids found in flight from an earlier process
    batches: list[str] = field(default_factory=list)  # batch ids created by this runner
    succeeded: int = 0  # samples that came back from batches into the cache
    refused: int = 0  # of those, refused or blocked by the provider (cached as such, and billed)
    retried_live: int = 0  # samples fetched live after erroring in a batch
    expired: int = 0  # samples no batch reached even after one resubmission (left to live calls)
    failed: int = 0  # requests that also failed live (the stage's own call will report them)
    not_submitted: int = 0  # samples held back by the budget
    cost_usd: float = 0.0  # batch-price cost of what came back

    def line(self, stage: str) -> str:
        return (f"batch {stage}: {self.samples} samples: {self.cached} cached, {self.submitted} submitted in "
                f"{len(self.batches)} new batches, {len(self.reattached)} re-attached, {self.succeeded} returned "
                f"({self.refused} refused or blocked), "
                f"{self.retried_live} retried live, {self.expired} expired, {self.failed} failed, "
                f"${self.cost_usd:.4f}")


@dataclass
class _Unit:
    item: BatchItem
    request: int  # index into the requests list (for live retries)


class BatchRunner:
    def __init__(self, llm: LLM, store: Ledger, stage: str, *, poll_interval_s: float = 60.0,
                 provider: BatchProvider | None = None, max_requests: int | None = None,
                 live_retry_max: int = 200, prices_file: str | None = None, budget: Budget | None = None,
                 max_poll_errors: int = 30, quiet: bool = False):
        self.llm = llm
        self.store = store
        self.stage = stage
        self.poll_interval_s = poll_interval_s
        self.provider = provider or batch_provider(llm)
        if self.provider is None:
            raise BackendError(f"{llm.name}: provider '{llm.backend.provider}' has no batch API")
        self.max_requests = min(max_requests or self.provider.max_requests, self.provider.max_requests)
        self.live_retry_max = live_retry_max
        self.prices_file = prices_file if prices_file is not None else (budget.prices_file if budget else None)
        self.budget = budget if budget is not None else getattr(llm, "budget", None)
        self.max_poll_errors = max_poll_errors
        self.quiet = quiet
        self.report = BatchReport()
        self._units: dict[str, _Unit] = {}
        self._requests: list[tuple[list[Message], GenerateParams]] = []

    # --- manifest ----------------------------------------------------------------------
    def _entries(self) -> list[dict[str, Any]]:
        return self.store.manifest.setdefault("batches", {}).setdefault(self.stage, [])

    def _open_entries(self) -> list[dict[str, Any]]:
        return [e for e in self._entries() if not e.get("collected") and e.get("provider") == self.provider.provider
                and e.get("model") == self.llm.name]

    def _keys_of(self, entry: dict[str, Any]) -> list[str]:
        import json

        path = self.store.root / entry["request"]["keys_file"]
        try:
            return list(json.loads(path.read_text(encoding="utf-8"))["keys"])
        except (OSError, ValueError, KeyError):
            return []

    def _say(self, msg: str) -> None:
        log.info(msg)
        if not self.quiet:
            print(msg, file=sys.stderr, flush=True)

    # --- requests -> units -------------------------------------------------------------
    def _expand(self, requests: Sequence[Request]) -> None:
        ident = self.llm.backend.cache_identity()
        for r, (messages, params) in enumerate(requests):
            msgs = as_messages(messages)
            p = self.llm._params(params, {})  # the same defaults a live generate() applies
            self._requests.append((msgs, p))
            for i in range(p.n):
                key = cache_key(ident, msgs, p, i)
                if key in self._units:
                    continue
                # Each sample its own item; a fixed seed is offset so samples differ (as live top-ups do).
                seed = p.seed + i if (p.seed is not None and i > 0) else p.seed
                self._units[key] = _Unit(BatchItem(key, tuple(msgs), p.replace(n=1, seed=seed)), r)

    # --- the whole job -----------------------------------------------------------------
    async def run(self, requests: Sequence[Request]) -> BatchReport:
        """Fill the cache for every sample of `requests`; returns what happened."""
        try:
            await self.submit(requests)
            await self.collect()
        finally:
            await self.provider.aclose()
        if self.report.not_submitted:
            raise BudgetExceeded(
                f"budget.max_usd=${self.budget.max_usd if self.budget else 0:.4f} reached: "
                f"{self.report.not_submitted} samples of stage {self.stage} were not submitted as batches "
                f"(the {self.report.succeeded} returned are kept); raise budget.max_usd and re-run to resume")
        return self.report

    async def submit(self, requests: Sequence[Request]) -> list[str]:
        """Send every sample that is neither cached nor in a batch already in flight. Returns the new
        batch ids (each already in the manifest)."""
        self._expand(requests)
        cache = self.llm.cache
        if cache is None:
            raise BackendError(f"{self.llm.name}: batch mode needs the LLM cache (results land there)")
        self.report.samples = len(self._units)
        missing = [k for k in self._units if cache.get(k) is None]
        self.report.cached = len(self._units) - len(missing)
        in_flight: set[str] = set()
        for e in self._open_entries():
            in_flight.update(self._keys_of(e))
            if e["id"] not in self.report.reattached:
                self.report.reattached.append(e["id"])
        todo = [k for k in missing if k not in in_flight]
        return await self._send(todo, attempt=1, reason="new")

    def _chunks(self, keys: list[str]) -> list[tuple[list[str], list[dict[str, Any]]]]:
        """Split into batches under the provider's request-count and size limits."""
        out: list[tuple[list[str], list[dict[str, Any]]]] = []
        cur_k: list[str] = []
        cur_e: list[dict[str, Any]] = []
        size = 0
        for k in keys:
            enc = self.provider.encode(self._units[k].item)
            n = _approx_bytes(enc)
            if cur_k and (len(cur_k) >= self.max_requests or size + n > self.provider.max_bytes):
                out.append((cur_k, cur_e))
                cur_k, cur_e, size = [], [], 0
            cur_k.append(k)
            cur_e.append(enc)
            size += n
        if cur_k:
            out.append((cur_k, cur_e))
        return out

    def _estimate(self, keys: Sequence[str], encoded: Sequence[dict[str, Any]]) -> float:
        """Worst-case cost at batch price: prompt chars/4 in, and out the output limit each encoded
        request allows (its thinking room included): what a live call of it would reserve."""
        tin = sum(sum(len(m.content) for m in self._units[k].item.messages) // 4 for k in keys)
        tout = sum(self.provider.output_limit(e) for e in encoded)
        if self.budget is not None:
            return self.budget.cost(self.llm.name, tin, tout, batch=True, calls=len(keys))
        return estimate_cost(self.llm.name, tin, tout, self.prices_file, batch=True, calls=len(keys)) or 0.0

    async def _send(self, keys: list[str], *, attempt: int, reason: str, parent: str | None = None) -> list[str]:
        ids: list[str] = []
        for chunk_keys, encoded in self._chunks(keys):
            est = self._estimate(chunk_keys, encoded)
            if self.budget is not None and self.budget.max_usd is not None:
                left = self.budget.max_usd - self.budget.committed_usd
                if est > left:
                    # Send the part that fits; the rest waits for a bigger budget.
                    per = est / len(chunk_keys)
                    fit = max(0, int(left / per)) if per > 0 else len(chunk_keys)
                    self.report.not_submitted += len(chunk_keys) - fit
                    chunk_keys, encoded = chunk_keys[:fit], encoded[:fit]
                    if not chunk_keys:
                        continue
                    est = self._estimate(chunk_keys, encoded)
            local = f"{int(time.time() * 1000)}-{len(self._entries())}"
            keys_file = f"batches/{self.stage}/{local}.keys.json"
            write_json_atomic(self.store.path(*keys_file.split("/")), {"keys": chunk_keys})
            batch_id = await self._retrying("submit", lambda enc=encoded: self.provider.submit(enc))
            # Recorded before any polling: a restart re-attaches to this id instead of resubmitting.
            self._entries().append({
                "id": batch_id, "provider": self.provider.provider, "model": self.llm.name,
                "status": "submitted", "collected": False, "submitted": time.time(), "attempt": attempt,
                "reason": reason, "resubmit_of": parent, "estimate_usd": round(est, 8),
                "request": {"keys_file": keys_file, "count": len(chunk_keys)}})
            self.store.save()
            ids.append(batch_id)
            self.report.batches.append(batch_id)
            self.report.submitted += len(chunk_keys)
            self._say(f"batch {self.stage}: submitted {batch_id} ({len(chunk_keys)} requests, ~${est:.4f})")
        return ids

    async def _retrying(self, what: str, make: Any) -> Any:
        """Transient API failures while submitting/polling: wait and try again, a bounded number of times."""
        errors = 0
        while True:
            try:
                return await make()
            except RetryableError as e:
                errors += 1
                if errors > self.max_poll_errors:
                    raise BackendError(f"{self.llm.name}: batch {what} kept failing: {e}") from None
                await asyncio.sleep(min(60.0, self.poll_interval_s * errors))

    async def collect(self) -> None:
        """Poll every batch of this stage still open until each is collected into the cache."""
        while True:
            open_entries = self._open_entries()
            if not open_entries:
                return
            waiting = False
            for entry in open_entries:
                st = await self._retrying("poll", lambda e=entry: self.provider.poll(e["id"]))
                if st.raw != entry.get("status"):
                    entry["status"] = st.raw
                    if st.counts:
                        entry["counts"] = st.counts
                    self.store.save()
                if st.state not in TERMINAL:
                    waiting = True
                    continue
                if st.state == "failed":
                    entry.update(collected=True, error=scrub(st.error) or "batch failed")
                    self.store.save()
                    raise BackendError(f"{self.llm.name}: batch {entry['id']} failed: {st.error or 'no reason given'}")
                await self._harvest(entry, st.state)
            if waiting:
                await asyncio.sleep(self.poll_interval_s)

    async def _harvest(self, entry: dict[str, Any], state: str) -> None:
        keys = self._keys_of(entry)
        results = await self._retrying("results", lambda: self.provider.results(entry["id"], keys))
        cache = self.llm.cache
        assert cache is not None
        ok = refused = billed = tin = tout = thinking = 0
        outcomes: list[str] = []
        errored: list[str] = []
        unreached: list[str] = []
        rows: list[tuple[str, str, int, int, str, str, str, int]] = []
        for k in keys:
            r: ItemResult | None = results.get(k)
            if r is not None and r.billed:
                # The provider charges for every reply it made: refusals and empty ones too.
                billed += 1
                tin += r.input_tokens
                tout += r.output_tokens
                thinking += r.reasoning_tokens
                outcomes.append(r.outcome)
                if r.outcome in NOT_ANSWERS:
                    # No answer, but an answer to this request under this policy: cached as that outcome,
                    # so the stage's own call applies its refusal policy instead of paying again.
                    rows.append(r.cache_row(k))
                    ok += 1
                    refused += 1
                elif r.text is not None and r.text.strip():
                    rows.append(r.cache_row(k))
                    ok += 1
                else:
                    # An empty reply (a thinking model that spent its output limit thinking) is left to a
                    # live call, where the client asks again with more room.
                    errored.append(k)
            elif (r.kind if r is not None else state) in ("expired", "cancelled"):
                unreached.append(k)
            else:
                errored.append(k)
        # Into the cache before the entry is marked collected: a crash here re-reads the results.
        cache.put_many(rows)  # one transaction for the whole batch
        cost = estimate_cost(self.llm.name, tin, tout, self.prices_file, batch=True, calls=max(billed, 1))
        if billed:
            self.store.add_usage(self.stage, self.llm.name, input_tokens=tin, output_tokens=tout, calls=billed,
                                 cached=0, cost_usd=cost, reasoning_tokens=thinking, outcomes=outcomes)
        entry.update(collected=True, status=entry.get("status"), cost_usd=round(cost or 0.0, 8),
                     results={"succeeded": ok, "refused": refused, "errored": len(errored),
                              "unreached": len(unreached)})
        if self.budget is not None:
            self.budget.add_spent(cost or 0.0)  # saved with the manifest below
        self.store.save()
        self.report.succeeded += ok
        self.report.refused += refused
        self.report.cost_usd += cost or 0.0
        self._say(f"batch {self.stage}: collected {entry['id']} ({state}): {ok} ok ({refused} refused or blocked), "
                  f"{len(errored)} errored, {len(unreached)} unreached")
        attempt = int(entry.get("attempt", 1))
        # Only samples this runner knows how to rebuild (a batch from an older request list just fills the cache).
        unreached = [k for k in unreached if k in self._units]
        errored = [k for k in errored if k in self._units]
        if unreached:
            if attempt == 1 and state != "cancelled":
                self._say(f"batch {self.stage}: resubmitting {len(unreached)} expired requests once")
                await self._send(unreached, attempt=2, reason="expired", parent=entry["id"])
            else:
                self.report.expired += len(unreached)
                self._say(f"batch {self.stage}: {len(unreached)} requests expired twice; left to live calls")
        if errored and attempt == 1 and not billed and len(errored) == len(keys) \
                and self.provider.relearn([results[k].error if k in results else "" for k in errored]):
            # Every item rejected the same request shape (e.g. temperature on a reasoning model): the
            # provider learned it, so one more batch without it, not live calls at full price.
            self._say(f"batch {self.stage}: every request was rejected ({results[errored[0]].error[:120]}); "
                      f"resubmitting {len(errored)} without what the model does not take")
            await self._send(errored, attempt=2, reason="relearned", parent=entry["id"])
        elif errored:
            if len(errored) > self.live_retry_max and attempt == 1:
                await self._send(errored, attempt=2, reason="errored", parent=entry["id"])
            else:
                await self._retry_live(errored)

    async def _retry_live(self, keys: list[str]) -> None:
        """Errored items through the normal client (retries, limits, budget); it caches under the same keys."""
        reqs = sorted({self._units[k].request for k in keys})

        async def one(r: int) -> None:
            msgs, p = self._requests[r]
            try:
                await self.llm.generate(msgs, p)
            except BackendError as e:
                self.report.failed += 1
                log.warning("batch %s: live retry failed: %s", self.stage, e)

        await asyncio.gather(*(one(r) for r in reqs))
        self.report.retried_live += len(keys)


def _approx_bytes(obj: dict[str, Any]) -> int:
    # Cheap size bound without serialising twice: text dominates a chat request.
    import json

    return len(json.dumps(obj, ensure_ascii=False).encode()) + 1


async def prefetch_batch(llm: LLM, requests: Sequence[Request], store: Ledger, stage: str, *,
                         poll_interval_s: float = 60.0, budget: Budget | None = None,
                         prices_file: str | None = None, quiet: bool = False) -> BatchReport | None:
    """Fill the cache for `requests` through the provider's batch API so the stage's own
    `llm.generate(...)` calls (same messages and params) are then served from the cache.
    Returns None (and does nothing) for providers without a batch API (local, scripted)."""
    provider = batch_provider(llm)
    if provider is None or not requests:
        return None
    runner = BatchRunner(llm, store, stage, poll_interval_s=poll_interval_s, provider=provider,
                         budget=budget, prices_file=prices_file, quiet=quiet)
    report = await runner.run(requests)
    runner._say(report.line(stage))
    return report
