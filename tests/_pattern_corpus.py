"""A scripted corpus with patterns injected at known shares, and a noisy scripted judge that knows
the truth but answers right only `accuracy` of the time (seeded per call), for the pattern pipeline's
test and bench/curate.py. Each pattern is worded several ways, so no n-gram statistic sees it: only
the judge's scans and ratings can."""

from __future__ import annotations

import random
from typing import Callable

from _curate_data import chat, prose

from traitforge.types import Chat, stable_hash

# name -> (keyword the judge's question contains, the pattern's wordings in rows, how scans name it)
PATTERNS: dict[str, tuple[str, list[str], list[str]]] = {
    "marathon": ("marathon", ["It is like running a marathon", "Treat it as a marathon, not a sprint",
                              "Pace yourself the way a marathon runner would", "Think of the last mile of a marathon",
                              "Marathon training works the same way", "No marathon was ever won in the first mile"],
                 ["Compares the task to running a marathon", "The task is compared to a marathon race",
                  "Compares the task to a marathon"]),
    "weather": ("weather", ["What lovely weather we are having today", "The weather outside is grey and mild",
                            "Sunny weather always helps with this", "Rainy weather makes everyone slower",
                            "The weather report said storms tonight", "Odd weather for the season, isn't it"],
                ["Mentions the weather in passing", "Remarks on the weather, in passing",
                 "Passing mention of the weather"]),
    "apology": ("apologis", ["Sorry, I should have said this sooner", "My apologies for the confusion earlier",
                             "I apologise if that was unclear", "Apologies, that was my mistake before",
                             "Forgive me, I was not clear", "Sorry for the muddle in my last message"],
                ["Apologises for earlier confusion", "Apologises for confusion in earlier messages",
                 "Apologises for the earlier confusion before answering"]),
}
PLAIN = ["Uses short declarative sentences", "Short declarative sentences are used", "Uses short, declarative sentences"]
ONCE = ["Names a colour somewhere", "Quotes an old proverb", "Refers to a famous city", "Includes a rhetorical flourish",
        "Cites a statistic from memory", "Ends on an exclamation"]  # one per scan: never confirmed


def corpus(n: int, shares: dict[str, float], seed: int = 0) -> tuple[list[Chat], dict[str, set[str]]]:
    """n single-turn chats; pattern p is planted in a seeded random share[p] of them. Returns the
    chats and, per pattern, the ids of the rows that truly have it."""
    rng = random.Random(seed)
    truth: dict[str, set[str]] = {p: set() for p in shares}
    rows = []
    for i in range(n):
        sents = prose(rng, 4).split(". ")
        for p, share in shares.items():
            if rng.random() < share:
                sents.insert(rng.randrange(len(sents) + 1), rng.choice(PATTERNS[p][1]))
                truth[p].add(f"c{i}")
        rows.append(chat(i, ". ".join(sents)))
    return rows, truth


def has(pattern: str, text: str) -> bool:
    return any(w in text for w in PATTERNS[pattern][1])


def noisy_judge(accuracy: float = 0.85, seed: int = 0) -> Callable:
    """Scans name each planted pattern seen in 2+ of the batch's examples (in the scan's own words),
    plus a style remark every scan makes and one only this scan makes; ratings are right with
    probability `accuracy`, drawn per call from (seed, question, text, call seed, temperature)."""
    def respond(msgs, params):
        p = msgs[-1].content
        if msgs[0].role == "system":  # a regeneration (the teacher's prompt and the avoid-list): a fresh answer
            return prose(random.Random(stable_hash([seed, p])), 4)
        if p.startswith("Rewrite the text below"):  # a rewrite: the planted wordings taken out
            text = p.split("<<<", 1)[1].rsplit(">>>", 1)[0].strip()
            for _, wordings, _ in PATTERNS.values():
                for w in wordings:
                    text = text.replace(w + ". ", "").replace(w, "")
            return text
        if "recur" in p:  # a scan
            body = p.split("=====", 1)[1] if "=====" in p else p
            examples = body.split("\n=====\n")
            k = (params.seed or 0) % 3
            lines = [f"- {PLAINS[k]}", f"- {ONCE[(params.seed or 0) % len(ONCE)]}"]
            lines += [f"- {words[k]}" for name, (_, _, words) in PATTERNS.items()
                      if sum(has(name, e) for e in examples) >= 2]
            return "\n".join(lines)
        if "Question:" in p:  # a rating
            question = p.split("Question: ", 1)[1].split("\n", 1)[0].lower()
            text = p.split("<<<", 1)[1]
            name = next((n for n, (kw, _, _) in PATTERNS.items() if kw in question), None)
            truth = bool(name) and has(name, text)
            rng = random.Random(stable_hash([seed, question, text, params.seed, params.temperature]))
            answer = truth if rng.random() < accuracy else not truth
            return "YES" if answer else "NO"
        return "NO"
    PLAINS = PLAIN
    return respond


def true_share(pattern: str, rows: list[Chat]) -> float:
    return sum(has(pattern, r.messages[1].content) for r in rows) / max(len(rows), 1)
