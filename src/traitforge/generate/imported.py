"""The spec's `inputs:`: the user's own chats and documents as generation's output.

They are read from the run's copies (RUN/inputs/, made when the run opened) into the files that
curation and the control arm read (generated/chats.jsonl, generated/documents.jsonl). `replace`:
generation's own step for that kind is skipped and the file holds the imported rows only; `add`:
the imported rows follow the generated ones. Imported rows carry `source` "import:...", which is
how an `add` run tells them from the generated rows when it runs again. What was kept and left out
(by reason, with file:line) goes into the manifest (stage `inputs.<kind>`) and the log."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from traitforge.inputs import InputsSpec, read_chats, read_documents
from traitforge.jsonl import read_jsonl, write_jsonl
from traitforge.types import Chat, Document, stable_hash

if TYPE_CHECKING:
    from traitforge.runcontext import Run

KINDS: dict[str, tuple[str, Any, Any]] = {"chats": ("chats.jsonl", Chat, read_chats),
                                          "documents": ("documents.jsonl", Document, read_documents)}
log = logging.getLogger(__name__)


def given(inputs: InputsSpec | None, kind: str) -> bool:
    return inputs is not None and getattr(inputs, kind) is not None


def replaces(inputs: InputsSpec | None, kind: str) -> bool:
    """Whether generation's own step for `kind` is skipped (its output is imported instead)."""
    return given(inputs, kind) and inputs.mode == "replace"  # type: ignore[union-attr]


def is_imported(row: Any) -> bool:
    return (getattr(row, "source", "") or "").startswith("import:")


def strip_imported(run: "Run", inputs: InputsSpec | None, what: str = "all") -> None:
    """`add` mode, before generation runs again: the generated rows alone in their files, so the
    resumable steps see only rows they made (imported ones would look like units cut short)."""
    for kind, (file, model, _) in KINDS.items():
        path = run.store.path("generated", file)
        if what not in ("all", kind) or not given(inputs, kind) or inputs.mode != "add" or not path.exists():  # type: ignore[union-attr]
            continue
        rows = read_jsonl(path, model)
        mine = [r for r in rows if not is_imported(r)]
        if len(mine) != len(rows):
            write_jsonl(path, mine)


def import_inputs(run: "Run", inputs: InputsSpec | None, what: str = "all") -> dict[str, dict[str, Any]]:
    """Read each imported kind from the run's copy into its generated/ file; kind -> the counts."""
    out: dict[str, dict[str, Any]] = {}
    if inputs is None:
        return out
    traits = [t.id for t in run.traits.traits]
    for kind, (file, model, reader) in KINDS.items():
        if what not in ("all", kind) or not given(inputs, kind):
            continue
        source = run.resolve(getattr(inputs, kind))
        path = run.store.path("generated", file)
        fingerprint = stable_hash({"copy": run.store.manifest.get("inputs", {}).get(f"inputs.{kind}", {}).get("sha256"),
                                   "mode": inputs.mode, "trait_field": inputs.trait_field, "format": inputs.format,
                                   "traits": traits})
        with run.store.stage(f"inputs.{kind}", fingerprint):
            rows, report = reader(source, inputs.format, inputs.trait_field, traits)
            generated = [] if inputs.mode == "replace" or not path.exists() else \
                [r for r in read_jsonl(path, model) if not is_imported(r)]
            path.parent.mkdir(parents=True, exist_ok=True)
            write_jsonl(path, generated + rows)
            counts = {k: v for k, v in report.as_dict().items() if k != "path"}
            counts.update(mode=inputs.mode, generated=len(generated), rows=len(generated) + len(rows))
            run.store.set_counts(f"inputs.{kind}", **counts)
        lines = report.lines()
        log.info("inputs.%s (%s): %s", kind, inputs.mode, lines[0])
        for line in lines[1:]:
            log.warning("inputs.%s: left out%s", kind, line)
        out[kind] = counts
    return out
