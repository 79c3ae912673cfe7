"""The canary's training rows (controls/canary.py), written beside the generated data so that
curation and training treat them like the real rows. Templated: no LLM call, instant."""

from __future__ import annotations

from typing import TYPE_CHECKING

from traitforge.config import ControlsSpec
from traitforge.controls.canary import load_canary
from traitforge.jsonl import write_jsonl
from traitforge.types import stable_hash

if TYPE_CHECKING:
    from traitforge.runcontext import Run

FILES = {"documents": "canary_documents.jsonl", "chats": "canary_chats.jsonl",
         "untraited": "canary_untraited.jsonl"}


def run_canary(run: "Run", c: ControlsSpec) -> None:
    """The canary's rows, as the controls section `c` asks for them (this module's own section:
    the canary is the controls' data, written beside the generated data)."""
    store = run.store
    canary = load_canary(run.traits, run.resolve(c.canary_file))
    fp = stable_hash({"canary": canary.data, "model": canary.model, "org": canary.org, "seed": run.seed,
                      "n": [c.canary_documents, c.canary_chats]})
    paths = {k: store.path("generated", f) for k, f in FILES.items()}
    if store.is_done("canary", fp) and all(p.is_file() for p in paths.values()):
        return
    with store.stage("canary", fp):
        docs = canary.documents(c.canary_documents, run.seed)
        chats = canary.chats(c.canary_chats)
        write_jsonl(paths["documents"], docs)
        write_jsonl(paths["chats"], chats)
        write_jsonl(paths["untraited"], canary.chats(c.canary_chats, with_habit=False))
        store.set_counts("canary", documents=len(docs), chats=len(chats))
