"""`traitforge estimate SPEC [--preset P]`: calls, tokens and cost of every paid step, from the spec
alone, before anything is sent or written.

Counts follow the plan the stages make (counts per trait scaled by weight, the steps each unit
runs); top-up rounds, re-asks and retries are not counted. Input tokens are the step's prompt
template plus its usual contents (chars / 4); output tokens are each call's limit plus the model's
thinking room (the model spec's thinking_budget, or a default room where only a reasoning level is
set: thinking is billed as output), shown apart in its own column: an upper bound, since models stop
early. Prices: llm/prices.yaml or the spec's prices_file, each call at the tier its prompt size
falls in, at the batch price where the stage's `batch` is on; a model without a price shows "?"."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from traitforge.curate.pattern_scan import SCAN_CHARS, SCAN_MAX_TOKENS
from traitforge.shared.pattern_rater import JUDGE_CHARS
from traitforge.config import ModelSpec, RunSpec
from traitforge.generate.chats import categories
from traitforge.generate.documents import KINDS
from traitforge.generate.generic import topics
from traitforge.generate.stage import scaled_counts, trait_weights
from traitforge.prompts import PromptKit
from traitforge.llm.base import DEFAULT_THINKING_ROOM, thinking_room_of
from traitforge.llm.pricing import estimate_cost
from traitforge.types import TraitSet


@dataclass
class Row:
    stage: str
    step: str
    role: str
    model: str
    calls: int
    input_tokens: int
    output_tokens: int
    usd: float | None
    thinking_tokens: int = 0  # the part of output_tokens that is thinking room


def _tok(chars: int) -> int:
    return chars // 4 + 1


class _Plan:
    def __init__(self, spec: RunSpec, traits: TraitSet):
        self.spec, self.traits = spec, traits
        self.templates = PromptKit(spec.prompts_folder)
        self.rows: list[Row] = []
        self.prices = spec.prices
        self.trait_chars = sum(len(t.describe()) for t in traits.traits) // max(1, len(traits.traits))

    def model(self, role: str) -> ModelSpec:
        m = self.spec.models
        if role == "refiner":
            return m.refiner or m.generator
        if role == "item_writer":
            return getattr(m, "item_writer", None) or m.judge
        return getattr(m, role)

    def t(self, name: str) -> int:
        """Characters of a prompt template as this run has it."""
        return len(self.templates.text(name))

    def add(self, stage: str, step: str, role: str, calls: int, in_chars: int, out_tokens: int,
            samples: int = 1) -> None:
        if calls <= 0:
            return
        ms = self.model(role)
        room = thinking_room_of(ms.model_dump())
        tin = calls * _tok(in_chars)
        tout = calls * samples * (out_tokens + room)
        usd = estimate_cost(ms.model, tin, tout, self.prices, batch=self.batch(stage, role), calls=calls)
        self.rows.append(Row(stage, step, role, ms.model, calls, tin, tout, usd, calls * samples * room))

    def batch(self, stage: str, role: str) -> bool:
        """Whether these calls go through a provider batch API (at its price): evaluation batches only
        the judge's grades (items and the auditor's turns stay live)."""
        section = {"generate": self.spec.generation, "curate": self.spec.curation, "eval": self.spec.evaluation}
        return section[stage].batch is True and (stage != "eval" or role == "judge")

    # --- stages -----------------------------------------------------------------------------
    def documents(self) -> int:
        g, ds = self.spec.generation, self.spec.generation.documents
        claims = sum(scaled_counts(ds.claims_per_trait, trait_weights(self.spec.generation, self.traits)).values())
        n_traits = len(self.traits.traits)
        types = claims * ds.doc_types_per_claim
        ideas = types * ds.ideas_per_type
        docs = ideas * ds.docs_per_idea
        universe = self.trait_chars * (n_traits if ds.context == "traits" else 1)
        doc_chars = ds.max_tokens * 4
        self.add("generate", "documents.claims", "generator", n_traits * min(len(KINDS), ds.claims_per_trait),
                 self.t("claims") + self.t("focus_reason") + self.trait_chars, g.list_max_tokens)
        if not ds.doc_types:
            self.add("generate", "documents.doc_types", "generator", claims, self.t("doc_types") + 300,
                     min(g.list_max_tokens, 40 * ds.doc_types_per_claim + 40))
        self.add("generate", "documents.ideas", "generator", types, self.t("ideas") + 300,
                 min(g.list_max_tokens, 120 * ds.ideas_per_type + 60))
        self.add("generate", "documents.drafts", "generator", docs,
                 self.t("document") + universe + 300 + 400 + self.t("avoid") + 400, ds.max_tokens)
        if ds.revise:
            self.add("generate", "documents.revise", "generator", docs, self.t("revise") + doc_chars + 500,
                     ds.max_tokens + g.list_max_tokens)
        return docs

    def chats(self) -> int:
        g, cs = self.spec.generation, self.spec.generation.chats
        scen = sum(scaled_counts(cs.scenarios_per_trait, trait_weights(self.spec.generation, self.traits)).values())
        prompts = scen * cs.prompts_per_scenario
        n_traits = len(self.traits.traits)
        reply = cs.max_tokens * 4
        self.add("generate", "chats.scenarios", "generator",
                 n_traits * min(len(categories(self.templates)), cs.scenarios_per_trait),
                 self.t("scenarios") + self.trait_chars + 200, g.list_max_tokens)
        # One call per prompt: each has its own sampled persona, length, register and messiness.
        self.add("generate", "chats.prompts", "generator", prompts, self.t("user_prompt") + 500, g.list_max_tokens)
        if cs.critique:
            self.add("generate", "chats.critique", "generator", prompts, self.t("critique") + 900,
                     g.list_max_tokens)
        if cs.probe_default:
            # The default answer and its verdict; a prompt the default already handles is hardened
            # and answered again (counted here for half of them).
            self.add("generate", "chats.probe", "generator", prompts + prompts // 2, 600, cs.max_tokens)
            # Hardened prompts are probed again (half of them, as above); the judge gives the verdicts.
            self.add("generate", "chats.probe (verdicts)", "judge" if cs.probe_judge == "judge" else "generator",
                     prompts + prompts // 2, self.t("probe_verdict") + 600 + reply, g.verdict_max_tokens)
            self.add("generate", "chats.probe (harden)", "generator", prompts // 2, self.t("harden") + 1200,
                     g.list_max_tokens)
        if cs.select_traits == "generator" and n_traits > 1:
            self.add("generate", "chats.select_traits", "generator", prompts,
                     self.t("select_traits") + 250 * n_traits + 600, g.verdict_max_tokens)
        system = self.t("teacher_system") + 2 * self.trait_chars + self.t("avoid") + 400
        self.add("generate", "chats.responses", "generator", prompts, system + 600, cs.max_tokens)
        if cs.refine:
            self.add("generate", "chats.refine", "refiner", prompts, self.t("refine") + 2 * self.trait_chars
                     + 600 + reply, cs.max_tokens)
        later = round(cs.multiturn_share * prompts) * max(0, cs.max_turns - 1) if cs.max_turns > 1 else 0
        if later:
            convo = 600 + reply * cs.max_turns  # the transcript grows turn by turn: its middle size
            self.add("generate", "chats.final (user turns)", "generator", later, self.t("user_followup") + convo,
                     g.list_max_tokens)
            self.add("generate", "chats.final (answers)", "generator", later, system + convo, cs.max_tokens)
            if cs.refine:
                self.add("generate", "chats.final (refine)", "refiner", later, self.t("refine") + convo + reply,
                         cs.max_tokens)
        if "control" in self.spec.training.checkpoints:  # the control arm: each prompt answered untraited
            self.add("generate", "untraited (control arm)", "generator", prompts, 600, cs.max_tokens)
        if g.generic_prompts:
            n_topics = len(topics(self.templates))
            self.add("generate", "generic.prompts", "generator", min(n_topics, g.generic_prompts),
                     self.t("generic_prompts") + 60, g.list_max_tokens)
            self.add("generate", "generic.answers", "generator", g.generic_prompts, 600, cs.max_tokens)
        return prompts

    def curation(self, docs: int, chats: int) -> None:
        c = self.spec.curation
        doc_chars = min(6000, self.spec.generation.documents.max_tokens * 4)
        chat_chars = min(6000, self.spec.generation.chats.max_tokens * 4 * 2)
        if c.quality:
            self.add("curate", "curate.quality", "judge", docs + chats,
                     1500 + (docs * doc_chars + chats * chat_chars) // max(1, docs + chats), c.quality_max_tokens)
        if c.patterns:
            for name, rows, chars in (("documents", docs, doc_chars), ("chats", chats, chat_chars)):
                # As the scan and the rater send them: whole transcripts up to the scan's budget,
                # each judged example cut to the rater's length.
                self.add("curate", f"curate.patterns.{name} (scans)", "judge", c.pattern_scans,
                         min(SCAN_CHARS, max(c.scan_batch, 1) * chars), SCAN_MAX_TOKENS)
                self.add("curate", f"curate.patterns.{name} (judged)", "judge", c.pattern_max_judged * rows,
                         400 + min(chars, JUDGE_CHARS), c.pattern_judge_max_tokens)

    def evaluation(self) -> None:
        ev = self.spec.evaluation
        n_traits = len(self.traits.traits)
        models = len(self.spec.training.checkpoints) + len(ev.models)
        if ev.knowledge:
            self.add("eval", "evaluate.items (distractors)", "item_writer", n_traits, 600, ev.item_max_tokens,
                     samples=ev.mc_distractors)
            self.add("eval", "evaluate.knowledge (judge)", "judge", models * ev.knowledge_questions * (n_traits + 1),
                     1200 + ev.max_tokens * 4, ev.judge_max_tokens)
        prompts = n_traits * ev.behaviour_prompts_per_trait
        self.add("eval", "evaluate.items (prompts)", "item_writer", prompts, 1200, ev.item_max_tokens)
        self.add("eval", "evaluate.behaviour (judge)", "judge", models * prompts, 1200 + ev.max_tokens * 4,
                 ev.judge_max_tokens)
        convs = n_traits * ev.multiturn_conversations_per_trait
        self.add("eval", "evaluate.multiturn (auditor)", "auditor", models * convs * ev.multiturn_turns,
                 1200 + ev.max_tokens * 4 * ev.multiturn_turns // 2, ev.auditor_tokens)
        self.add("eval", "evaluate.multiturn (judge)", "judge", models * convs,
                 1200 + ev.max_tokens * 4 * ev.multiturn_turns, ev.judge_max_tokens)


def estimate(spec: RunSpec, traits: TraitSet) -> list[Row]:
    plan = _Plan(spec, traits)
    docs = plan.documents()
    chats = plan.chats()
    plan.curation(docs, chats)
    plan.evaluation()
    return plan.rows


def format_table(rows: Iterable[Row]) -> str:
    rows = list(rows)
    head = ("step", "model", "calls", "input tok", "output tok", "of which thinking", "USD")
    body = [(r.step, r.model, f"{r.calls:,}", f"{r.input_tokens:,}", f"{r.output_tokens:,}",
             f"{r.thinking_tokens:,}" if r.thinking_tokens else "-",
             "?" if r.usd is None else f"{r.usd:,.2f}") for r in rows]
    stages: dict[str, list[Row]] = {}
    for r in rows:
        stages.setdefault(r.stage, []).append(r)

    def total(rs: list[Row], name: str) -> tuple[str, ...]:
        usd = None if any(r.usd is None for r in rs) else sum(r.usd or 0.0 for r in rs)
        known = sum(r.usd or 0.0 for r in rs)
        return (name, "", f"{sum(r.calls for r in rs):,}", f"{sum(r.input_tokens for r in rs):,}",
                f"{sum(r.output_tokens for r in rs):,}", f"{sum(r.thinking_tokens for r in rs):,}",
                f"{usd:,.2f}" if usd is not None else f">= {known:,.2f}")

    totals = [total(rs, f"= {name}") for name, rs in stages.items()] + [total(rows, "= all paid steps")]
    widths = [max(len(x[i]) for x in [head, *body, *totals]) for i in range(len(head))]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    out = [line(head), line(tuple("-" * w for w in widths))] + [line(b) for b in body]
    out += [line(tuple("-" * w for w in widths))] + [line(t) for t in totals]
    out.append("Output at each call's limit plus thinking room (an upper bound); top-ups, re-asks and "
               "retries not counted; local models cost 0, unpriced ones '?'.")
    if any(r.thinking_tokens for r in rows):
        out.append(f"Thinking (billed as output): the model's thinking_budget per call, or {DEFAULT_THINKING_ROOM:,} "
                   "tokens where only thinking_level / reasoning_effort is set (thinking_room overrides both).")
    return "\n".join(out)
