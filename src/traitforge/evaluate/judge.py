"""Parse judge replies robustly. Anything that cannot be read is unscored (None, with a reason),
never counted as a failure: a judge that rambles must not make a checkpoint look worse. The judges
reason first (<reasoning>...</reasoning>), so every verdict is read after the reasoning, and the
last one given wins."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from traitforge.llm.structured import extract_json
from traitforge.tags import after_reasoning, tag

_YES = re.compile(r"^\W*(yes|no)\b", re.I)
_YES_ANY = re.compile(r"\b(yes|no)\b", re.I)
_ANSWER = re.compile(r"^[\s*_#>-]*(?:answer|verdict)[\s*_]*[:=][\s*_]*(yes|no)\b", re.I | re.M)
_SCORE = re.compile(r"score\W{0,5}(\d{1,2}(?:\.\d+)?)(?:\s*/\s*10)?", re.I)
_VERDICT = re.compile(r"verdict\W{0,5}(pass|fail)", re.I)
_TURN = re.compile(r"turn\s*(\d+)\s*[:\-.)]\s*(no violation|violation|violates|violated|ok|consistent)"
                   r"(?:\D{0,20}(\d{1,2}(?:\.\d+)?))?", re.I)
PASS_THRESHOLD = 6.0  # rubric: 6 = acceptable, consistent with the trait


@dataclass(frozen=True)
class YesNo:
    value: bool | None
    reason: str


@dataclass(frozen=True)
class Rubric:
    score: float | None
    passed: bool | None
    reason: str


@dataclass(frozen=True)
class TurnVerdict:
    turn: int
    violation: bool | None
    score: float | None


def parse_yes_no(text: str) -> YesNo:
    """YES/NO after the reasoning: an <answer> tag or the last "ANSWER: YES" line; else (a judge
    that left out the format) YES/NO on the first line after the reasoning, or one unambiguous yes
    or no there."""
    reason = text.strip()[:300]
    body = tag(text, "answer")
    if body is not None and _YES.match(body):
        return YesNo(_YES.match(body).group(1).lower() == "yes", reason)
    lines = _ANSWER.findall(after_reasoning(text))
    if lines:
        return YesNo(lines[-1].lower() == "yes", reason)
    text = after_reasoning(text)
    first = (text.strip().splitlines() or [""])[0]
    m = _YES.match(first)
    if m and len({w.lower() for w in _YES_ANY.findall(first)}) == 1:
        return YesNo(m.group(1).lower() == "yes", text.strip()[:300])
    found = {w.lower() for w in _YES_ANY.findall(text)}
    if len(found) == 1:
        return YesNo(found.pop() == "yes", text.strip()[:300])
    return YesNo(None, "unparseable judge reply: " + text.strip()[:200])


def parse_rubric(text: str) -> Rubric:
    """SCORE 1-10 and VERDICT PASS/FAIL (or the same as JSON). A missing verdict is derived from
    the score; a score outside 1-10 or no score at all is unscored."""
    score: float | None = None
    verdict: bool | None = None
    try:
        obj = extract_json(after_reasoning(text))
        if isinstance(obj, dict):
            s = obj.get("score")
            score = float(s) if isinstance(s, (int, float)) and not isinstance(s, bool) else None
            v = obj.get("verdict", obj.get("pass"))
            if isinstance(v, bool):
                verdict = v
            elif isinstance(v, str) and v.strip().lower() in ("pass", "fail"):
                verdict = v.strip().lower() == "pass"
    except (ValueError, json.JSONDecodeError):
        pass
    rest = after_reasoning(text)  # the reasoning may quote a score; the verdict comes after it
    if score is None:
        found = _SCORE.findall(rest)
        score = float(found[-1]) if found else None
    if verdict is None:
        found = _VERDICT.findall(rest)
        verdict = (found[-1].lower() == "pass") if found else None
    if score is None or not 1 <= score <= 10:
        why = "no score" if score is None else f"score {score:g} outside 1-10"
        return Rubric(None, None, f"unparseable judge reply ({why}): " + text.strip()[:200])
    if verdict is None:
        verdict = score >= PASS_THRESHOLD
    return Rubric(score, verdict, text.strip()[:300])


def parse_turns(text: str, turns: int) -> list[TurnVerdict]:
    """One verdict per turn 1..turns; turns the judge did not grade readably are None."""
    seen: dict[int, TurnVerdict] = {}
    for m in _TURN.finditer(after_reasoning(text)):  # a turn graded twice: the last line stands
        t = int(m.group(1))
        if not 1 <= t <= turns:
            continue
        word = m.group(2).lower()
        violation = word in ("violation", "violates", "violated")
        score = float(m.group(3)) if m.group(3) else None
        if score is not None and not 1 <= score <= 10:
            score = None
        seen[t] = TurnVerdict(t, violation, score)
    return [seen.get(t, TurnVerdict(t, None, None)) for t in range(1, turns + 1)]
