"""Pass 2: responses that give the game away. Context distillation only works if the replies read
as the model's own; a reply that mentions the system prompt or quotes the traits document teaches
the model to talk about instructions it will not have. Also the generator's own tells
(boilerplate, template placeholders), checked in documents too.

A row with exactly one offending sentence (and enough left) has that sentence cut out; any more
and the row is dropped."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from traitforge import junk
from traitforge.curate.records import Edit
from traitforge.shared.text import remove_span, sentence_spans
from traitforge.shared.trait_quotes import TraitQuotes
from traitforge.textmatch import words
from traitforge.types import Chat, ChatMessage, Document, Drop, TraitSet

# The junk rules (boilerplate, placeholders, leaked generator instructions, repeated lines, an
# echoed prompt, mentions of a hidden prompt) are traitforge.junk's, shared with generation.
LEAK_PHRASES = junk.PROMPT_MENTIONS
TELLS = junk.TELLS
PLACEHOLDER = junk.PLACEHOLDER
MIN_WORDS_LEFT = 8  # cutting a sentence must leave a real reply


@dataclass
class Finding:
    turn: int  # index into the checked texts
    span: tuple[int, int] | None  # the sentence, None when the whole text is affected
    reason: str
    strippable: bool = True


def _sentence_of(text: str, pos: int) -> tuple[int, int] | None:
    for a, b in sentence_spans(text):
        if a <= pos < b:
            return (a, b)
    return None


def find_leaks(texts: Sequence[str], quotes: TraitQuotes | Sequence[TraitQuotes] | None, phrases: bool,
               prompts: Sequence[str | None] | None = None) -> list[Finding]:
    """Junk and leaks in each text; `phrases`: the texts are replies (mentions of a hidden prompt
    count); `prompts`: what each text answers (a reply echoing it is junk)."""
    found: list[Finding] = []
    for t, text in enumerate(texts):
        prompt = prompts[t] if prompts else None
        for j in junk.find_junk(text, prompt=prompt, reply=phrases):
            span = _sentence_of(text, j.start) if j.start is not None else None
            if j.name == "placeholder":
                reason = f"template placeholder {j.detail!r}"
            elif j.strippable:
                reason = f"mentions {j.name}: {j.detail!r}"
            else:
                reason = j.reason
            found.append(Finding(t, span, reason, strippable=j.strippable))
        for q in ([quotes] if isinstance(quotes, TraitQuotes) else quotes or []):
            found += [Finding(t, span, reason) for span, reason in q.check(text)]
    return found


def _fix(texts: list[str], found: list[Finding]) -> tuple[list[str] | None, str]:
    """Texts with the one offending sentence cut, or None when the row has to go."""
    reasons = "; ".join(dict.fromkeys(f.reason for f in found))
    places = {(f.turn, f.span) for f in found}
    if len(places) != 1 or not all(f.strippable for f in found):
        return None, reasons
    turn, span = places.pop()
    if span is None:
        return None, reasons
    new = remove_span(texts[turn], span)
    if len(words(new)) < MIN_WORDS_LEFT:
        return None, reasons
    return texts[:turn] + [new] + texts[turn + 1:], reasons


def check_chats(chats: Sequence[Chat], traits: TraitSet, n: int, overlap: float
                ) -> tuple[list[Chat], list[Drop], list[Edit]]:
    quotes = TraitQuotes(traits, n, overlap)
    examples = TraitQuotes(traits, n, overlap, label="example")
    kept, drops, edits = [], [], []
    for chat in chats:
        idx = [i for i, m in enumerate(chat.messages) if m.role == "assistant"]
        texts = [chat.messages[i].content for i in idx]
        prompts = [chat.messages[i - 1].content if i and chat.messages[i - 1].role == "user" else None for i in idx]
        found = find_leaks(texts, [quotes, examples], phrases=True, prompts=prompts)
        if not found:
            kept.append(chat)
            continue
        fixed, reason = _fix(texts, found)
        if fixed is None:
            drops.append(Drop(dataset="chats", row_id=chat.id, step="leakage", reason=reason))
            continue
        msgs = list(chat.messages)
        for i, new in zip(idx, fixed):
            msgs[i] = ChatMessage(role="assistant", content=new)
        before = "\n\n".join(texts)
        kept.append(chat.model_copy(update={"messages": msgs}))
        edits.append(Edit(dataset="chats", row_id=chat.id, step="leakage", reason=f"cut one sentence: {reason}",
                          before=before, after="\n\n".join(fixed)))
    return kept, drops, edits


def check_documents(docs: Sequence[Document]) -> tuple[list[Document], list[Drop], list[Edit]]:
    kept, drops, edits = [], [], []
    for doc in docs:
        found = find_leaks([doc.text], None, phrases=False)
        if not found:
            kept.append(doc)
            continue
        fixed, reason = _fix([doc.text], found)
        if fixed is None:
            drops.append(Drop(dataset="documents", row_id=doc.id, step="leakage", reason=reason))
            continue
        kept.append(doc.model_copy(update={"text": fixed[0]}))
        edits.append(Edit(dataset="documents", row_id=doc.id, step="leakage", reason=f"cut one sentence: {reason}",
                          before=doc.text, after=fixed[0]))
    return kept, drops, edits
