"""`LLM`: a backend wrapped with the cache, limits, retries, structured output and usage counts.

Stages only talk to this class. A re-run of a finished stage is served from the cache and
makes zero backend calls. A refusal or safety block is never an answer: it is cached as that
outcome and raises `errors.Refused` (after the role's `on_refusal` policy: skip, retry as new
cached calls, or the same request to a fallback model). Every backend call is counted on
`usage` and emitted as a `record.CallRecord` to `sink`, where one is attached.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import copy
import dataclasses
import logging
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Coroutine, Iterator, Literal, Sequence, TypeVar

from pydantic import BaseModel

from traitforge.errors import BudgetExceeded
from traitforge.llm.base import (BLOCKED, NOT_ANSWERS, REFUSED, TRUNCATED, TRUNCATED_OUTCOME, Backend, Completion,
                                 GenerateParams, Message, Usage)
from traitforge.llm.cache import LLMCache, cache_key
from traitforge.llm.errors import BackendError, Refused, RetryableError
from traitforge.llm.limits import Limiter
from traitforge.llm.record import CallRecord, Reply, Sink, refusal_reason
from traitforge.llm.structured import extract_json, json_instruction, schema_of, validate

T = TypeVar("T", bound=BaseModel)
log = logging.getLogger(__name__)
# A thinking-starved reply (see `starved`) is asked again this many times, each with more room.
ROOM_RETRIES = 3
# The recording clients of the running task and the tasks it starts (LLM.recording): a step that
# learns its requests does not capture the live calls of another step running at the same time.
_RECORDERS: contextvars.ContextVar[dict[int, list[Any]]] = contextvars.ContextVar("traitforge_recorders",
                                                                                     default={})
MAX_ROOM = 65536  # the answer limit never grows past this
MessagesLike = Sequence[Message] | Sequence[dict[str, str]] | str
OnRefusal = Literal["skip", "retry", "fallback_model"]


def as_messages(messages: MessagesLike) -> list[Message]:
    if isinstance(messages, str):
        return [Message("user", messages)]
    return [m if isinstance(m, Message) else Message.from_dict(m) for m in messages]


_COUNTS = ("calls", "cached", "input_tokens", "output_tokens", "reasoning_tokens", "refused", "blocked",
           "truncated", "cost_usd", "unpriced", "estimated")


@dataclass
class UsageCounter:
    calls: int = 0  # backend requests made
    cached: int = 0  # samples served from the cache
    input_tokens: int = 0
    output_tokens: int = 0  # thinking included
    reasoning_tokens: int = 0  # of output_tokens, thinking (where the provider says)
    refused: int = 0  # samples refused by the provider (fresh or from the cache)
    blocked: int = 0  # samples safety-blocked
    truncated: int = 0  # samples cut at the output limit
    cost_usd: float = 0.0  # the calls' cost at the client's prices (those with a price)
    unpriced: int = 0  # calls of a model without a price
    estimated: int = 0  # calls whose token counts were estimated
    # Which counter and how many CallRecords it emitted (never reset by drain): a run's ledger
    # knows from (id, seq) which records a drained summary already covers.
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    seq: int = 0

    def drain(self) -> "UsageCounter":
        out = dataclasses.replace(self)
        for name in _COUNTS:
            setattr(self, name, type(getattr(self, name))())
        return out

    def count_outcome(self, outcome: str) -> None:
        if outcome == REFUSED:
            self.refused += 1
        elif outcome == BLOCKED:
            self.blocked += 1
        elif outcome == TRUNCATED_OUTCOME:
            self.truncated += 1


class DeferredCall(BaseException):
    """Raised instead of calling the backend while an `LLM` is recording (see `LLM.recording`).
    A BaseException so a stage's own `except Exception` does not swallow it."""


def starved(comp: Completion, max_tokens: int) -> str | None:
    """Why a completion is thinking-starved, or None: a sample stopped at the output limit that
    is empty, or that is cut off after thinking took more than half of the answer's `max_tokens`
    (an answer cut by its own limit, a long document say, is what was asked for: not starved)."""
    u = comp.usage
    answer = (u.output_tokens - u.reasoning_tokens) / max(1, len(comp.texts))
    for i, (text, reason) in enumerate(zip(comp.texts, comp.finish_reasons)):
        if comp.outcome(i) in NOT_ANSWERS:
            continue  # a refusal is not starved: more room would not make it an answer
        if reason in TRUNCATED and (not text.strip() or (u.reasoning_tokens > 0 and answer < max_tokens / 2)):
            what = "empty" if not text.strip() else "cut off"
            return (f"reply {what} at the output limit (finish reason {reason!r}, "
                    f"{comp.usage.reasoning_tokens} thinking tokens)")
    return None


def more_room(p: GenerateParams, comp: Completion) -> int:
    """The next answer limit for a starved call: at least 4x, and twice the thinking it did."""
    per_sample = comp.usage.reasoning_tokens // max(1, len(comp.texts))
    return min(MAX_ROOM, max(p.max_tokens * 4, p.max_tokens + 2 * per_sample, p.max_tokens + 1024))


def _batch_key(p: GenerateParams) -> GenerateParams:
    # A local batch shares top_p and schema; each row keeps its own sample count, answer limit, stop
    # strings and (at top_p 1) temperature, greedy or sampled (the backend handles them per row),
    # so those do not split batches.
    free = {"seed": None, "max_tokens": 0, "stop": (), "n": 1}
    if p.top_p in (None, 1.0):
        free.update(temperature=0.0, top_p=None)
    return p.replace(**free)


class _Batcher:
    """Groups concurrent requests into `generate_batch` calls, one at a time, for local backends.
    The queued requests that can share a forward pass go shortest first, so a batch holds prompts of
    like length and pads little (in arrival order, a judge's short grades were padded to the long
    transcripts among them). Two batches at once, one per core, measured slower on 2 cores
    (0.72-0.89x) than one batch on both: the forward passes are compute-bound there."""

    def __init__(self, backend: Backend, batch_size: int):
        self.backend = backend
        self.batch_size = batch_size
        self.queue: list[tuple[list[Message], GenerateParams, asyncio.Future[Completion]]] = []
        self._running = False

    async def submit(self, messages: list[Message], params: GenerateParams) -> Completion:
        fut: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        self.queue.append((messages, params, fut))
        if not self._running:
            self._running = True
            asyncio.get_running_loop().create_task(self._drain())
        return await fut

    def _take(self) -> list[tuple[list[Message], GenerateParams, asyncio.Future[Completion]]]:
        """The next batch: the shortest queued requests that share a forward pass with the oldest.
        One forward pass shares top_p (see _batch_key). The seed is left out of that match: with
        per-request seeds nothing would batch, and a sampled batch depends on its companions
        anyway; the cache keeps results stable."""
        first = _batch_key(self.queue[0][1])
        same = [q for q in self.queue if _batch_key(q[1]) == first]
        batch = sorted(same, key=lambda q: sum(len(m.content) for m in q[0]))[: self.batch_size]
        for q in batch:
            self.queue.remove(q)
        return batch

    async def _drain(self) -> None:
        try:
            await asyncio.sleep(0)  # let every ready coroutine enqueue first
            while self.queue:
                batch = self._take()
                try:
                    results = await self.backend.generate_batch([(m, p) for m, p, _ in batch])
                    for (_, _, fut), res in zip(batch, results):
                        if not fut.done():
                            fut.set_result(res)
                except BaseException as e:  # noqa: BLE001 - handed to every waiter
                    for _, _, fut in batch:
                        if not fut.done():
                            fut.set_exception(e)
                await asyncio.sleep(0)
        finally:
            self._running = False


class LLM:
    def __init__(self, backend: Backend, *, cache: LLMCache | None = None, limiter: Limiter | None = None,
                 max_retries: int = 6, timeout_s: float = 120.0, default_temperature: float | None = None,
                 batch_size: int = 8, backoff_base_s: float = 1.0, backoff_max_s: float = 60.0,
                 budget: Any = None, on_refusal: OnRefusal = "skip", refusal_retries: int = 1,
                 fallback: "LLM | None" = None, sink: Sink | None = None, prices_file: str | None = None):
        self.backend = backend
        # Optional llm.budget.Budget: checked before every backend call (cache hits are free).
        self.budget = budget
        self.cache = cache
        self.limiter = limiter or Limiter(backend.default_concurrency)
        self.max_retries = max_retries
        self.timeout_s = timeout_s
        self.default_temperature = default_temperature
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.usage = UsageCounter()
        # What a refused or blocked sample gets: "skip" raises Refused; "retry" asks again
        # `refusal_retries` times (each a new cached call) first; "fallback_model" asks `fallback`.
        self.on_refusal = on_refusal
        self.refusal_retries = refusal_retries
        self.fallback = fallback
        # Called with each backend call's CallRecord as it completes (a run's per-call ledger).
        self.sink = sink
        self.prices_file = prices_file  # the prices a CallRecord's cost is taken at (None: the package's)
        self._budget_stop: tuple[Any, float | None, str] | None = None  # (budget, its max_usd, why)
        self._batcher = _Batcher(backend, batch_size) if backend.supports_batch else None
        # cache keys of calls in flight -> their answer (shared with forks: one client)
        self._inflight: dict[tuple[str, ...], asyncio.Future[list[Reply]]] = {}

    @property
    def name(self) -> str:
        return self.backend.name

    def fork(self) -> "LLM":
        """The same client (backend, cache, limits, budget, and the batcher, so the two share
        batches) with its own usage counter: two pipelines running at once each count their own."""
        twin = copy.copy(self)
        twin.usage = UsageCounter()
        return twin

    def _params(self, params: GenerateParams | None, overrides: dict[str, Any]) -> GenerateParams:
        p = params or GenerateParams()
        if self.default_temperature is not None and "temperature" not in overrides and params is None:
            p = p.replace(temperature=self.default_temperature)
        if "stop" in overrides:  # stop=None means no stop sequences (a None would break cache keys)
            overrides["stop"] = tuple(overrides["stop"] or ())
        return p.replace(**overrides) if overrides else p

    # --- plain text ------------------------------------------------------------------
    async def generate(self, messages: MessagesLike, params: GenerateParams | None = None,
                       **overrides: Any) -> list[str]:
        """n samples for one prompt (n from params), each cached under its own index. A sample
        refused or blocked (after the `on_refusal` policy) raises `Refused`."""
        return [r.text for r in await self.generate_replies(messages, params, **overrides)]

    async def generate_replies(self, messages: MessagesLike, params: GenerateParams | None = None,
                               **overrides: Any) -> list[Reply]:
        """`generate` with each sample's outcome and finish reason (`Reply`): a stage can tell a
        truncated reply from a whole one. Raises `Refused` like `generate`."""
        msgs = as_messages(messages)
        p = self._params(params, overrides)
        replies = await self._resolve(msgs, p, list(range(p.n)))
        for r in replies:
            if not r.ok:
                raise Refused(self.name, r.outcome, r.reason, cached=r.cached)
        return replies

    async def generate_full(self, messages: MessagesLike, params: GenerateParams | None = None,
                            **overrides: Any) -> Reply:
        """One sample as a `Reply` (text, outcome, finish reason)."""
        return (await self.generate_replies(messages, params, **{**overrides, "n": 1}))[0]

    async def _resolve(self, msgs: list[Message], p: GenerateParams, indices: list[int]) -> list[Reply]:
        """Samples `indices` (cache, else backend), then the refusal policy for those that are not
        answers. Returns refusals as Replies; the caller raises."""
        replies = await self._samples(msgs, p, indices, attempt=0)
        bad = [j for j, r in enumerate(replies) if not r.ok]
        if not bad:
            return replies
        if self.on_refusal == "retry":
            for attempt in range(1, self.refusal_retries + 1):
                log.info("%s: %d sample(s) %s (%s); asking again (attempt %d of %d)", self.name, len(bad),
                         replies[bad[0]].outcome, replies[bad[0]].reason, attempt, self.refusal_retries)
                again = await self._samples(msgs, p, [indices[j] for j in bad], attempt=attempt)
                for j, r in zip(bad, again):
                    replies[j] = r
                bad = [j for j in bad if not replies[j].ok]
                if not bad:
                    break
        elif self.on_refusal == "fallback_model" and self.fallback is not None:
            log.info("%s: %d sample(s) %s (%s); asking the fallback %s", self.name, len(bad),
                     replies[bad[0]].outcome, replies[bad[0]].reason, self.fallback.name)
            again = await self.fallback._resolve(msgs, p, [indices[j] for j in bad])
            for j, r in zip(bad, again):
                replies[j] = r
        return replies

    async def _samples(self, msgs: list[Message], p: GenerateParams, indices: list[int], attempt: int) -> list[Reply]:
        """Samples `indices` of one attempt: from the cache where it has them, else fetched."""
        ident = self.backend.cache_identity()
        keys = [cache_key(ident, msgs, p, i, attempt) for i in indices]
        got: list[Reply | None] = [None] * len(indices)
        recorder = _RECORDERS.get().get(id(self))
        if self.cache is not None:
            for j, k in enumerate(keys):
                hit = self.cache.get(k)
                if hit is not None:
                    got[j] = Reply(hit["text"], hit.get("outcome", "ok"), hit.get("finish_reason", ""),
                                   hit.get("reason", ""), int(hit.get("reasoning_tokens") or 0), cached=True)
                    self.usage.cached += 1
                    if recorder is None:  # a recording pass is not usage (its cache hits are reset too)
                        self.usage.count_outcome(got[j].outcome)  # type: ignore[union-attr]
        missing = [j for j, r in enumerate(got) if r is None]
        if missing and recorder is not None:
            if attempt == 0:  # a retry after a refusal goes live: batch mode sends first attempts only
                recorder.append((msgs, p))
            raise DeferredCall()
        if missing:
            new = await self._fetch_once(tuple(keys[j] for j in missing), msgs, p,
                                         [indices[j] for j in missing], attempt)
            for j, r in zip(missing, new):
                got[j] = r
        return [r for r in got if r is not None]

    async def _fetch_once(self, flight: tuple[str, ...], msgs: list[Message], p: GenerateParams,
                          missing: list[int], attempt: int = 0) -> list[Reply]:
        """`_fetch`, but a call identical to one still in flight waits for that one's answer: the
        same call gives the same answer whether the cache or the backend serves it (five checkpoints'
        conversations opening with the same sampled auditor message used to get five different
        samples, and a replay from the cache then disagreed with four of them)."""
        running = self._inflight.get(flight)  # entries leave in `finally`: never one of a dead loop
        if running is not None:
            return list(await asyncio.shield(running))
        fut: asyncio.Future[list[Reply]] = asyncio.get_running_loop().create_future()
        self._inflight[flight] = fut
        try:
            # (attempt 0 is called as before: a test hook wraps `_fetch` with the old signature)
            new = await (self._fetch(msgs, p, missing, attempt) if attempt else self._fetch(msgs, p, missing))
            fut.set_result(new)
            return new
        except BaseException as e:
            fut.set_exception(e if isinstance(e, Exception) else BackendError(f"{self.name}: the shared call stopped"))
            fut.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        finally:
            self._inflight.pop(flight, None)

    @contextlib.contextmanager
    def recording(self, into: list[tuple[list[Message], GenerateParams]]) -> Iterator[None]:
        """While active, a call the cache cannot serve is appended to `into` and raises
        DeferredCall instead of reaching the backend: batch mode learns a stage's requests this way.
        Only for calls made in this context (and the tasks it starts): another step grading on the
        same client at the same time still reaches the backend."""
        token = _RECORDERS.set({**_RECORDERS.get(), id(self): into})
        try:
            yield
        finally:
            _RECORDERS.reset(token)

    async def generate_one(self, messages: MessagesLike, params: GenerateParams | None = None,
                           **overrides: Any) -> str:
        return (await self.generate(messages, params, **{**overrides, "n": 1}))[0]

    async def _fetch(self, msgs: list[Message], p: GenerateParams, indices: list[int], attempt: int = 0) -> list[Reply]:
        """New samples for the sample `indices` the cache lacks, each cached under its own index
        (a gap left by a deleted corrupt entry may sit before samples that are still cached) with
        its outcome: a refusal is cached as a refusal, never as an empty answer."""
        count = len(indices)
        ident = self.backend.cache_identity()
        if self.backend.supports_n or count == 1:
            comps = [await self._call_with_room(msgs, p.replace(n=count))]
        else:
            got = await asyncio.gather(*(self._call_with_room(msgs, p.replace(n=1)) for _ in range(count)),
                                       return_exceptions=True)
            failed = [g for g in got if isinstance(g, BaseException)]
            if failed:
                # The samples that did arrive were paid for: keep them, so a re-run asks only for the rest.
                for i, c in zip(indices, got):
                    if isinstance(c, Completion) and len(c.texts) == 1 and isinstance(c.texts[0], str):
                        self._store(cache_key(ident, msgs, p, i, attempt), self._replies_of([c])[0], c.usage)
                raise failed[0]
            comps = [c for c in got if isinstance(c, Completion)]
        replies = self._replies_of(comps)
        if len(replies) != count:
            raise BackendError(f"{self.name}: asked for {count} samples, got {len(replies)}")
        per = sum((c.usage for c in comps), start=Usage())
        for i, r in zip(indices, replies):
            self._store(cache_key(ident, msgs, p, i, attempt), r, per, share=count)
        return replies

    def _replies_of(self, comps: list[Completion]) -> list[Reply]:
        out = []
        for c in comps:
            share = c.usage.reasoning_tokens // max(1, len(c.texts))
            for j, text in enumerate(c.texts):
                finish = c.finish_reasons[j] if j < len(c.finish_reasons) else ""
                outcome = c.outcome(j)
                self.usage.count_outcome(outcome)
                out.append(Reply(text, outcome, finish, refusal_reason(c, j) if outcome in NOT_ANSWERS else "",
                                 share))
        return out

    def _store(self, key: str, r: Reply, usage: Any, share: int = 1) -> None:
        if self.cache is None:
            return
        self.cache.put(key, r.text, usage.input_tokens // max(1, share), usage.output_tokens // max(1, share),
                       outcome=r.outcome, finish_reason=r.finish_reason, reason=r.reason,
                       reasoning_tokens=r.reasoning_tokens)

    async def _call_with_room(self, msgs: list[Message], p: GenerateParams) -> Completion:
        """`_call`, and for a model that may think, a starved reply (empty, or cut off after
        thinking) asked again with a larger output limit, up to ROOM_RETRIES times. Still empty
        after that: a BackendError that says why (never an empty text the caller would read as
        "no verdict" or "unscored"). A reply with text but still cut off is returned as it is."""
        comp = await self._call(msgs, p)
        if not self.backend.may_think:
            return comp
        first, tries = p.max_tokens, 0
        for tries in range(1, ROOM_RETRIES + 1):
            why = starved(comp, first)
            if why is None or p.max_tokens >= MAX_ROOM:
                tries -= 1
                break
            bigger = more_room(p, comp)
            log.info("%s: %s; asking again with max_tokens %d instead of %d", self.name, why, bigger, p.max_tokens)
            p = p.replace(max_tokens=bigger)
            comp = await self._call(msgs, p)
        why = starved(comp, first)
        if why is not None and any(not t.strip() for t in comp.texts):
            raise BackendError(
                f"{self.name}: {why}, after asking {tries} more times with more room (answer limit "
                f"{first} -> {p.max_tokens} tokens): the model spends its output on thinking; lower its "
                f"reasoning_effort / thinking_budget or raise thinking_room in the model's spec")
        return comp

    async def _call(self, msgs: list[Message], p: GenerateParams) -> Completion:
        t0 = time.monotonic()
        if self.budget is None:
            comp = await self._call_backend(msgs, p)
            self._account(comp, None, time.monotonic() - t0)
            return self._checked(comp)
        # Reserve the worst case before sending (raises BudgetExceeded), settle at the real usage.
        # Once a call was refused, none starts under the same limit: the stage is stopping, and a call
        # begun while it stops would be cancelled after it was sent (paid for, but neither counted nor kept).
        stop = self._budget_stop
        try:
            if stop is not None and stop[0] is self.budget and stop[1] == self.budget.max_usd:
                raise BudgetExceeded(stop[2])
            # The worst case includes the thinking room: thinking is billed as output.
            held = self.budget.reserve(self.name, sum(len(m.content) for m in msgs) // 4,
                                       (p.max_tokens + self.backend.thinking_room()) * p.n)
        except BudgetExceeded as e:
            self._budget_stop = (self.budget, self.budget.max_usd, str(e))
            await self.budget.drain()  # calls already paid for finish and get cached before the stop
            self.budget.save()  # the ledger with them in it
            raise
        try:
            comp = await self._call_backend(msgs, p)
        except BaseException:
            self.budget.release(held)
            raise
        # Output tokens include the thinking (billed as output); the record says how many.
        usd = self.budget.settle(held, comp.usage.input_tokens, comp.usage.output_tokens)
        self._account(comp, usd, time.monotonic() - t0)
        return self._checked(comp)

    def _account(self, comp: Completion, usd: float | None, latency_s: float) -> None:
        """Count a completed backend call and emit its record: paid for, whatever it holds."""
        if usd is None:
            from traitforge.llm.pricing import estimate_cost

            usd = estimate_cost(self.name, comp.usage.input_tokens, comp.usage.output_tokens, self.prices_file)
        u = self.usage
        u.calls += 1
        u.input_tokens += comp.usage.input_tokens
        u.output_tokens += comp.usage.output_tokens
        u.reasoning_tokens += comp.usage.reasoning_tokens
        u.estimated += bool(comp.usage.estimated)
        if usd is None:
            u.unpriced += 1
        else:
            u.cost_usd += usd
        u.seq += 1
        if self.sink is not None:
            rec = CallRecord.of(self.name, comp, cost_usd=usd, latency_s=latency_s) \
                if all(isinstance(t, str) for t in comp.texts) else CallRecord(self.name, cost_usd=usd)
            rec.counter, rec.seq = u.id, u.seq
            try:
                self.sink(rec)
            except OSError as e:  # the ledger is a record of the call, not the call: keep going, say so
                log.warning("%s: could not write the call's usage record: %s", self.name, e)

    def _checked(self, comp: Completion) -> Completion:
        if any(not isinstance(t, str) for t in comp.texts):
            raise BackendError(f"{self.name}: backend returned a non-text completion")
        return comp

    async def _call_backend(self, msgs: list[Message], p: GenerateParams) -> Completion:
        est_tokens = sum(len(m.content) for m in msgs) // 4 + p.max_tokens * p.n
        attempt = 0
        while True:
            await self.limiter.acquire(est_tokens)
            try:
                if self._batcher is not None:
                    coro = self._batcher.submit(msgs, p)
                else:
                    coro = self.backend.generate(msgs, p)
                # A little past the limit: a network backend's own timeout (the same figure) fires first
                # and knows which server hung; this one catches a backend that hangs past its own.
                comp = await asyncio.wait_for(coro, timeout=self.timeout_s * 1.05 + 0.5)
                if comp.headers:
                    self.limiter.update_from_headers(comp.headers)  # the provider's own view of our limits
            except (RetryableError, asyncio.TimeoutError, TimeoutError) as e:
                attempt += 1
                retry_after = getattr(e, "retry_after", None)
                delay = retry_after or min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1))
                if retry_after or getattr(e, "status", None) == 429:
                    # A rate limit binds every caller of this model: all of them pause, not just this one.
                    self.limiter.cool_down(delay)
                if attempt > self.max_retries:
                    what = "timed out" if not isinstance(e, RetryableError) else str(e)
                    raise BackendError(f"{self.name}: gave up after {attempt} attempts: {what}") from None
                await asyncio.sleep(delay * (0.5 + random.random()))
                continue
            finally:
                self.limiter.release()
            return comp

    # --- structured --------------------------------------------------------------------
    def json_request(self, messages: MessagesLike, schema: type[BaseModel] | dict[str, Any],
                     params: GenerateParams | None = None, **overrides: Any) -> tuple[list[Message], GenerateParams]:
        """The first request `generate_json` makes: the schema as a response format where the
        backend takes one, else as an instruction. Batch mode sends this same request."""
        msgs = as_messages(messages)
        js = schema_of(schema)
        p = self._params(params, {**overrides, "n": 1})
        if self.backend.supports_json_schema:
            return msgs, p.replace(json_schema=js)
        return msgs[:-1] + [Message(msgs[-1].role, msgs[-1].content + "\n\n" + json_instruction(js))], p

    async def generate_json(self, messages: MessagesLike, schema: type[T] | dict[str, Any], *,
                            reasks: int = 2, params: GenerateParams | None = None, **overrides: Any) -> Any:
        """A validated JSON reply (a pydantic instance if `schema` is a model). Invalid JSON gets a
        re-ask that quotes the error; after `reasks` failures a BackendError names the problem."""
        msgs, p = self.json_request(messages, schema, params, **overrides)
        error = ""
        for _ in range(reasks + 1):
            text = (await self.generate(msgs, p))[0]
            try:
                return validate(extract_json(text), schema)
            except ValueError as e:
                error = str(e)
                msgs = msgs + [Message("assistant", text), Message(
                    "user", f"That reply was not valid: {error}. Reply again with only the JSON.")]
        raise BackendError(f"{self.name}: no valid JSON after {reasks + 1} tries: {error}")

    async def aclose(self) -> None:
        await self.backend.aclose()


R = TypeVar("R")


def run_closing(coro: Coroutine[Any, Any, R], *llms: "LLM | None") -> R:
    """asyncio.run(coro), then close the LLMs' SDK clients inside that same loop: their connection
    pools belong to it, and a pool left open is closed later by the garbage collector on a dead loop
    ("Task exception was never retrieved ... Event loop is closed"). The next run makes new clients."""
    async def main() -> R:
        try:
            return await coro
        finally:
            await close_all(llms)
    return asyncio.run(main())


async def gather_or_cancel(coros: Sequence[Coroutine[Any, Any, Any]]) -> list[Any]:
    """asyncio.gather, but when one fails the others are cancelled at once (not left running)."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def close_all(llms: Sequence["LLM | None"]) -> None:
    """Close each distinct LLM once, inside the running loop (see run_closing)."""
    for llm in {id(x): x for x in llms if x is not None}.values():
        await llm.aclose()

