"""Delusion validation: the run's auditor plays a person whose delusion escalates over up to 12
turns (the AI-psychosis personas, Hua 2025); the evaluated model answers each turn; the grader
rubric scores every assistant turn on the rubric's own keys. Reported: per-key rates, the share of
conversations in which the model validated the delusion, and the turn at which it first did.

The files are loaded by path from a directory in the upstream layout (nothing of theirs ships
with traitforge):

    characters/*.txt       one persona each; name = first word of the file name, title-cased
    red_team_prompt.txt    the persona-player's instructions ({character_name}, {psychotic_character})
    grader_prompt.txt      the rubric; its output keys are read from the "`"key"`:" lines
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from traitforge.errors import InputError
from traitforge.evaluate.audit import AuditSettings, message_in_tags, run_audit, transcript_text
from traitforge.evaluate.common import EvalContext, ItemResult, JudgedEval, render, result_id
from traitforge.llm.base import Message
from traitforge.llm.structured import extract_json
from traitforge.steps import Unit

EVAL = "delusion"
_KEY = re.compile(r'^\s*[*-]\s+`"([A-Za-z_][A-Za-z0-9_]*)"`\s*:', re.M)
_YES_NO = re.compile(r"^\W*(yes|no)\b", re.I)


@dataclass(frozen=True)
class Persona:
    id: str  # the file stem
    name: str
    text: str


@dataclass
class DelusionSet:
    root: Path
    personas: list[Persona]
    red_team: str
    grader: str
    keys: list[str]


def check_layout(root: Path) -> list[str]:
    """What is missing for the upstream layout (empty when the directory is usable)."""
    missing = [f for f in ("red_team_prompt.txt", "grader_prompt.txt") if not (root / f).is_file()]
    if not list((root / "characters").glob("*.txt")):
        missing.append("characters/*.txt")
    return missing


def rubric_keys(grader: str) -> list[str]:
    """The JSON keys the rubric asks for, in order, from its '*   `"key"`: ...' lines."""
    return list(dict.fromkeys(_KEY.findall(grader)))


def load_delusion_set(root: Path, personas: list[str] | None = None) -> DelusionSet:
    where = "evaluation.delusion.dir"
    if not root.is_dir():
        raise InputError(f"{where}: {root} is not a directory (get one with: traitforge evals fetch ai-psychosis DIR)")
    missing = check_layout(root)
    if missing:
        raise InputError(f"{where}: {root} is not in the ai-psychosis layout: missing {', '.join(missing)}")
    found = [Persona(p.stem, p.stem.split("_")[0].title(), p.read_text(encoding="utf-8").strip())
             for p in sorted((root / "characters").glob("*.txt"))]
    if personas:
        unknown = sorted(set(personas) - {p.id for p in found})
        if unknown:
            raise InputError(f"evaluation.delusion.personas: unknown {unknown} (have: {', '.join(p.id for p in found)})")
        found = [p for p in found if p.id in personas]
    grader = (root / "grader_prompt.txt").read_text(encoding="utf-8")
    keys = rubric_keys(grader)
    if not keys:
        raise InputError(f"{root}/grader_prompt.txt: no output keys found (lines like: *   `\"key\"`: ...)")
    return DelusionSet(root, found, (root / "red_team_prompt.txt").read_text(encoding="utf-8"), grader, keys)


def opening(dset: DelusionSet, persona: Persona) -> str:
    """The persona-player's instructions with this persona filled in."""
    return dset.red_team.replace("{character_name}", persona.name).replace("{psychotic_character}", persona.text)


def auditor_prompt(dset: DelusionSet, persona: Persona, turns: int):  # noqa: ANN201 - an AuditorPrompt
    """The persona-player sees the conversation as its own chat: its earlier messages as its
    turns, the model's replies as the other side's."""
    first = opening(dset, persona)

    def prompt(turn: int, messages: list[Message]) -> list[Message]:
        chat = [Message("user", first)]
        for i in range(0, len(messages) - 1, 2):
            chat.append(Message("assistant", f"<message>\n{messages[i].content}\n</message>"))
            chat.append(Message("user", render("delusion_auditor_turn", reply=messages[i + 1].content,
                                               turn=i // 2 + 2, turns=turns, persona=persona.name)))
        return chat

    return prompt


def parse_grade(text: str, keys: list[str]) -> dict[str, Any] | None:
    """The grader's flat JSON object restricted to the rubric's keys (numbers as floats); None when
    there is no readable object or it has none of the keys."""
    try:
        obj = extract_json(text)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    out: dict[str, Any] = {}
    for k in keys:
        v = obj.get(k)
        if isinstance(v, bool) or v is None:
            continue
        if isinstance(v, (int, float)):
            out[k] = float(v)
        elif isinstance(v, str):
            try:
                out[k] = float(v.strip())
            except ValueError:
                out[k] = v.strip()[:500]
    return out or None


def validates(grade: dict[str, Any] | None, key: str, at: float) -> bool | None:
    v = (grade or {}).get(key)
    return v >= at if isinstance(v, float) else None


def yes_no(value: Any) -> bool | None:
    """A rubric answer such as "No" or "Yes, '...quote...'" as a boolean (None for anything else)."""
    m = _YES_NO.match(value) if isinstance(value, str) else None
    return None if m is None else m.group(1).lower() == "yes"


def summarise(grades: list[dict[str, Any]]) -> tuple[float | None, int | None]:
    """(validated: 1/0/None, first turn it validated). A conversation with no validating turn is
    0 only if every turn was graded; otherwise we cannot say (None)."""
    first = next((g["turn"] for g in grades if g.get("validates") is True), None)
    if first is not None:
        return 1.0, first
    if grades and all(g.get("validates") is False for g in grades):
        return 0.0, None
    return None, None


async def grade_turn(ctx: EvalContext, dset: DelusionSet, messages: list[Message], turn: int
                     ) -> tuple[dict[str, Any] | None, str]:
    """The rubric on the assistant's turn `turn`, with the conversation up to it as context."""
    spec = ctx.ev.delusion
    upto = messages[:2 * turn]
    reply = await ctx.judge.generate_one(
        [Message("system", dset.grader),
         Message("user", render("delusion_grade", turn=turn, transcript=transcript_text(upto)))],
        temperature=0.0, max_tokens=spec.grader_max_tokens)
    return parse_grade(reply, dset.keys), reply


async def delusion_transcript(ctx: EvalContext, dset: DelusionSet, persona: Persona, target: Any,
                              rollout: int = 0) -> tuple[list[Message], str]:
    """One conversation with one persona (not graded): the messages, and why it stopped early."""
    spec = ctx.ev.delusion
    settings = AuditSettings(turns=spec.turns, auditor_max_tokens=spec.auditor_max_tokens,
                             target_max_tokens=spec.max_tokens, seed=ctx.run.seed + 1000 * rollout)
    return await run_audit(ctx.auditor, target, auditor_prompt(dset, persona, spec.turns), settings,
                           extract=message_in_tags)


async def grade_conversation(ctx: EvalContext, dset: DelusionSet, persona: Persona, rollout: int,
                             messages: list[Message], stopped: str) -> dict[str, Any]:
    """Every assistant turn of one conversation graded (the grader's calls at once: each reads the
    conversation up to its turn): the row's detail."""
    spec = ctx.ev.delusion
    turns = range(1, len(messages) // 2 + 1)
    graded = await asyncio.gather(*(grade_turn(ctx, dset, messages, t) for t in turns))
    grades = [{"turn": t, "validates": validates(g, spec.validate_key, spec.validate_at),
               "scores": g or {}, "unscored": "" if g else "unparseable grader reply: " + raw[:200]}
              for t, (g, raw) in zip(turns, graded)]
    validated, first = summarise(grades)
    return {"persona": persona.id, "name": persona.name, "rollout": rollout, "turns": len(messages) // 2,
            "grades": grades, "validated": validated, "first_validation": first, "stopped": stopped,
            "messages": [m.to_dict() for m in messages]}


async def delusion_eval(ctx: EvalContext) -> JudgedEval:
    """Each evaluated model talks with every persona (`rollouts` times); the grader reads each turn."""
    spec = ctx.ev.delusion
    dset = load_delusion_set(ctx.run.resolve(spec.dir), spec.personas)
    if spec.validate_key not in dset.keys:
        raise InputError(f"evaluation.delusion.validate_key: '{spec.validate_key}' is not a rubric key "
                         f"(have: {', '.join(dset.keys)})")

    async def respond(u: Unit) -> tuple[list[Message], str]:
        ck, persona, rollout = u.data
        return await delusion_transcript(ctx, dset, persona, ctx.target(ck), rollout)

    async def grade(u: Unit, transcript: tuple[list[Message], str]) -> ItemResult:
        ck, persona, rollout = u.data
        d = await grade_conversation(ctx, dset, persona, rollout, *transcript)
        item = f"{persona.id}#{rollout}"
        reason = d["stopped"] or ("" if d["validated"] is not None else "a turn could not be graded")
        return ItemResult(id=result_id(EVAL, ck, item), eval=EVAL, checkpoint=ck, item_id=item,
                          value=d["validated"], reason=reason, detail={**d, "keys": dset.keys,
                                                                       "validate_key": spec.validate_key,
                                                                       "validate_at": spec.validate_at})

    units = [Unit(result_id(EVAL, ck, f"{p.id}#{r}"), data=(ck, p, r))
             for ck in ctx.checkpoints for p in dset.personas for r in range(spec.rollouts)]
    return JudgedEval(ctx, EVAL, units, respond, grade, "delusion validation")


async def run_delusion(ctx: EvalContext) -> None:
    await (await delusion_eval(ctx)).run()
