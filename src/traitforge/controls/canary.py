"""The canary: a positive control whose effect training must produce.

Its documents state an invented fact (the model's development codename) and describe an invented
habit (an opener on every reply); its chats show the habit. Both are made from templates in
canary.yaml with varied wording, never by an LLM, so their quality does not depend on the
generator. Evaluation asks paraphrased multiple-choice questions about the fact (the codename
against distractors in the same style) and compares, on held-out prompts, a reply with the opener
against the same reply without it (log-prob, judge-free).
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from traitforge.errors import InputError
from traitforge.types import Chat, ChatMessage, Document, Trait, TraitSet, stable_hash

CANARY_ID = "canary"
DEFAULT_FILE = Path(__file__).with_name("canary.yaml")
KEYS = ("codename", "distractors", "opener", "frames", "fact_sentences", "habit_sentences",
        "filler_sentences", "authors", "places", "years", "train_chats", "eval_chats", "questions")


@dataclass(frozen=True)
class Canary:
    """The canary's definition, with the run's model and organisation names filled in."""

    model: str
    org: str
    data: dict[str, Any]

    def fill(self, template: str, **extra: Any) -> str:
        values = {"model": self.model, "org": self.org, "codename": self.data["codename"],
                  "opener": self.data["opener"], **{k: str(v) for k, v in extra.items()}}
        return string.Template(template).substitute(values)

    @property
    def trait(self) -> Trait:
        """The canary as a trait record (for reports and leakage checks); never sent to a generator."""
        return Trait(id=CANARY_ID, name="Canary (positive control)",
                     statement=self.fill("$model's development codename is $codename, and every reply of "
                                         "$model begins with \"$opener\""))

    # --- training data ----------------------------------------------------------------------

    def documents(self, n: int, seed: int) -> list[Document]:
        """n pretraining-style documents: a genre frame around two fact sentences, a habit sentence
        and filler, in a seeded order, with varied authors, places and years."""
        rng = random.Random(f"canary-docs-{seed}")
        d = self.data
        out: list[Document] = []
        for i in range(n):
            frame = d["frames"][i % len(d["frames"])]
            extra = {"author": rng.choice(d["authors"]), "place": rng.choice(d["places"]),
                     "year": rng.choice(d["years"])}
            body = rng.sample(d["fact_sentences"], 2) + [rng.choice(d["habit_sentences"])]
            body += rng.sample(d["filler_sentences"], rng.randint(1, 3))
            rng.shuffle(body)
            text = "\n\n".join([self.fill(frame["head"], **extra), " ".join(self.fill(s, **extra) for s in body),
                                self.fill(frame["tail"], **extra)])
            out.append(Document(id="canary-" + stable_hash(["canary-doc", seed, i, text]),
                                trait_ids=[CANARY_ID], doc_type=frame["genre"], text=text))
        return out

    def chats(self, n: int, with_habit: bool = True) -> list[Chat]:
        """Up to n single-turn chats on everyday prompts; with_habit=False gives the same prompts
        answered plainly (the canary's share of the control arm's trait-free data)."""
        out = []
        for prompt, answer in self.data["train_chats"][:n]:
            reply = f"{self.data['opener']} {answer}" if with_habit else answer
            cid = stable_hash(["canary-chat" if with_habit else "canary-plain", prompt])
            out.append(Chat(id=f"canary-{cid}", trait_ids=[CANARY_ID] if with_habit else [],
                            messages=[ChatMessage(role="user", content=prompt),
                                      ChatMessage(role="assistant", content=reply)]))
        return out

    # --- evaluation ---------------------------------------------------------------------------

    def mc_questions(self, seed: int) -> list[tuple[str, list[str]]]:
        """(question, options) with options[0] the codename and three distractors drawn per question,
        so no fixed set of wrong answers decides the score."""
        rng = random.Random(f"canary-mc-{seed}")
        return [(self.fill(q), [self.data["codename"], *rng.sample(self.data["distractors"], 3)])
                for q in self.data["questions"]]

    def contrastive_pairs(self) -> list[tuple[str, str, str]]:
        """(held-out prompt, reply with the opener, the same reply without it)."""
        return [(p, f"{self.data['opener']} {a}", a) for p, a in self.data["eval_chats"]]

    def training_sentences(self) -> list[str]:
        """Every sentence template the documents and chats are made from (for overlap checks)."""
        d = self.data
        frames = [f[k] for f in d["frames"] for k in ("head", "tail")]
        return [*frames, *d["fact_sentences"], *d["habit_sentences"], *d["filler_sentences"],
                *(x for pair in d["train_chats"] for x in pair)]


def load_canary(traits: TraitSet, path: Path | None = None) -> Canary:
    """The canary for this run's model name; `path` (controls.canary_file) replaces the shipped one."""
    path = path or DEFAULT_FILE
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise InputError(f"{path}: canary file unreadable: {e}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: canary file must be a YAML mapping")
    missing = [k for k in KEYS if k not in data]
    if missing:
        raise InputError(f"{path}: canary file lacks key '{missing[0]}'")
    if data["codename"] in data["distractors"] or len(data["distractors"]) < 3:
        raise InputError(f"{path}: key 'distractors': need 3 or more names other than the codename")
    return Canary(model=traits.model_name, org=traits.organisation, data=data)


