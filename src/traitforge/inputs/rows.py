"""One raw row into a `Chat` or a `Document`, or the reason it cannot be one.

Chats: the OpenAI chat format (`messages`: [{role, content}]) or the ShareGPT format
(`conversations`: [{from, value}], from human/gpt/system). Both keys pairs are accepted in either
list, and content given as OpenAI text parts is joined. System (and OpenAI "developer") turns are
stripped: a run never trains on them. What is kept alternates user, assistant, ..., ending with an
assistant reply; anything else is left out with its reason, never repaired.
Documents: a `text` field (a .txt/.md file is one document)."""

from __future__ import annotations

from typing import Any

from traitforge.types import Chat, ChatMessage, Document, stable_hash

USER = {"user", "human"}
ASSISTANT = {"assistant", "gpt", "model", "chatgpt"}
SYSTEM = {"system", "developer"}


class Bad(Exception):
    """A row left out: `reason` is the counted kind, `detail` the row's specifics."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason)
        self.reason, self.detail = reason, detail


def row_format(data: dict[str, Any]) -> str:
    """openai | sharegpt | text | "" (none of their fields)."""
    if "messages" in data:
        return "openai"
    if "conversations" in data:
        return "sharegpt"
    if "text" in data:
        return "text"
    return ""


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if isinstance(content, list):  # OpenAI content parts
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type", "text") != "text" or not isinstance(part.get("text"), str):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise Bad("non-text content", str(kind))
            texts.append(part["text"])
        return "".join(texts)
    raise Bad("non-text content", type(content).__name__)


def _check_utf8(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:  # a lone surrogate escaped in the JSON ("\ud800")
        raise Bad("not UTF-8", f"character {e.start}") from None


def trait_tags(data: dict[str, Any], trait_field: str | None, known: set[str] | None) -> list[str]:
    """The row's trait ids from `trait_field` (a string or a list of strings); [] = untagged."""
    if not trait_field:
        return []
    value = data.get(trait_field)
    if value is None or value == "" or value == []:
        return []
    tags = [value] if isinstance(value, str) else value
    if not isinstance(tags, list) or not all(isinstance(t, str) and t.strip() for t in tags):
        raise Bad("bad trait tag", f"{trait_field}={value!r}"[:80])
    tags = list(dict.fromkeys(t.strip() for t in tags))
    unknown = [t for t in tags if known is not None and t not in known]
    if unknown:
        raise Bad("unknown trait", ", ".join(unknown)[:80])
    return tags


def to_chat(data: dict[str, Any], fmt: str, where: str, trait_field: str | None = None,
            known: set[str] | None = None) -> tuple[Chat, int]:
    """(the chat, system turns stripped). Raises `Bad`."""
    key = "messages" if fmt == "openai" else "conversations"
    turns = data.get(key)
    if not isinstance(turns, list) or not turns:
        raise Bad(f"no {key}", "missing" if turns is None else "empty or not a list")
    kept: list[ChatMessage] = []
    system = 0
    for i, m in enumerate(turns):
        if not isinstance(m, dict):
            raise Bad("missing role", f"turn {i} is not an object")
        role = m.get("role", m.get("from"))
        if not isinstance(role, str) or not role:
            raise Bad("missing role", f"turn {i}")
        role = role.strip().lower()
        content = _text(m["content"] if "content" in m else m.get("value"))
        _check_utf8(content)
        if role in SYSTEM:
            system += 1
            continue
        if role not in USER | ASSISTANT:
            raise Bad("unsupported role", role[:40])
        role = "user" if role in USER else "assistant"
        if not content.strip():
            raise Bad("empty reply" if role == "assistant" else "empty user turn", f"turn {i}")
        kept.append(ChatMessage(role=role, content=content))
    if not any(m.role == "assistant" for m in kept):
        raise Bad("no assistant turn")
    for i, m in enumerate(kept):
        if m.role != ("user" if i % 2 == 0 else "assistant"):
            raise Bad("not alternating", f"turn {i} is {m.role}")
    if kept[-1].role != "assistant":
        raise Bad("ends with a user turn")
    tags = trait_tags(data, trait_field, known)
    msgs = [m.model_dump() for m in kept]
    return Chat(id=stable_hash({"import": msgs}), trait_ids=tags, messages=kept, source=f"import:{where}"), system


def to_document(data: dict[str, Any], where: str, trait_field: str | None = None,
                known: set[str] | None = None) -> Document:
    """Raises `Bad`."""
    text = data.get("text")
    if text is None:
        raise Bad("no text field")
    if not isinstance(text, str):
        raise Bad("non-text content", type(text).__name__)
    _check_utf8(text)
    if not text.strip():
        raise Bad("empty text")
    tags = trait_tags(data, trait_field, known)
    doc_type = data.get("doc_type") if isinstance(data.get("doc_type"), str) else ""
    return Document(id=stable_hash({"import": text}), trait_ids=tags, doc_type=doc_type, text=text,
                    source=f"import:{where}")
