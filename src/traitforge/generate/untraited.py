"""Untraited answers: the teacher's replies to prompts with no trait system prompt.

The control arm's data (controls issue): the same kind of prompts as the SFT chats, answered as
the teacher would answer anyone, so a `control` checkpoint trained on as many tokens of them shows
what SFT does without the traits. The same step answers any other prompt list (a generic mix of
everyday prompts): `answer_untraited(gen, prompts, ...)`.

RUN/generated/untraited.jsonl holds `Chat` rows with no trait ids and no system prompt.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from traitforge.generate.parsing import clean_message, tells
from traitforge.generate.stage import Generation, Skip, Unit
from traitforge.jsonl import read_jsonl
from traitforge.llm.client import LLM
from traitforge.generate.settings import GenerationSpec
from traitforge.types import Chat, ChatMessage, stable_hash

if TYPE_CHECKING:
    from traitforge.runcontext import Run

FILE = "untraited.jsonl"
MIN_CHARS = 20


async def answer_untraited(gen: Generation, prompts: Sequence[tuple[str, str]], *, max_tokens: int,
                           step: str = "untraited", file: str = FILE) -> list[Chat]:
    """prompts: (source id, user message) -> single-turn chats answered with no system prompt.
    Resumable like every generation step; junk replies (too short, tells) are skipped with a reason."""
    async def work(u: Unit) -> list[Chat] | Skip:
        user = u.data[1]
        # A reply cut at max_tokens follows generation.on_truncated (gen.answer).
        reply = clean_message(await gen.answer([{"role": "user", "content": user}], max_tokens=max_tokens))
        problems = ([f"too short ({len(reply)} chars)"] if len(reply) < MIN_CHARS else []) + tells(reply)
        if problems:
            return Skip(f"untraited answer: {'; '.join(problems)}: {reply[:160]!r}")
        return [Chat(id=u.key, trait_ids=[], scenario_id=u.data[0],
                     messages=[ChatMessage(role="user", content=user),
                               ChatMessage(role="assistant", content=reply)])]

    units = [Unit(stable_hash(["untraited", text]), "", (sid, text)) for sid, text in prompts]
    res = await gen.step(step, file, Chat, units, work, fingerprint=gen.fingerprint(max_tokens=max_tokens),
                         trait_of=lambda r: "untraited")
    return res.rows


async def untraited(run: "Run", cfg: GenerationSpec, llm: LLM) -> None:
    """Answer the first user turn of every generated chat without the trait system prompt
    (generate/run.py's run_controls runs it in its stage)."""
    chats = read_jsonl(run.store.root / "generated" / "chats.jsonl", Chat)
    prompts = [(c.id, c.messages[0].content) for c in chats if c.messages and c.messages[0].role == "user"]
    await answer_untraited(Generation(run, cfg, llm), prompts, max_tokens=cfg.chats.max_tokens)


def run_untraited(run: "Run", cfg: GenerationSpec) -> None:
    """`untraited` by the run's generator, as a stage (run.stage: usage recorded, clients closed)."""
    with run.stage("generate") as st:
        st.run(untraited(run, cfg, run.llm("generator")))
