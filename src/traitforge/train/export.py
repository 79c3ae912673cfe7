"""Export curated chats as fine-tuning files for hosted APIs (one JSON object per line).

openai    OpenAI chat fine-tuning JSONL:
            {"messages": [{"role": "system", "content": ...}?,           # only if a system prompt is given
                          {"role": "user", "content": ...}, {"role": "assistant", "content": ...}, ...]}
          Every example needs at least one assistant message; the loss is on assistant messages.
together  Together AI conversational fine-tuning JSONL: the same {"messages": [...]} shape and roles.
vertex    Vertex AI Gemini supervised tuning JSONL:
            {"systemInstruction": {"role": "system", "parts": [{"text": ...}]}?,   # only if given
             "contents": [{"role": "user", "parts": [{"text": ...}]},
                          {"role": "model", "parts": [{"text": ...}]}, ...]}
          Roles are "user" and "model" (the assistant), must alternate, start with user and end with model.

Context distillation trains WITHOUT the teacher's system prompt, so none is written by default
(`system_prompt` adds one to every example, e.g. a deployment prompt). Chats whose turns do not
alternate user/assistant starting with user and ending with assistant cannot be expressed in every
format; they are skipped and counted, never silently altered.

Control rows (the canary's templated rows, and untraited control chats: rows of
`curation.template_traits`, or with no trait id that the run made itself) are left out unless
`include_controls`: a user fine-tuning a production model must not train the canary's invented
habit into it. The count left out is returned. For users: docs/export.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Sequence

from traitforge.controls.canary import CANARY_ID
from traitforge.errors import InputError
from traitforge.jsonl import read_jsonl, write_jsonl
from traitforge.types import Chat, Document

Format = Literal["openai", "together", "vertex"]
FORMATS: tuple[str, ...] = ("openai", "together", "vertex")


CONTROL_TRAITS: tuple[str, ...] = (CANARY_ID,)  # curation.template_traits' default


def is_control(row: Chat | Document, control_traits: Sequence[str] = CONTROL_TRAITS) -> bool:
    """A control row: a control trait's (the canary), or untraited data the run made (the control
    arm's). An imported row without a trait tag (`source` set) is the user's data, not a control."""
    return bool(set(row.trait_ids) & set(control_traits)) or (not row.trait_ids and not row.source)


def split_controls(rows: Sequence[Any], include_controls: bool = False,
                   control_traits: Sequence[str] = CONTROL_TRAITS) -> tuple[list[Any], int]:
    """(the rows to export, how many control rows were left out)."""
    if include_controls:
        return list(rows), 0
    kept = [r for r in rows if not is_control(r, control_traits)]
    return kept, len(rows) - len(kept)


def _turns(chat: Chat) -> list[tuple[str, str]] | None:
    """(role, content) user/assistant turns, or None if they do not alternate user -> assistant."""
    turns = [(m.role, m.content) for m in chat.messages if m.role != "system"]
    if not turns or turns[-1][0] != "assistant":
        return None
    for i, (role, content) in enumerate(turns):
        if role != ("user" if i % 2 == 0 else "assistant") or not content.strip():
            return None
    return turns


def to_record(chat: Chat, fmt: Format, system_prompt: str | None = None) -> dict[str, Any] | None:
    turns = _turns(chat)
    if turns is None:
        return None
    if fmt in ("openai", "together"):
        messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
        return {"messages": messages + [{"role": r, "content": c} for r, c in turns]}
    if fmt == "vertex":
        rec: dict[str, Any] = {}
        if system_prompt:
            rec["systemInstruction"] = {"role": "system", "parts": [{"text": system_prompt}]}
        rec["contents"] = [{"role": "model" if r == "assistant" else "user", "parts": [{"text": c}]}
                           for r, c in turns]
        return rec
    raise InputError(f"export: unknown format '{fmt}' (use one of {', '.join(FORMATS)})")


def export_chats(chats: Sequence[Chat], fmt: Format, out: str | Path, system_prompt: str | None = None,
                 include_controls: bool = False, control_traits: Sequence[str] = CONTROL_TRAITS) -> dict[str, int]:
    """Write `out` (atomically). Returns {"written": n, "skipped": m, "controls_left_out": k}."""
    if fmt not in FORMATS:
        raise InputError(f"export: unknown format '{fmt}' (use one of {', '.join(FORMATS)})")
    chats, left_out = split_controls(chats, include_controls, control_traits)
    rows = [r for r in (to_record(c, fmt, system_prompt) for c in chats) if r is not None]
    write_jsonl(out, rows)
    return {"written": len(rows), "skipped": len(chats) - len(rows), "controls_left_out": left_out}


def controls_line(left_out: int, included: bool = False) -> str:
    """The one line the CLI prints about control rows."""
    if included:
        return "control rows included (--include-controls): the canary's habit is in this data"
    return (f"{left_out} control rows left out (canary, untraited control data); "
            "--include-controls keeps them")


def export_run(run_dir: str | Path, fmt: Format, out: str | Path, system_prompt: str | None = None,
               include_controls: bool = False, control_traits: Sequence[str] = CONTROL_TRAITS) -> dict[str, int]:
    """Export RUN/curated/chats.jsonl."""
    path = Path(run_dir) / "curated" / "chats.jsonl"
    if not path.is_file():
        raise InputError(f"{path}: no curated chats to export (run curation first)")
    return export_chats(read_jsonl(path, Chat), fmt, out, system_prompt, include_controls, control_traits)
