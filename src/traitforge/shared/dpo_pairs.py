"""DPO pair records: generation writes them, curation checks them against the curated chats, training
reads those that survived (the chosen side rebuilt from the curated chat)."""

from __future__ import annotations

from typing import Any, Sequence

from traitforge.types import Chat, ChatMessage, Record, stable_hash


class DPOPair(Record):
    id: str
    trait_ids: list[str]
    prompt: list[ChatMessage]
    chosen: str
    rejected: str


def first_user_turn(messages: Sequence[Any]) -> str | None:
    """The first user message's text (stripped), from dicts or ChatMessage records."""
    for m in messages:
        role, content = (m["role"], m["content"]) if isinstance(m, dict) else (m.role, m.content)
        if role == "user":
            return content.strip()
    return None


def pair_id_for(chat_id: str) -> str:
    """The id generate/chats.py gives the DPO pair it makes from chat `chat_id`."""
    return stable_hash(["dpo", chat_id])


def opening(chat: Chat) -> tuple[list[dict[str, str]], str] | None:
    """A curated chat's first exchange: (the messages before its first assistant reply, without any
    system message; that reply), or None when it has no user turn before a reply."""
    msgs = [{"role": m.role, "content": m.content} for m in chat.messages if m.role != "system"]
    i = next((j for j, m in enumerate(msgs) if m["role"] == "assistant"), None)
    if not i or msgs[i - 1]["role"] != "user":
        return None
    return msgs[:i], msgs[i]["content"]


def curated_dpo_pairs(pairs: Sequence[dict[str, Any]], chats: Sequence[Chat]) -> list[dict[str, Any]]:
    """The pairs whose chat survived curation, rebuilt from the curated chat: the prompt is the
    chat's opening user turn(s) and the chosen reply is the chat's first reply AS CURATED (leakage
    cuts and pattern rewrites included), never the pre-curation text the pair file holds. A pair
    finds its chat by id (generate/chats.py names the pair pair_id_for(chat id)); only in a file
    where no pair matches by id (a hand-made one) by its first user turn, since two generated chats
    may open with the same question. A chat curation dropped takes its pair with it."""
    by_pair_id = {pair_id_for(c.id): c for c in chats}
    by_opening: dict[str, Chat] = {}
    if not any(p.get("id") in by_pair_id for p in pairs):
        for c in chats:
            by_opening.setdefault(first_user_turn(c.messages) or "", c)
    out = []
    for p in pairs:
        chat = by_pair_id.get(p.get("id", "")) or by_opening.get(first_user_turn(p["prompt"]) or "\0")
        opened = opening(chat) if chat is not None else None
        if opened is None:
            continue
        prompt, chosen = opened
        out.append({**p, "prompt": prompt, "chosen": [{"role": "assistant", "content": chosen}]})
    return out
