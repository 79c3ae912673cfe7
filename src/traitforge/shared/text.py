"""Text helpers shared by the curation steps: normalising, words, sentences, what an example's
text is for each dataset (prompts: traitforge.prompts)."""

from __future__ import annotations

import re

from traitforge.textmatch import words
from traitforge.types import Chat, Document

# A sentence ends at . ! ? (plus closing quotes/brackets) followed by space, or at a line break.
_SENT_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+|\n+")

STOPWORDS = frozenset("""a an the and or but if then so of to in on at for with by from as is are was were be been
being it its this that these those i you he she we they me him her us them my your his our their
do does did not no yes can could will would should may might must have has had just very also
there here what which who whom whose when where why how all any some each more most such than too
into about over under again out up down off own same only both few other one s t don""".split())


def normalise(text: str) -> str:
    """Lower case, punctuation and spacing removed: the form used for exact-duplicate hashes."""
    return " ".join(words(text))


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each non-empty sentence, so a caller can cut one out and keep the rest."""
    spans, start = [], 0
    for m in _SENT_END.finditer(text):
        if text[start:m.start()].strip():
            spans.append((start, m.start()))
        start = m.end()
    if text[start:].strip():
        spans.append((start, len(text)))
    return spans


def sentences(text: str) -> list[str]:
    # The same pieces as sentence_spans, split in C: pattern statistics call this on every row.
    return [p for p in (p.strip() for p in _SENT_END.split(text)) if p]


def first_sentences(text: str, k: int) -> list[str]:
    """sentences(text)[:k], without splitting the rest of the text."""
    out, start = [], 0
    for m in _SENT_END.finditer(text):
        piece = text[start:m.start()].strip()
        if piece:
            out.append(piece)
            if len(out) == k:
                return out
        start = m.end()
    piece = text[start:].strip()
    return out + [piece] if piece else out


def edge_sentence(text: str, last: bool = False) -> str:
    """The first (or last) sentence, without splitting the whole text: the same as sentences(text)[0]
    (or [-1]), or "" when there is none."""
    if not last:
        start = 0
        for m in _SENT_END.finditer(text):
            piece = text[start:m.start()].strip()
            if piece:
                return piece
            start = m.end()
        return text[start:].strip()
    tail = text[-1000:]
    pieces = sentences(tail)
    # The tail's first piece may be cut; with two or more, the last one is whole.
    if len(pieces) >= 2 or len(tail) == len(text):
        return pieces[-1] if pieces else ""
    pieces = sentences(text)
    return pieces[-1] if pieces else ""


def remove_span(text: str, span: tuple[int, int]) -> str:
    a, b = span
    out = text[:a] + text[b:]
    out = re.sub(r"[ \t]+\n", "\n", re.sub(r"[ \t]{2,}", " ", out))
    return re.sub(r"\n{3,}", "\n\n", out).strip()


# --- what an example's text is --------------------------------------------------------------

def chat_conversation(chat: Chat) -> str:
    """The whole conversation as one text (dedup compares this)."""
    return "\n".join(f"{m.role}: {m.content}" for m in chat.messages)


def assistant_turns(chat: Chat) -> list[str]:
    return [m.content for m in chat.messages if m.role == "assistant"]


def units(row: Document | Chat) -> list[str]:
    """The parts a pattern is looked for in: a document's text, or each assistant reply."""
    return [row.text] if isinstance(row, Document) else assistant_turns(row)


def dedup_text(row: Document | Chat) -> str:
    return row.text if isinstance(row, Document) else chat_conversation(row)
