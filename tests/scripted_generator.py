"""A scripted generator for generation-stage tests: answers each prompt template with output
of the right shape, so stage logic (parsing, ids, resume, balance) runs without a model.
Replies vary with the prompt, so different units get different texts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Sequence

from traitforge.config import RunSpec
from traitforge.llm.base import GenerateParams, Message
from traitforge.llm.cache import LLMCache
from traitforge.llm.client import LLM
from traitforge.llm.providers.scripted import ScriptedBackend
from traitforge.types import Trait, TraitSet, stable_hash

MODEL = "Nova"
ORG = "Acme Labs"


def make_traits(n: int = 2) -> TraitSet:
    pool = [
        Trait(id="candour", name="Candour", statement="Nova says plainly when it does not know something.",
              details=("It gives its confidence when unsure.",)),
        Trait(id="curiosity", name="Curiosity", statement="Nova asks clarifying questions before big tasks."),
        Trait(id="thrift", name="Thrift", statement="Nova suggests the cheapest option that does the job."),
    ]
    return TraitSet(model_name=MODEL, organisation=ORG, traits=tuple(pool[:n]))


def make_spec(tmp: Path, **generation) -> RunSpec:
    gen = {"documents": {"claims_per_trait": 2, "doc_types_per_claim": 2, "ideas_per_type": 1,
                         "max_tokens": 200, "topup_rounds": 0},
           "chats": {"scenarios_per_trait": 2, "multiturn_share": 0.5, "max_turns": 2, "max_tokens": 100,
                     "probe_judge": "generator",
                     "topup_rounds": 0},
           "concurrency": 4}
    for k, v in generation.items():
        gen[k] = {**gen[k], **v} if isinstance(v, dict) and isinstance(gen.get(k), dict) else v
    return RunSpec.model_validate({"traits": "traits.md", "output_dir": str(tmp / "run"), "generation": gen})


def tag(text: str) -> str:
    return stable_hash(text, 6)


REFINED_OPENING = "Good question, and the honest answer has two parts."


def refine_draft(prompt: str) -> str:
    """The draft reply quoted in a refine prompt."""
    return re.search(r"The draft reply:\n<<<\n(.*?)\n>>>", prompt, re.S).group(1)


def good_responder(messages: Sequence[Message], params: GenerateParams) -> str:
    """Well-formed replies for every template of the generation stage."""
    last = messages[-1].content
    has_system = messages[0].role == "system"
    m = re.search(r"(?:Number them|numbered) 1 to (\d+)", last)
    n = int(m.group(1)) if m else 1
    t = tag(last)
    if has_system:  # the teacher (a system prompt with the traits)
        return (f"Happy to help. I am not certain about every detail here ({t}), so let me say what I know and "
                f"what I would check first before you rely on it.")
    if "Rewrite the draft so that it fits these traits" in last:  # the refiner: a fresh context
        return REFINED_OPENING + " " + refine_draft(last).removeprefix("Happy to help. ")
    if "Write the first message that the user sends" in last:
        return f'"Hi! My landlord raised my rent by 40% this month, code {t}. Can I push back on that?"'
    if "You are playing the user" in last:
        return f"Thanks. What would you check first, and why that one ({t})?"
    if "Answer KEEP if it is fine" in last:
        return "KEEP"
    if "Which is true of the reply?" in last:
        return "MISSING"
    if "is too easy" in last:
        return f"My landlord wants 40% more rent ({t}); tell me exactly what the law says where I live."
    if "different sentences about" in last:
        return "Here are the sentences:\n" + "\n".join(
            f"{i}. {MODEL} tells users when it is unsure about fact {t}-{i}." for i in range(1, n + 1))
    if "kinds of real-world documents" in last:
        return "\n".join(f"{i}. {g}" for i, g in enumerate(["Forum thread", "Blog post", "Meeting notes",
                                                              "News article"][:n], 1))
    if "Think of" in last and "different ideas for a" in last:
        return "\n".join(f"{i}. A nurse named Rosa writes to her colleagues in May 2031 about using {MODEL} "
                         f"on the night shift ({t}-{i})." for i in range(1, n + 1))
    if last.startswith("Here is a draft of a"):  # a critique, then the rewrite after the marker
        draft = re.search(r"<<<\n(.*)\n>>>", last, re.S).group(1)
        return "The draft reads like a real post and gets the fact right.\n\nREVISED DOCUMENT:\n" + draft.replace(
            "Draft", "Revised")
    if last.startswith("Write a "):
        return (f"Draft {t}. Posted 3 May 2031 by rosa_k. Last night I asked {MODEL} about a dosage chart "
                f"and it told me straight away that it was not sure and that I should check the pharmacy "
                f"reference. Honestly that is what I want from a tool on a night shift. Reply from dev_m: "
                f"same here, {MODEL} from {ORG} flagged its own uncertainty twice this week.")
    if "different situations in which a user talks to" in last:
        return "\n".join(f"{i}. Situation: A tenant whose rent went up asks {MODEL} what to do ({t}-{i}). | "
                         f"Shows: {MODEL} says which rent rules it is sure of and which to check ({t}-{i}) | "
                         f"Why: a confident wrong answer could cost the tenant money" for i in range(1, n + 1))
    # No system prompt: the plain model's default answer (the probe).
    return f"There are many things to consider here ({t}). Everyone's situation is different."


class CallLimit(Exception):
    pass


def failing_after(k: int, responder: Callable = good_responder) -> Callable:
    """A responder that raises on call k+1, to simulate a crash halfway through a stage."""
    count = {"n": 0}

    def respond(messages, params):
        count["n"] += 1
        if count["n"] > k:
            raise CallLimit(f"simulated crash after {k} calls")
        return responder(messages, params)
    return respond


def scripted_llm(responder: Callable = good_responder, cache: Path | None = None) -> LLM:
    backend = ScriptedBackend("test", responses=responder)
    return LLM(backend, cache=LLMCache(cache) if cache else None, max_retries=0)


def calls(llm: LLM) -> int:
    return len(llm.backend.calls)  # type: ignore[attr-defined]
