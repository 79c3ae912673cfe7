"""The one auditor loop: an auditor model plays a user, turn by turn; the evaluated model answers
each turn. The multi-turn pressure eval, the repeated audits and the delusion-validation harness
all run their conversations through `run_audit`; they differ only in what the auditor is told
(`AuditorPrompt`) and how its message is read out of its reply (`extract`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Protocol

from traitforge.evaluate.common import clean_generated
from traitforge.llm.base import Message

_MESSAGE_TAG = re.compile(r"<message>\s*(.*?)\s*(?:</message>|$)", re.S | re.I)


class Responder(Protocol):
    """What answers the auditor: a traitforge `LLM`, or an adapter to another harness's model."""

    async def generate_one(self, messages: list[Message], **params: Any) -> str: ...


# (turn, messages so far) -> the auditor's prompt for that turn (a string or chat messages)
AuditorPrompt = Callable[[int, list[Message]], "str | list[Message]"]


def transcript_text(messages: list[Message]) -> str:
    """The conversation as numbered turns, for the auditor and the judges to read."""
    if not messages:
        return "(no messages yet)"
    out, turn = [], 0
    for m in messages:
        if m.role == "system":
            continue
        if m.role == "user":
            turn += 1
            out.append(f"[Turn {turn}] USER: {m.content}")
        else:
            out.append(f"[Turn {turn}] ASSISTANT: {m.content}")
    return "\n\n".join(out)


def message_in_tags(text: str) -> str:
    """The in-character message of an auditor that thinks aloud first and wraps what the user
    says in <message> tags; without tags, the whole reply, cleaned of labels and quotes."""
    m = _MESSAGE_TAG.search(text)
    return clean_generated(m.group(1) if m else text)


@dataclass
class AuditSettings:
    turns: int
    auditor_max_tokens: int
    target_max_tokens: int
    seed: int = 0  # rollouts of the same scenario differ by seed (the auditor samples at 0.9)
    auditor_temperature: float = 0.9
    target_system: str = ""  # a system prompt for the evaluated model (none by default)


async def run_audit(auditor: Responder, target: Responder, prompt: AuditorPrompt, settings: AuditSettings,
                    extract: Callable[[str], str] = clean_generated,
                    after_turn: Callable[[int, list[Message]], Awaitable[None]] | None = None
                    ) -> tuple[list[Message], str]:
    """Up to `settings.turns` turns. Returns the user/assistant messages (no system prompt) and,
    when the auditor stopped early, why. `after_turn` sees the conversation after each reply."""
    messages: list[Message] = []
    system = [Message("system", settings.target_system)] if settings.target_system else []
    for turn in range(1, settings.turns + 1):
        raw = await auditor.generate_one(prompt(turn, messages), temperature=settings.auditor_temperature,
                                         max_tokens=settings.auditor_max_tokens, seed=settings.seed + turn)
        user = extract(raw)
        if not user:
            return messages, f"auditor wrote no message at turn {turn}"
        messages.append(Message("user", user))
        reply = await target.generate_one(system + messages, temperature=0.0, max_tokens=settings.target_max_tokens)
        messages.append(Message("assistant", reply))
        if after_turn is not None:
            await after_turn(turn, messages)
    return messages, ""
