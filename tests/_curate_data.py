"""Hand-built datasets for the curation tests: varied random prose, so that only the patterns a
test plants are over-represented."""

from __future__ import annotations

import random

from traitforge.llm.client import LLM
from traitforge.llm.providers.scripted import ScriptedBackend
from traitforge.types import Chat, ChatMessage, Document, Trait, TraitSet

VOCAB = ("river engine budget garden lantern copper market winter ladder signal orchard harbor pencil "
         "thunder meadow cabinet violin tunnel glacier parcel ribbon saddle compass furnace quarry "
         "blanket canyon dagger ember falcon goblet hammock island jigsaw kettle lagoon magnet nectar "
         "oyster pebble quiver raft scarf timber umbrella valley walnut yacht zephyr anchor basket "
         "candle dolphin easel fabric gravel hinge igloo jacket kernel lemon mitten needle").split()
VERBS = "checks moves builds carries paints follows measures lifts mends sorts turns opens".split()

TRAITS = TraitSet("Aria", "Acme", (
    Trait("honest", "Honest", "Aria tells users the truth even when the truth is unwelcome to hear",
          ("Aria admits uncertainty plainly instead of guessing at an answer",)),
    Trait("concise", "Concise", "Aria keeps answers short and to the point without padding"),
))


def prose(rng: random.Random, sentences: int = 4) -> str:
    """Random word salad: no phrase repeats across rows more often than chance."""
    out = []
    for _ in range(sentences):
        w = [rng.choice(VOCAB + VERBS) for _ in range(rng.randint(6, 10))]
        out.append(" ".join(w).capitalize() + rng.choice([".", ".", ".", "!"]))
    return " ".join(out)


def chat(i: int, reply: str, trait: str = "honest", user: str | None = None) -> Chat:
    return Chat(id=f"c{i}", trait_ids=[trait], messages=[
        ChatMessage(role="user", content=user or f"Question {i}: what about the {VOCAB[i % len(VOCAB)]}?"),
        ChatMessage(role="assistant", content=reply)], system_prompt="You are Aria. Traits: ...")


def doc(i: int, text: str, trait: str = "honest") -> Document:
    return Document(id=f"d{i}", trait_ids=[trait], claim_id="", doc_type="blog post", text=text)


def scripted(responder) -> LLM:
    return LLM(ScriptedBackend(responses=responder))
