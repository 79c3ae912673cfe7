"""Before a step's live pass, in every stage: learn each unit's next request the cache cannot serve
(the step's own work, run against recording clients), print what those requests will cost, and in
batch mode send them first as provider batches, so the live pass is served from the cache.

Generation's steps, curation's judge steps and evaluation's grading steps call `before(...)` with
their units and the coroutine that does one unit; settings come from the stage's own section
(`batch`, `batch_poll_s`) and the spec's `prices_file`.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Literal, Sequence

from traitforge.errors import TraitforgeError
from traitforge.llm.client import LLM, DeferredCall
from traitforge.llm.errors import Refused
from traitforge.runstore import RunStore

# Batch mode: at most this many dependent calls per unit go through provider batches.
MAX_BATCH_ROUNDS = 8

Work = Callable[[Any], Awaitable[Any]]


class OfflineBatchPending(TraitforgeError):
    """Offline batch mode stops here until the written requests' results are imported."""


@dataclass
class Prefetch:
    store: RunStore
    clients: dict[str, LLM]  # every client a step may call, by role
    batch: bool | Literal["offline"] = False
    poll_s: float = 60.0
    prices_file: str | None = None

    async def before(self, name: str, units: Sequence[Any], work: Work) -> None:
        """Batch mode: prefetch the units' calls by provider batches; then print the estimate of
        whatever the live pass will still send (where money is at stake)."""
        if not units:
            return
        if self.batch:
            await self.by_batch(name, units, work)
        await self.announce_live(name, units, work)

    async def next_requests(self, units: Sequence[Any], work: Work, clients: dict[str, LLM], *,
                            tolerant: bool = False) -> dict[str, list[tuple[Any, Any]]]:
        """Run the units against recording clients: each unit's next request the cache cannot
        serve, by role (roles with none left out). `tolerant`: a unit that fails is left out
        (the real pass reports it) instead of failing this pass."""
        recorded: dict[str, list[tuple[Any, Any]]] = {role: [] for role in clients}

        async def probe(u: Any) -> None:
            try:
                await work(u)
            except DeferredCall:
                pass
            except Refused:  # a cached refusal: nothing to fetch (the real pass skips or scores the unit)
                pass
            except Exception:
                if not tolerant:
                    raise

        cached = {role: c.usage.cached for role, c in clients.items()}
        with contextlib.ExitStack() as stack:
            for role, c in clients.items():
                stack.enter_context(c.recording(recorded[role]))
            await asyncio.gather(*(probe(u) for u in units))
        for role, c in clients.items():
            c.usage.cached = cached[role]  # the real pass counts its cache hits; this one's are not usage
        return {role: reqs for role, reqs in recorded.items() if reqs}

    async def announce_live(self, name: str, units: Sequence[Any], work: Work) -> str | None:
        """Print one line with the estimate (requests, tokens, cost) of this step's live calls,
        where money is at stake: a budget is set or the model has a price (so the embedded model
        stays quiet). Each unit's next uncached request is recorded and counted once (a unit that
        goes on to make dependent calls costs more); output tokens per call come from this step's
        earlier runs, else the run's, else max_tokens. Returns the line, or None."""
        from traitforge.llm.budget import costs_money, estimate_stage

        clients = {role: c for role, c in self.clients.items() if costs_money(c, self.prices_file)}
        if not clients:
            return None
        lines = []
        for role, requests in (await self.next_requests(units, work, clients, tolerant=True)).items():
            llm = clients[role]
            est = estimate_stage(llm, requests, stage=name, store=self.store, prices_file=self.prices_file, step=name)
            est.basis += "; next call of each unit"
            lines.append(est.line(llm.budget))
        if not lines:
            return None
        line = " | ".join(lines)
        print(line, file=sys.stderr, flush=True)
        return line

    async def by_batch(self, name: str, units: Sequence[Any], work: Work) -> None:
        """Run the units against the recording clients to learn each unit's next request the
        cache cannot serve, send those as provider batches, and repeat until every unit is served
        from the cache (a unit with k dependent calls takes k rounds). The live pass after this
        makes no calls, except re-asks of failed items. Local and scripted models have no batch
        API: their calls stay live (batched locally)."""
        from traitforge.llm.batch.runner import batch_provider, prefetch_batch
        from traitforge.llm.budget import announce, estimate_stage

        offline = self.batch == "offline"
        clients = {role: c for role, c in self.clients.items() if offline or batch_provider(c) is not None}
        if not clients:
            return
        for round_ in range(MAX_BATCH_ROUNDS):
            pending = await self.next_requests(units, work, clients)
            if not pending:
                return
            if offline:
                self._export_offline(name, round_, pending, clients)
            for role, requests in pending.items():
                llm = clients[role]
                announce(estimate_stage(llm, requests, stage=f"{name} (batch round {round_ + 1})",
                                        store=self.store, prices_file=self.prices_file, batch=True), llm.budget)
                await prefetch_batch(llm, requests, self.store, name, poll_interval_s=self.poll_s,
                                     budget=llm.budget, prices_file=self.prices_file)

    def _export_offline(self, name: str, round_: int, pending: dict[str, list[tuple[Any, Any]]],
                        clients: dict[str, LLM]) -> None:
        from traitforge.llm.batch.offline import export_requests

        notes = []
        for role, requests in pending.items():
            llm, tag = clients[role], "" if role == "generator" else f".{role}"
            path = self.store.path("offline", f"{name}.round{round_ + 1}{tag}.requests.jsonl")
            n = export_requests(llm, requests, path)
            notes.append(f"{n} requests written to {path}; run them offline (e.g. python -m "
                         f"vllm.entrypoints.openai.run_batch -i {path} -o results.jsonl --model "
                         f"{llm.backend.model}), then `traitforge import-batch {self.store.root} results.jsonl"
                         + ("`" if role == "generator" else f" --role {role}`"))
        raise OfflineBatchPending(f"{name}: " + "; ".join(notes) + " and run this stage again")


def for_stage(store: RunStore, prices_file: str | None, clients: dict[str, LLM], section: Any) -> Prefetch:
    """The prefetch of a stage whose spec section has `batch` and `batch_poll_s`."""
    return Prefetch(store, clients, batch=getattr(section, "batch", False),
                    poll_s=getattr(section, "batch_poll_s", 60.0), prices_file=prices_file)
