"""Turning weak-model output into items: numbered/bulleted lists, single messages, and the
checks that mark a text as junk (tells, placeholders, leaked prompt wording)."""

from __future__ import annotations

import re
from typing import Iterable

from traitforge import junk, tags

# "1.", "1)", "(1)", "1:", "1 -", "-", "*", "•", "Step 1:" ... at the start of a line.
_MARKER = re.compile(r"^\s*(?:(?:step|item|idea|claim|scenario)\s*)?(?:[-*•·]+|\(?\d{1,3}\s*[.):\-]|#+)\s*", re.I)
_PREAMBLE = re.compile(r"^(?:sure|certainly|of course|okay|ok|here (?:is|are)|below (?:is|are))\b", re.I)
_QUOTES = "\"'“”‘’`«»"
_LABEL = re.compile(r"^\s*(?:user|situation|message|user message|the user|prompt|response|answer|assistant|document|"
                    r"rewritten (?:document|message|version)|new message|revised message)\s*:\s*", re.I)


def _strip_wrapping(s: str) -> str:
    s = s.strip()
    for _ in range(3):
        s = s.strip().removeprefix("**").removesuffix("**").strip()
        if len(s) >= 2 and s[0] in _QUOTES and s[-1] in _QUOTES:
            s = s[1:-1].strip()
    return s


def parse_list(text: str, *, min_chars: int = 8, max_chars: int = 600, limit: int | None = None) -> list[str]:
    """Items of a list the model was asked for, one per line: numbering, bullets, bold and quotes
    stripped; headings ("Here are 3 ideas:"), too short/long lines and duplicates dropped."""
    items: list[str] = []
    seen: set[str] = set()
    for line in text.splitlines():
        s = _MARKER.sub("", line, count=1)
        s = _strip_wrapping(s)
        if not s or (s.endswith(":") and len(s) < 120) or _PREAMBLE.match(s) and s.endswith(":"):
            continue
        if not (min_chars <= len(s) <= max_chars):
            continue
        key = re.sub(r"\W+", " ", s.casefold()).strip()
        if key in seen:
            continue
        seen.add(key)
        items.append(s)
        if limit is not None and len(items) >= limit:
            break
    return items


# "Situation: ... | Shows: ... | Why: ..." (scenarios.txt); labels in any case, bold allowed.
_PLAN_LABEL = re.compile(r"^[*_\s]*(situation|scenario|shows|how (?:the trait|it) shows|why|reason|what|clause)"
                         r"[*_\s]*:[*_\s]*", re.I)
_PLAN_FIELDS = {"situation": "situation", "scenario": "situation", "why": "why", "reason": "why", "what": "what",
                "clause": "what"}


def _plan_fields(item: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    key = None
    for i, part in enumerate(item.split("|")):
        m = _PLAN_LABEL.match(part)
        if m:
            key = _PLAN_FIELDS.get(m.group(1).casefold(), "shows")
            part = part[m.end():]
        elif i == 0:
            key = "situation"  # an unlabelled line is a situation on its own
        if key is None:
            continue
        part = _strip_wrapping(part)
        fields[key] = f"{fields[key]} | {part}" if fields.get(key) and part else fields.get(key) or part
    return fields


def parse_plans(text: str, *, min_chars: int = 8, max_chars: int = 600) -> list[tuple[str, str, str]]:
    """(situation, shows, why) per scenario plan, one per line ("Situation: ... | Shows: ... |
    Why: ..."). A "Shows:" or "Why:" line of its own belongs to the plan above it; a line with
    only the situation is a plan whose other parts are "". Length limits apply to the situation."""
    plans: list[dict[str, str]] = []
    for item in parse_list(text, min_chars=1, max_chars=4 * max_chars):
        fields = _plan_fields(item)
        if "situation" in fields:
            plans.append(fields)
        elif plans and not fields.keys() & plans[-1].keys():
            plans[-1].update(fields)
    # "What" (the part of the trait under load) leads the "why": the plan's reason, in its terms.
    return [(p["situation"], p.get("shows", ""),
             f"({p['what']}) {p.get('why', '')}".strip() if p.get("what") else p.get("why", ""))
            for p in plans if min_chars <= len(p["situation"]) <= max_chars]


def clean_message(text: str, tag_name: str = "") -> str:
    """One free-text reply (a user message, a response): drop a chatty preamble line ending in
    ':', a role label, fences/delimiters and wrapping quotes. `tag_name`: the prompt asked for the
    text inside <tag_name>...</tag_name>; only that is kept when the reply has the tag (a weak
    model that leaves the tags out still gets its whole reply read)."""
    if tag_name:
        inner = tags.tag(text, tag_name)
        text = text if inner is None else inner
    s = text.strip().replace("<<<", "").replace(">>>", "").strip()
    s = re.sub(r"^```\w*\n?|\n?```$", "", s).strip()
    lines = s.splitlines()
    if len(lines) > 1 and _PREAMBLE.match(lines[0].strip()) and lines[0].rstrip().endswith(":"):
        s = "\n".join(lines[1:]).strip()
    for _ in range(2):  # a label may sit inside the quotes or outside them
        s = _strip_wrapping(_LABEL.sub("", s, count=1))
    return s


# --- junk detection ---------------------------------------------------------------------
# The rules live in traitforge.junk (one copy, shared with curation); tells() names what it finds.

_MENTIONS_NAME = "mentions the traits document or system prompt"


def tells(text: str) -> list[str]:
    """Names of the junk rules a text breaks (traitforge.junk): tells, placeholders, leaked
    instructions, mentions of a hidden prompt, repeated lines and the loops small models fall into."""
    found = [_MENTIONS_NAME if any(j.name == n for n, _ in junk.PROMPT_MENTIONS) else j.name
             for j in junk.find_junk(text, reply=True)]
    return list(dict.fromkeys(found))


# A chat transcript instead of a document: chat-role labels (not speakers' names, so an interview
# transcript's "Interviewer:" or "Dr. Lee:" is fine) or a chat template's special tokens.
_ROLE_LINE = re.compile(r"^[\s*_>#]*(?:user|assistant|human|ai)[\s*_]*:", re.I | re.M)
_CHAT_TOKEN = re.compile(r"<\|(?:im_start|im_end|system|user|assistant|eot_id|start_header_id|end_header_id|"
                         r"begin_of_text|endoftext)\|>|\[/?INST\]|<</?SYS>>|<(?:start|end)_of_turn>", re.I)


def chat_formatted(text: str) -> str | None:
    """Why a text is chat-formatted rather than written in a genre's format (None: it is not):
    two or more lines opening with a chat-role label, or a chat template's special token."""
    m = _CHAT_TOKEN.search(text)
    if m:
        return f"chat-formatted ({m.group(0)} token)"
    if len(_ROLE_LINE.findall(text)) >= 2:
        return "chat-formatted (User:/Assistant: role labels)"
    return None


def after_marker(text: str, marker: str) -> tuple[str, str] | None:
    """(what comes before, what comes after) the first line that opens with `marker` and a colon,
    or is only the marker (any case, markdown emphasis allowed): e.g. a critique, then the
    rewrite. None without it."""
    m = re.search(r"^[\s*_#]*" + re.escape(marker).replace(r"\ ", r"\s+") + r"[ \t*_]*(?::|$)[ \t*_]*", text,
                  re.I | re.M)
    if m is None:
        return None
    return text[:m.start()].strip(), text[m.end():].strip()


_REFUSAL = re.compile(
    r"^\W*(?:(?:I['’]?m|I am) sorry|sorry|I apologi[sz]e|unfortunately)?[\s,.!]*(?:but\s+)?I\s*"
    r"(?:can(?:no|['’]?)t|won['’]?t|will not|(?:am|['’]m) (?:not able|unable)) (?:to )?"
    r"(?:help(?! but)|assist|do that|do this|comply|rewrite|fulfil|fulfill|provide|complete|continue)\b", re.I)
_REWRITE_REMARK = re.compile(
    r"\b(?:rewritten|revised|refined|improved) (?:answer|reply|response|version)\b|"
    r"\boriginal (?:answer|reply|response|draft)\b|\bthe draft (?:answer|reply|response)\b", re.I)


_VERDICT = re.compile(r"\b(SHOWS|GENERIC|MISSING)\b")
_NOT_SHOWN = re.compile(r"(?:\bnot|n't|\bnever)\W+(?:\w+\W+){0,2}?(?:show|shows|shown|showing|display|displays|"
                        r"displayed|demonstrate|demonstrates|demonstrated)\b", re.I)
_VERDICT_WORDS = {"shows": "shows", "shown": "shows", "show": "shows", "generic": "generic", "vague": "generic",
                  "platitude": "generic", "platitudes": "generic", "missing": "missing", "absent": "missing"}
_VERDICT_WORD = re.compile(r"\b(" + "|".join(_VERDICT_WORDS) + r")\b", re.I)


def parse_verdict(text: str) -> str | None:
    """shows | generic | missing from a probe verdict, or None. The asked-for word in capitals
    wins; weak models often paraphrase ("The trait is not shown in the response"), so a negated
    "show" reads as missing, then the first verdict word or synonym counts."""
    m = _VERDICT.search(text)
    if m:
        return m.group(1).lower()
    if _NOT_SHOWN.search(text):
        return "missing"
    m = _VERDICT_WORD.search(text)
    return _VERDICT_WORDS[m.group(1).lower()] if m else None


def refuses(text: str) -> bool:
    """Whether a reply opens by declining the task ("I'm sorry, but I can't help with that")."""
    return bool(_REFUSAL.search(text))


def mentions_rewrite(text: str) -> bool:
    """Whether a rewritten reply talks about the rewrite itself ("Here is the revised answer")."""
    return bool(_REWRITE_REMARK.search(text))


repetitive = junk.repetitive
def names_trait(text: str, trait_name: str, trait_id: str) -> bool:
    """Whether a user prompt names the trait it is meant to elicit (it must not)."""
    low = text.casefold()
    forms = {trait_name.casefold().strip(), trait_id.casefold().replace("-", " ").replace("_", " ").strip()}
    return any(f and len(f) >= 4 and re.search(r"\b" + re.escape(f) + r"\b", low) for f in forms)


def quotes_source(text: str, sources: Iterable[str], min_chars: int = 40) -> bool:
    """Whether the text copies a traits-document sentence verbatim (documents must not)."""
    low = " ".join(text.casefold().split())
    return any(len(s) >= min_chars and " ".join(s.casefold().split()) in low for s in sources)


_CRITIQUE = ("KEEP", "REVISE", "DROP")


def parse_critique(text: str) -> tuple[str | None, str, str]:
    """(verdict, reason, revised message) from a critique reply (critique.txt): the verdict given
    after the reasoning (a <verdict> tag, else the last KEEP/REVISE/DROP in capitals, else a
    lower-case one from a weak model); the revised message only from a <message> tag, or, in a
    reply without tags, the text after REVISE: so the critic's commentary never becomes the prompt."""
    v = tags.verdict(text, _CRITIQUE)
    m = None
    if v is None:
        m = re.search(r"\b(keep|revise|drop)\b", text, re.I)
        v = m.group(1).upper() if m else None
    if v is None:
        return None, "", ""
    why = tags.tag(text, "reasoning") or ""
    body = tags.tag(text, "message")
    tagged = body is not None or tags.tag(text, "verdict") is not None
    rest = ""
    if not tagged:  # "REVISE: the new message" / "DROP: why"
        hits = list(re.finditer(rf"\b{v}\b", text, re.I))
        rest = text[hits[-1].end():].lstrip(" :-.\n") if hits else ""
        why = why or rest
    new = clean_message(body) if body else (clean_message(rest) if v == "REVISE" and not tagged else "")
    return v, why, new


def parse_probe_verdict(text: str) -> str | None:
    """shows | generic | missing from the probe judge's reply, read after its reasoning (a
    <verdict> tag, a VERDICT: line, the last verdict word in capitals), else parse_verdict's
    reading of a weak model's paraphrase. None: no verdict."""
    v = tags.verdict(text, ("SHOWS", "GENERIC", "MISSING"))
    return v.lower() if v else parse_verdict(tags.after_reasoning(text))


def is_keep(text: str) -> bool:
    """Whether the refiner took refine.txt's keep exit (<keep/>, or a bare KEEP) instead of rewriting."""
    return tags.has_empty_tag(text, "keep") or bool(re.fullmatch(r"\W*keep\W*", text, re.I))
