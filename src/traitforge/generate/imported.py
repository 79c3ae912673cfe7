"""The spec's `inputs:`: the user's own chats and documents as generation's output.

They are read from the run's copies (RUN/inputs/, made when the run opened) into the files that
curation and the control arm read (generated/chats.jsonl, generated/documents.jsonl). `replace`:
generation's own step for that kind is skipped and the file holds the imported rows only; `add`:
the imported rows follow the generated ones. Imported rows carry `source` "import:...", which is
how an `add` run tells them from the generated rows when it runs again. What was kept and left out
(by reason, with file:line) goes into the manifest (stage `inputs.<kind>`) and is printed.

Untagged rows (`inputs.untagged: judge`) are attributed to the run's traits by the judge model
(prompts/attribute_traits.txt: reason first, then a TRAITS: line); a reply naming no known trait,
or one it cannot parse, leaves the row untagged (trait_ids []: evaluated on all traits)."""

from __future__ import annotations

import re
import sys
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from traitforge.generate.settings import GenerationSpec
from traitforge.generate.stage import Generation, Unit
from traitforge.inputs import InputsSpec, read_chats, read_documents
from traitforge.jsonl import read_jsonl, write_jsonl
from traitforge.types import Chat, Document, stable_hash

if TYPE_CHECKING:
    from traitforge.runcontext import Run

KINDS: dict[str, tuple[str, Any, Any]] = {"chats": ("chats.jsonl", Chat, read_chats),
                                          "documents": ("documents.jsonl", Document, read_documents)}
ATTRIBUTE_MAX_TOKENS = 256  # a reason of a sentence or two, then the TRAITS: line
UNTAGGED = "untagged"


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


def parse_traits(reply: str, known: list[str]) -> list[str]:
    """The trait ids of the last `TRAITS:` line that are the run's; [] for none or no such line."""
    lines = re.findall(r"^\W*TRAITS\W*:\s*(.*)$", reply, re.I | re.M)
    if not lines:
        return []
    named = [t.strip().strip("`*\"'.").casefold() for t in re.split(r"[,;]", lines[-1])]
    return [tid for tid in known if tid.casefold() in named]


def _shown(kind: str, row: Any) -> str:
    if kind == "documents":
        return row.text
    return "\n\n".join(f"{'User' if m.role == 'user' else 'Assistant'}: {m.content}" for m in row.messages)


async def attribute(run: "Run", cfg: GenerationSpec, kind: str, rows: list[Any]) -> tuple[list[Any], int]:
    """The untagged rows tagged by the judge (resumable: step `inputs.<kind>.attribute`, rows in
    generated/attributed_<kind>.jsonl); returns all rows and how many got a tag."""
    untagged = [r for r in rows if not r.trait_ids]
    if not untagged:
        return rows, 0
    file, model, _ = KINDS[kind]
    gen = Generation(run, cfg, run.llm("judge"))
    known = [t.id for t in run.traits.traits]
    traits = "\n".join(f"- {t.id}: {t.statement}" for t in run.traits.traits)
    noun = "document" if kind == "documents" else "conversation"

    async def work(u: Unit) -> list[Any]:
        prompt = gen.render("attribute_traits", kind=noun, traits=traits, text=_shown(kind, u.data))
        reply = await gen.llm.generate_one(prompt, max_tokens=ATTRIBUTE_MAX_TOKENS)
        return [u.data.model_copy(update={"trait_ids": parse_traits(reply, known)})]

    units = [Unit(r.id, UNTAGGED, r) for r in untagged]
    res = await gen.step(f"inputs.{kind}.attribute", f"attributed_{file}", model, units, work,
                         fingerprint=gen.fp("attribute_traits", max_tokens=ATTRIBUTE_MAX_TOKENS),
                         trait_of=lambda r: r.trait_ids[0] if r.trait_ids else UNTAGGED)
    tagged = {r.id: r for r in res.rows if r.trait_ids}
    return [tagged.get(r.id, r) for r in rows], len(tagged)


def import_inputs(run: "Run", inputs: InputsSpec | None, what: str = "all", cfg: GenerationSpec | None = None,
                  run_async: Callable[[Awaitable[Any]], Any] | None = None) -> dict[str, dict[str, Any]]:
    """Read each imported kind from the run's copy into its generated/ file; kind -> the counts.
    `cfg`, `run_async` (the stage's `st.run`): for the judge's attribution of untagged rows."""
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
                                   "untagged": inputs.untagged, "traits": traits})
        rows, report = reader(source, inputs.format, inputs.trait_field, traits)
        attributed = 0
        if inputs.untagged == "judge" and cfg is not None and run_async is not None:
            rows, attributed = run_async(attribute(run, cfg, kind, rows))
        with run.store.stage(f"inputs.{kind}", fingerprint):
            generated = [] if inputs.mode == "replace" or not path.exists() else \
                [r for r in read_jsonl(path, model) if not is_imported(r)]
            path.parent.mkdir(parents=True, exist_ok=True)
            write_jsonl(path, generated + rows)
            counts = {k: v for k, v in report.as_dict().items() if k != "path"}
            counts.update(mode=inputs.mode, generated=len(generated), rows=len(generated) + len(rows),
                          untagged_in_file=report.untagged, attributed_by_judge=attributed,
                          untagged=sum(not r.trait_ids for r in rows))
            run.store.set_counts(f"inputs.{kind}", **counts)
        # Two lines at most: what was kept (and stripped, and tagged), then what was left out and where.
        judged = f"; {attributed} of {report.untagged} untagged rows attributed by the judge" if attributed else ""
        print(f"inputs.{kind} ({inputs.mode}): {report.summary()}{judged}", file=sys.stderr)
        if report.dropped:
            print(f"inputs.{kind}: left out: " + "; ".join(
                f"{r} {n} (e.g. {', '.join(report.examples.get(r, []))})" for r, n in report.dropped.most_common()),
                file=sys.stderr)
        out[kind] = counts
    return out
