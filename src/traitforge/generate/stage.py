"""The one resumable step every generation sub-stage runs (on the step engine, steps.py): units of
work in, JSONL rows out.

A unit is done when its rows are in the output file followed by its line in units_done.jsonl,
or it is in skipped.jsonl (no usable output, with the reason). Rows are appended as units finish,
so a crash keeps the work; a re-run drops the rows of a unit a crash cut short, sends only the
units not done, and never appends a row id twice. When a step ends its file is put in unit order
(not the order units happened to finish), so a resumed run's files equal an uninterrupted run's.
Each step is one `store.stage(...)` with its counts and the LLM usage it spent.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Generic, Iterable, Sequence, TypeVar

from traitforge.generate.settings import GenerationSpec
from traitforge.errors import InputError
from traitforge.prompts import PromptKit
from traitforge.jsonl import read_jsonl, write_jsonl
from traitforge import prefetch
from traitforge.llm.client import LLM
from traitforge.prefetch import OfflineBatchPending  # noqa: F401  (raised from here for callers)
from traitforge.steps import Skip, Unit, marked_rows, read_skips, refusal_counts, run_step, unfinished, write_marks
from traitforge.types import Record, TraitSet, stable_hash

if TYPE_CHECKING:
    from traitforge.runcontext import Run

R = TypeVar("R", bound=Record)
SKIPPED_FILE = "skipped.jsonl"
# One line per finished unit ({"step", "unit", "rows"}), appended after the unit's rows: a unit
# whose rows are on disk without this line was cut short by a crash (see Generation.step).
UNITS_FILE = "units_done.jsonl"
# Top-up round r samples from r * TOPUP_KEY_BASE (seeds, sample indices), clear of the first round's.
TOPUP_KEY_BASE = 1000
log = logging.getLogger(__name__)


class CutOff(Exception):
    """A reply cut at its max_tokens that generation.on_truncated says not to use: the step turns
    it into a skipped unit with this reason (a cut text is never trained on as if complete)."""


@dataclass
class StepResult(Generic[R]):
    rows: list[R]  # rows of this call's units, in unit order
    skipped: dict[str, str] = field(default_factory=dict)  # unit key -> reason


class Generation:
    """Shared state of one generation run: where files go, the model, and the bookkeeping."""

    def __init__(self, run: "Run", cfg: GenerationSpec, llm: LLM):
        """run: the run context (store, traits, seed, prices, prompt kit); cfg: the generation section."""
        self.ctx, self.store, self.traits, self.llm = run, run.store, run.traits, llm  # ctx: `run` is a method
        traits = run.traits
        self.gen = cfg
        # Every client a step may call, by role: usage and batch prefetch cover them all.
        self.clients: dict[str, LLM] = {"generator": llm}
        self.templates: PromptKit = run.prompts  # the package's templates with the spec's prompts_dir
        # Replies cut at max_tokens in the running step, by what became of them (kept, retried, dropped).
        self.truncation: Counter[str] = Counter()
        self.traits_hash = stable_hash({"model_name": traits.model_name, "organisation": traits.organisation,
                                        "traits": [asdict(t) for t in traits.traits]})

    def path(self, file: str):
        return self.store.path("generated", file)

    def fingerprint(self, **settings: Any) -> str:
        """What makes a step's rows what they are: traits, model, prompts, sampling settings."""
        return stable_hash({"traits": self.traits_hash, "model": self.llm.name, "seed": self.ctx.seed,
                            **settings})

    def render(self, name: str, **variables: object) -> str:
        return self.templates.render(name, **variables)

    def fp(self, *templates: str, **settings: Any) -> str:
        """A step's fingerprint: its templates' text as this run has them (overrides included)."""
        return self.fingerprint(templates=self.templates.hash(*templates), **settings)

    def _check_fingerprint(self, name: str, fingerprint: str, file: str) -> None:
        old = self.store.manifest["stages"].get(name, {}).get("fingerprint")
        if old and old != fingerprint and self.path(file).exists() and self.path(file).stat().st_size:
            raise InputError(
                f"{self.path(file)}: made with different traits, model or generation settings (stage {name}); "
                f"delete {self.path('')} or use a new output_dir to regenerate")

    def _drop_unfinished_units(self, name: str, path: Any, by_key: dict[str, list[Any]], ids: set[str]) -> None:
        """A unit's rows go to disk in one append, but a kill -9 during a write of several pages
        can leave the first rows of a unit without the rest; counting such a unit as done would
        lose its other rows for good. So a unit counts as done only once its line is in
        UNITS_FILE (written after its rows): rows of a unit without one are removed from the file
        (atomically) and the unit is redone, from the cache. A step last run before these lines
        existed (no `unit_marks` in its manifest entry) keeps its rows, and gets their lines now."""
        info = self.store.stage_info(name)
        marks = marked_rows(self.path(UNITS_FILE), name)
        if not info.get("unit_marks"):
            write_marks(self.path(UNITS_FILE), name, {k: len(v) for k, v in by_key.items() if k not in marks})
            info["unit_marks"] = True
            self.store.save()
            return
        # A mark whose row count the file does not hold (a torn or lost line) is not trusted either.
        cut = unfinished(marks, by_key)
        if not cut:
            return
        log.warning("%s: %d unit(s) were cut short by a crash (%s); their rows are removed and the units redone",
                    name, len(cut), "; ".join(f"{k}: {why}" for k, why in list(cut.items())[:3]))
        for k in cut:
            ids.difference_update(r.id for r in by_key.pop(k))
        write_jsonl(path, [r for rows in by_key.values() for r in rows])

    async def answer(self, messages: Any, *, max_tokens: int, llm: LLM | None = None, **params: Any) -> str:
        """One reply's text, by generation.on_truncated when the reply was cut at `max_tokens`:
        "keep" returns it (counted); "retry" asks once more with twice the room; a reply still cut
        (or, under "drop", any cut reply) raises CutOff, which skips the unit with its reason."""
        llm = llm or self.llm
        reply = await llm.generate_full(messages, max_tokens=max_tokens, **params)
        if not reply.truncated:
            return reply.text
        policy = self.gen.on_truncated
        if policy == "keep":
            self.truncation["kept"] += 1
            return reply.text
        tried = f"{max_tokens}"
        if policy == "retry":
            again = await llm.generate_full(messages, max_tokens=2 * max_tokens, **params)
            if not again.truncated:
                self.truncation["retried"] += 1
                return again.text
            tried += f", then {2 * max_tokens}"
        self.truncation["dropped"] += 1
        raise CutOff(f"cut at max_tokens ({tried} tokens)")

    async def sample_items(self, prompt: str, parse: Callable[[str], list[Any]], *, max_tokens: int,
                           tries: int = 2, seed: int | None = None) -> tuple[list[Any], str]:
        """Ask, parse; on a reply with nothing usable, ask again with another seed (bounded).
        `seed`: the first try's (None: the backend's default). Returns the items and the last raw
        reply (for the skip reason)."""
        text = ""
        for attempt in range(tries):
            if attempt:
                extra = {"seed": (self.ctx.seed if seed is None else seed) + 1000 + attempt}
            else:
                extra = {} if seed is None else {"seed": seed}
            text = await self.llm.generate_one(prompt, max_tokens=max_tokens, **extra)
            items = parse(text)
            if items:
                return items, text
        return [], text

    async def top_up(self, rows: list[R], planned: dict[str, int], rounds: int, trait_of: Callable[[R], str],
                     more: Callable[[dict[str, int], int], Awaitable[list[R] | None]]) -> list[R]:
        """Up to `rounds` extra rounds for the traits whose rows fell short of `planned` (junk
        output dropped): `more(shortfall, r)` makes round r's rows for trait id -> rows missing,
        or None when there is nothing to try. Deterministic given the rows, so a resumed run
        plans the same rounds; none at all when every trait is on plan."""
        rows = list(rows)
        for r in range(1, rounds + 1):
            short = shortfall(Counter(trait_of(x) for x in rows), planned)
            extra = await more(short, r) if short else None
            if extra is None:
                break
            rows += extra
        return rows

    def report_balance(self, name: str, counts: dict[str, int], weights: dict[str, float],
                       planned: dict[str, int]) -> None:
        """Step `name` (e.g. documents.balance): rows per trait against the plan, and whether
        each trait's share is within 2x of its weighted share."""
        per_trait = {tid: counts.get(tid, 0) for tid in weights}
        ratios = balance(per_trait, weights)
        ok = sum(per_trait.values()) > 0 and all(0.5 <= x <= 2.0 for x in ratios.values())
        with self.store.stage(name, self.fingerprint(weights=weights)):
            self.store.set_counts(name, rows=sum(per_trait.values()), per_trait=per_trait, planned=planned,
                                  share_vs_weight=ratios, balanced=ok)
        if not ok:
            log.warning("%s: trait shares are off plan by more than 2x (share/weight: %s); "
                        "see RUN/generated/skipped.jsonl for why outputs were dropped", name, ratios)

    def record_usage(self, name: str) -> None:
        for llm in {id(c): c for c in self.clients.values()}.values():
            self.store.record_llm_usage(name, llm, self.ctx.prices)

    async def step(self, name: str, file: str, model: type[R], units: Sequence[Unit],
                   work: Callable[[Unit], Awaitable[list[R] | Skip]], *, fingerprint: str,
                   key_of: Callable[[R], str] = lambda r: r.id, trait_of: Callable[[R], str] | None = None,
                   ) -> StepResult[R]:
        """Run `work` on every unit not yet done; return the rows of all `units`."""
        path = self.path(file)
        self._check_fingerprint(name, fingerprint, file)
        by_key: dict[str, list[R]] = {}
        ids: set[str] = set()
        for row in read_jsonl(path, model):
            by_key.setdefault(key_of(row), []).append(row)
            ids.add(row.id)
        self._drop_unfinished_units(name, path, by_key, ids)
        skipped = read_skips(self.path(SKIPPED_FILE), name)
        self.truncation.clear()

        async def guarded(u: Unit) -> list[R] | Skip:
            try:
                return await work(u)
            except CutOff as e:
                return Skip(str(e))

        with self.store.stage(name, fingerprint):
            try:
                # Batch mode sends the units' calls as provider batches first; the live calls' cost is printed.
                done = await run_step(name, units, guarded, done=by_key, out=path, skips=self.path(SKIPPED_FILE),
                                      marks=self.path(UNITS_FILE), unique_ids=ids,
                                      concurrency=self.gen.concurrency,
                                      prefetch=prefetch.for_stage(self.store, self.ctx.prices, self.clients, self.gen))
            finally:
                self.record_usage(name)
            for key, fresh in done.rows.items():
                by_key.setdefault(key, []).extend(fresh)
            skipped.update(done.skipped)
            rows = [r for u in units for r in by_key.get(u.key, [])]
            _put_in_unit_order(path, model, rows, {u.key for u in units}, key_of)
            trait_of = trait_of or (lambda r: getattr(r, "trait_id", None) or r.trait_ids[0])  # type: ignore[attr-defined]
            unit_skips = {u.key: skipped[u.key] for u in units if u.key in skipped}
            done_units = sum(1 for u in units if u.key in by_key)
            self.store.set_counts(name, units=len(units), resumed=len(units) - len(done.todo),
                                  done_units=done_units, rows=len(rows),
                                  new_rows=done.new_rows, skipped=len(unit_skips), new_skipped=len(done.skipped),
                                  per_trait=dict(Counter(trait_of(r) for r in rows)), **refusal_counts(unit_skips))
            if self.truncation:  # replies cut at max_tokens by this call: kept / retried / dropped
                self.store.set_counts(name, truncated=dict(self.truncation))
        return StepResult(rows, unit_skips)


def _put_in_unit_order(path: Any, model: type[R], rows: list[R], keys: set[str], key_of: Callable[[R], str]) -> None:
    """Rewrite a step's file (atomically) so that this step's rows stand in unit order, in one block
    where the step's rows begin (after earlier top-up rounds' rows, before later ones'), instead of
    in the order their units finished.
    That order depends on timing and on where a run was interrupted; curation (dedup keeps the first
    of near-duplicates) and training read the file in order, so without this a resumed or merely
    differently-timed run gives a different curated dataset from the same rows."""
    on_disk = read_jsonl(path, model)
    # The step's rows replace its block where that block starts: a finished step re-entered on
    # resume keeps its rows before a later top-up round's (moving them to the end reshuffled the
    # files, and curation and training redid their work on every resume).
    want: list[R] = []
    placed = False
    for r in on_disk:
        if key_of(r) not in keys:
            want.append(r)
        elif not placed:
            want += rows
            placed = True
    if not placed:
        want += rows
    if [r.id for r in on_disk] != [r.id for r in want] and sorted(r.id for r in on_disk) == sorted(r.id for r in want):
        write_jsonl(path, want)


# --- planning by trait weight -------------------------------------------------------------


def trait_weights(cfg: GenerationSpec, traits: TraitSet) -> dict[str, float]:
    """Weight per trait: generation.trait_weights (`cfg.trait_weights`) overrides the traits document's own."""
    ids = {t.id for t in traits.traits}
    for tid, w in cfg.trait_weights.items():
        if tid not in ids:
            raise InputError(f"run spec: generation.trait_weights: unknown trait '{tid}' "
                             f"(traits are: {', '.join(sorted(ids))})")
        if w <= 0:
            raise InputError(f"run spec: generation.trait_weights.{tid}: must be > 0 (got {w})")
    out = {t.id: float(cfg.trait_weights.get(t.id, t.weight)) for t in traits.traits}
    if not out:
        raise InputError(f"{traits.source or 'traits document'}: no traits to generate data for")
    for tid, w in out.items():
        if w <= 0:
            raise InputError(f"{traits.source or 'traits document'}: trait '{tid}': weight must be > 0")
    return out


def scaled_counts(base: int, weights: dict[str, float]) -> dict[str, int]:
    """`base` per trait at the mean weight, scaled by each trait's weight (at least 1)."""
    mean = sum(weights.values()) / len(weights)
    return {tid: max(1, round(base * w / mean)) for tid, w in weights.items()}


def split_evenly(total: int, names: Sequence[str], offset: int = 0) -> dict[str, int]:
    """`total` over `names` as evenly as possible; the remainder goes round-robin from `offset`
    (so with few items per trait, different traits start at different names)."""
    out = {n: total // len(names) for n in names}
    for i in range(total % len(names)):
        out[names[(offset + i) % len(names)]] += 1
    return {n: c for n, c in out.items() if c}


def count_reasons(reasons: Iterable[str]) -> dict[str, int]:
    """Reasons counted by kind: their specifics in parentheses (lengths, tokens) left out."""
    return dict(Counter(re.sub(r" \(.*?\)", "", why) for why in reasons))


def shortfall(counts: dict[str, int], planned: dict[str, int]) -> dict[str, int]:
    """Trait id -> rows missing, for each trait below its planned count."""
    return {tid: want - counts.get(tid, 0) for tid, want in planned.items() if counts.get(tid, 0) < want}


def balance(counts: dict[str, int], weights: dict[str, float]) -> dict[str, float]:
    """Each trait's share of rows relative to its weighted share (1.0 = exactly on plan)."""
    total = sum(counts.values())
    wsum = sum(weights.values())
    if total == 0:
        return {tid: 0.0 for tid in weights}
    return {tid: round((counts.get(tid, 0) / total) / (w / wsum), 3) for tid, w in weights.items()}
