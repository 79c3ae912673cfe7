"""A hard spending limit per run, and the cost estimate printed before a stage starts (before
each generation step's live calls and each batch round, where a budget is set or the model has a price).

`Budget` is shared by every `LLM` of a run (`llm.budget = budget`): the client reserves a call's
worst-case cost (prompt chars/4 in, max_tokens out) before each backend request and settles it at
the real token counts after; cache hits never reach the backend, so they cost nothing. Provider
batches in flight count at their estimate (the ledger's "batches" entries not yet collected),
so a restarted process sees them too. Spent money is kept in manifest["budget"]["spent_usd"]; a call
that would take the total past `max_usd` raises `BudgetExceeded` before it is sent. Rows written so
far stay; raising budget.max_usd and re-running resumes where it stopped.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence, TextIO

from traitforge.errors import BudgetExceeded, InputError
from traitforge.llm.pricing import estimate_cost

if TYPE_CHECKING:
    from traitforge.llm.base import GenerateParams
    from traitforge.llm.client import LLM, MessagesLike
    from traitforge.llm.ledger import Ledger


@dataclass
class Reservation:
    model: str
    usd: float
    batch: bool = False


def batches_in_flight_usd(store: "Ledger | None") -> float:
    """Estimated cost of provider batches submitted but not yet collected (all stages)."""
    if store is None:
        return 0.0
    return sum(float(e.get("estimate_usd") or 0.0) for entries in store.manifest.get("batches", {}).values()
               for e in entries if not e.get("collected"))


class Budget:
    def __init__(self, max_usd: float | None, *, store: "Ledger | None" = None,
                 prices_file: str | None = None, save_every_s: float = 2.0):
        self.max_usd = max_usd
        self.store = store
        self.prices_file = prices_file
        self.save_every_s = save_every_s
        ledger = store.manifest.get("budget", {}) if store is not None else {}
        # The ledger also holds calls whose stage crashed before recording its usage.
        self.spent_usd = max(float(ledger.get("spent_usd", 0.0)), store.total_cost() if store else 0.0)
        self.reserved_usd = 0.0  # live calls in flight, at their worst case
        self.in_flight = 0  # live calls reserved and not yet settled
        self._lock = threading.Lock()
        self._last_save = 0.0

    # --- money -----------------------------------------------------------------------
    def cost(self, model: str, input_tokens: int, output_tokens: int, *, batch: bool = False,
             calls: int | None = None) -> float:
        usd = estimate_cost(model, input_tokens, output_tokens, self.prices_file, batch=batch, calls=calls)
        if usd is None:
            if self.max_usd is not None:
                raise InputError(f"budget.max_usd is set but model '{model}' has no price: add it to "
                                 f"prices_file ({self.prices_file or 'none set'}) or drop the budget")
            return 0.0
        return usd

    @property
    def in_flight_usd(self) -> float:
        return self.reserved_usd + batches_in_flight_usd(self.store)

    @property
    def committed_usd(self) -> float:
        return self.spent_usd + self.in_flight_usd

    @property
    def remaining_usd(self) -> float | None:
        return None if self.max_usd is None else max(0.0, self.max_usd - self.committed_usd)

    def check(self, usd: float, what: str) -> None:
        """Raise BudgetExceeded if spending `usd` more could take the run past max_usd."""
        if self.max_usd is None or usd <= 0:
            return
        committed = self.committed_usd
        if committed + usd > self.max_usd + 1e-12:
            self.save()
            raise BudgetExceeded(
                f"budget.max_usd=${self.max_usd:.4f} reached: {what} (~${usd:.4f}) would bring the run to "
                f"${committed + usd:.4f} (spent ${self.spent_usd:.4f}, in flight ${self.in_flight_usd:.4f}); "
                f"raise budget.max_usd and re-run to resume")

    def reserve(self, model: str, input_tokens: int, output_tokens: int, *, batch: bool = False,
                what: str = "the next call") -> Reservation:
        usd = self.cost(model, input_tokens, output_tokens, batch=batch, calls=1)  # one request: its tier
        with self._lock:
            self.check(usd, f"{what} to {model}")
            self.reserved_usd += usd
            self.in_flight += 1
        return Reservation(model, usd, batch)

    def release(self, r: Reservation) -> None:
        with self._lock:
            self.reserved_usd = max(0.0, self.reserved_usd - r.usd)
            self.in_flight -= 1

    async def drain(self, poll_s: float = 0.01) -> None:
        """Wait until calls already sent have settled. The client does this before letting
        BudgetExceeded end a stage, so calls that were paid for finish and land in the cache
        (a resumed run gets them free) instead of being cancelled mid-flight."""
        import asyncio

        while self.in_flight > 0:
            await asyncio.sleep(poll_s)

    def settle(self, r: Reservation, input_tokens: int, output_tokens: int) -> float:
        """Swap the reservation for the real cost; a reply without token counts costs its estimate."""
        usd = r.usd if input_tokens == 0 and output_tokens == 0 else self.cost(
            r.model, input_tokens, output_tokens, batch=r.batch, calls=1)
        with self._lock:
            self.reserved_usd = max(0.0, self.reserved_usd - r.usd)
            self.in_flight -= 1
            self.spent_usd += usd
        self._maybe_save()
        return usd

    def add_spent(self, usd: float) -> None:
        """Money spent outside a reservation (a collected batch); saved with the next manifest write."""
        with self._lock:
            self.spent_usd += usd
            if self.store is not None:
                self.store.manifest.setdefault("budget", {})["spent_usd"] = round(self.spent_usd, 8)

    # --- persistence -----------------------------------------------------------------
    def _maybe_save(self) -> None:
        if time.monotonic() - self._last_save >= self.save_every_s:
            self.save()

    def save(self) -> None:
        if self.store is None:
            return
        self.store.manifest["budget"] = {"max_usd": self.max_usd, "spent_usd": round(self.spent_usd, 8)}
        self.store.save()
        self._last_save = time.monotonic()


# --- estimates before a stage -------------------------------------------------------------------


@dataclass
class StageEstimate:
    stage: str
    model: str
    requests: int  # prompts
    samples: int  # requests x n
    cached: int  # samples already in the cache (free)
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    basis: str  # where the output-token figure came from
    batch: bool = False

    def line(self, budget: Budget | None = None) -> str:
        cost = "unknown cost (no price)" if self.cost_usd is None else f"~${self.cost_usd:.4f}"
        s = (f"estimate {self.stage}: {self.model}: {self.requests} requests, {self.samples - self.cached} samples "
             f"to fetch ({self.cached} cached), ~{self.input_tokens} in / ~{self.output_tokens} out tokens, "
             f"{cost}{' at batch price' if self.batch else ''} [{self.basis}]")
        if budget is not None and budget.max_usd is not None:
            s += f"; budget left ${budget.remaining_usd:.4f} of ${budget.max_usd:.4f}"
            if self.cost_usd is not None and self.cost_usd > (budget.remaining_usd or 0.0):
                s += " (estimate is over: the stage will stop when the budget is reached)"
        return s


def measured_averages(store: "Ledger | None", model: str, stage: str | None = None) -> tuple[float, float] | None:
    """(input, output) tokens per backend call for `model` so far in this run (in `stage` only,
    when given), if any calls were made."""
    if store is None:
        return None
    usage = store.manifest.get("usage", {})
    calls = tin = tout = 0
    for models in ([usage.get(stage, {})] if stage is not None else usage.values()):
        u = models.get(model)
        if u:
            calls += u.get("calls", 0)
            tin += u.get("input_tokens", 0)
            tout += u.get("output_tokens", 0)
    return (tin / calls, tout / calls) if calls else None


def estimate_stage(llm: "LLM", requests: Sequence[tuple["MessagesLike", "GenerateParams | None"]], *,
                   stage: str, store: "Ledger | None" = None, prices_file: str | None = None,
                   batch: bool = False, step: str | None = None) -> StageEstimate:
    """Requests, tokens and cost of the samples not yet cached. Input tokens: prompt chars / 4.
    Output tokens: this model's measured average per call in `step` so far (when given), else in
    the run so far (capped at max_tokens), else max_tokens (an upper bound)."""
    from traitforge.llm.cache import cache_key
    from traitforge.llm.client import as_messages

    measured = step is not None and measured_averages(store, llm.name, step)
    where = "this step"
    if not measured:
        measured, where = measured_averages(store, llm.name), "this run"
    ident = llm.backend.cache_identity()
    samples = cached = tin = tout = 0
    for messages, params in requests:
        msgs = as_messages(messages)
        p = llm._params(params, {})
        prompt_tokens = sum(len(m.content) for m in msgs) // 4 + 1
        for i in range(p.n):
            samples += 1
            if llm.cache is not None and llm.cache.get(cache_key(ident, msgs, p, i)) is not None:
                cached += 1
                continue
            tin += prompt_tokens
            limit = p.max_tokens + llm.backend.thinking_room()  # what the call may spend, thinking included
            tout += min(limit, round(measured[1])) if measured else limit
    basis = (f"output {measured[1]:.0f} tokens/call measured in {where}" if measured
             else "output at max_tokens (upper bound, nothing measured yet)")
    cost = estimate_cost(llm.name, tin, tout, prices_file, batch=batch, calls=samples - cached)
    return StageEstimate(stage, llm.name, len(requests), samples, cached, tin, tout, cost, basis, batch)


def estimate_count(model: str, n_requests: int, *, max_tokens: int, prompt_chars: int | None = None,
                   n: int = 1, stage: str, store: "Ledger | None" = None, prices_file: str | None = None,
                   batch: bool = False) -> StageEstimate:
    """The same estimate when only the number of requests is known (prompts not built yet):
    input from `prompt_chars` or this model's measured average, output as in `estimate_stage`."""
    measured = measured_averages(store, model)
    per_in = (prompt_chars // 4 + 1) if prompt_chars is not None else (round(measured[0]) if measured else 0)
    per_out = min(max_tokens, round(measured[1])) if measured else max_tokens
    samples = n_requests * n
    basis = (f"output {measured[1]:.0f} tokens/call measured in this run" if measured
             else "output at max_tokens (upper bound, nothing measured yet)")
    if prompt_chars is None and not measured:
        basis += "; input unknown (0)"
    cost = estimate_cost(model, per_in * samples, per_out * samples, prices_file, batch=batch, calls=samples)
    return StageEstimate(stage, model, n_requests, samples, 0, per_in * samples, per_out * samples, cost, basis,
                         batch)


def costs_money(llm: "LLM", prices_file: str | None = None) -> bool:
    """Whether an estimate before live calls is worth a line: a budget is set, or the model has
    a price above zero (not the embedded or another local model, nor an unpriced one)."""
    budget = getattr(llm, "budget", None)
    if budget is not None and budget.max_usd is not None:
        return True
    return (estimate_cost(llm.name, 1_000_000, 1_000_000, prices_file) or 0.0) > 0.0


def announce_calls(llm: "LLM", n_calls: int, *, stage: str, max_tokens: int, prompt_chars: int | None = None,
                   store: "Ledger | None" = None, prices_file: str | None = None) -> str | None:
    """The estimate line for a stage that knows how many calls it will make (curation, evaluation),
    printed only when it is worth a line (see costs_money); returns it, or None."""
    if n_calls <= 0 or not costs_money(llm, prices_file):
        return None
    est = estimate_count(llm.name, n_calls, max_tokens=max_tokens, prompt_chars=prompt_chars, stage=stage,
                         store=store, prices_file=prices_file)
    return announce(est, getattr(llm, "budget", None))


def announce(est: StageEstimate, budget: Budget | None = None, file: TextIO | None = None) -> str:
    """Print the estimate line (stderr by default) and return it."""
    line = est.line(budget)
    print(line, file=file or sys.stderr, flush=True)
    return line


def attach(llms: Sequence[Any], budget: Budget) -> Budget:
    """Give every LLM of a run the same budget (the client checks `llm.budget` before each call)."""
    for llm in llms:
        llm.budget = budget
    return budget
