"""`traitforge generate docs|chats TARGET --limit N`: a few finished items to read before paying for
thousands.

The preview runs the real pipeline (every step, the same templates, model and settings) at the
smallest sizes that give N items, on the first N traits, in RUN/preview/ (emptied first so a new N
is not refused as a changed run). It shares the run's LLM cache and budget, so reading a preview
twice costs nothing the second time, and it never touches the run's own files.
"""

from __future__ import annotations

import math
import shutil
import textwrap
from dataclasses import replace
from typing import TYPE_CHECKING, Literal

from traitforge.generate.settings import GenerationSpec
from traitforge.jsonl import read_jsonl
from traitforge.runstore import RunStore
from traitforge.types import Chat, Document, TraitSet

if TYPE_CHECKING:
    from traitforge.runcontext import Run

What = Literal["documents", "chats"]


def preview_spec(cfg: GenerationSpec, traits: TraitSet, what: What, limit: int) -> tuple[GenerationSpec, TraitSet]:
    """The generation settings and traits of a preview: N items spread over the first min(N, #traits) traits."""
    subset = replace(traits, traits=traits.traits[:max(1, min(limit, len(traits.traits)))])
    per_trait = math.ceil(limit / len(subset.traits))
    gen = cfg.model_dump(mode="json")
    gen["trait_weights"] = {}
    gen["batch"] = False  # a handful of calls: waiting hours on a provider batch defeats a preview
    if what == "documents":
        gen["documents"].update(claims_per_trait=1, doc_types_per_claim=1, ideas_per_type=per_trait,
                                docs_per_idea=1, topup_rounds=0)
    else:
        gen["chats"].update(scenarios_per_trait=per_trait, prompts_per_scenario=1, topup_rounds=0)
    return GenerationSpec.model_validate(gen), subset


def run_preview(run: "Run", cfg: GenerationSpec, what: What, limit: int) -> list[Document] | list[Chat]:
    """A preview of `what` by the run's generator (and refiner), in RUN/preview/<what>/."""
    from traitforge.generate.chats import run_chats
    from traitforge.generate.documents import run_documents

    pcfg, subset = preview_spec(cfg, run.traits, what, limit)
    folder = run.store.path("preview", what)
    shutil.rmtree(folder, ignore_errors=True)
    store = RunStore(folder)
    preview = run.narrowed(store, subset)  # the run's clients, cache and budget
    if what == "documents":
        run_documents(preview, pcfg)
        return _spread(read_jsonl(store.path("generated", "documents.jsonl"), Document), subset, limit)
    run_chats(preview, pcfg)
    return _spread(read_jsonl(store.path("generated", "chats.jsonl"), Chat), subset, limit)


def _spread(rows: list, traits: TraitSet, limit: int) -> list:
    """The first `limit` rows taken in turn from each trait, each trait's rows by id: rows are appended
    as they finish, so the file's order varies between identical runs while this does not."""
    groups = [sorted((r for r in rows if r.trait_ids[:1] == [t.id]), key=lambda r: r.id) for t in traits.traits]
    out = []
    for i in range(max((len(g) for g in groups), default=0)):
        out.extend(g[i] for g in groups if i < len(g))
    return out[:limit]


def format_items(items: list[Document] | list[Chat], width: int = 100) -> str:
    """Items as plain text for a terminal: a header line each, then the text."""
    out = []
    for i, item in enumerate(items, 1):
        traits = ", ".join(item.trait_ids)
        if isinstance(item, Document):
            out.append(f"=== {i}. document [{traits}] {item.doc_type}".rstrip())
            if item.axes:
                out.append("(" + "; ".join(f"{k}: {v}" for k, v in item.axes.items() if k != "genre") + ")")
            out.append(item.text.strip())
        else:
            out.append(f"=== {i}. chat [{traits}], {sum(m.role == 'user' for m in item.messages)} user turn(s)")
            for m in item.messages:
                body = textwrap.indent(m.content.strip(), "    ")
                out.append(f"{m.role}:\n{body}")
        out.append("")
    return "\n".join(out)
