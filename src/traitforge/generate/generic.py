"""The generic mix: diverse everyday prompts, written by the generator from prompts/generic_topics.txt,
answered by the teacher without the trait system prompt (the untraited-answers step). SFT mixes them
in with `training.sft.mix_file: generic` and `mix_ratio`, so trait SFT does not narrow the model.

RUN/generated/generic_prompts.jsonl holds the prompts (`UserPrompt`, scenario_id = the topic),
RUN/generated/generic.jsonl the chats (`Chat`, no trait ids, no system prompt)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from traitforge.generate.settings import GenerationSpec
from traitforge import tags
from traitforge.generate.parsing import parse_list, tells
from traitforge.generate.records import UserPrompt
from traitforge.generate.stage import Generation, Skip, Unit, split_evenly
from traitforge.prompts import PromptKit
from traitforge.generate.untraited import answer_untraited
from traitforge.llm.client import LLM
from traitforge.types import stable_hash

if TYPE_CHECKING:
    from traitforge.runcontext import Run

FILE = "generic.jsonl"


def topics(templates: PromptKit) -> list[str]:
    return parse_list(templates.text("generic_topics"), min_chars=3, max_chars=120)


def messages(text: str) -> list[str]:
    """The messages of a generic_prompts reply: each <message> (a message may run over several
    lines: pasted code or an article), else one per line from a model that left the tags out."""
    tagged = [m for m in tags.tags(text, "message") if 15 <= len(m) <= 6000]
    return tagged or parse_list(text, min_chars=15, max_chars=1500)


async def make_generic(gen: Generation, n_prompts: int, max_tokens: int) -> None:
    """`n_prompts` everyday prompts spread over the topics, each answered without a system prompt."""
    async def work(u: Unit) -> list[UserPrompt] | Skip:
        topic, n = u.data
        items, text = await gen.sample_items(
            gen.render("generic_prompts", n=n, topic=topic),
            lambda text: [s for s in messages(text) if not tells(s)][:n],
            max_tokens=gen.gen.list_max_tokens)
        if not items:
            return Skip(f"no usable prompts in the reply: {text[:160]!r}")
        return [UserPrompt(id=stable_hash(["generic", u.key, i]), scenario_id=topic, trait_id="", text=s)
                for i, s in enumerate(items)]

    units = [Unit(f"generic/{topic}", "", (topic, n)) for topic, n in split_evenly(n_prompts, topics(gen.templates)).items()]
    res = await gen.step("generic.prompts", "generic_prompts.jsonl", UserPrompt, units, work,
                         fingerprint=gen.fp("generic_prompts", "generic_topics", max_tokens=gen.gen.list_max_tokens),
                         key_of=lambda p: f"generic/{p.scenario_id}", trait_of=lambda p: "generic")
    await answer_untraited(gen, [(p.id, p.text) for p in res.rows], max_tokens=max_tokens,
                           step="generic.answers", file=FILE)


async def generic(run: "Run", cfg: GenerationSpec, llm: LLM) -> None:
    """The generic mix as `cfg` asks for it (pipeline.stage_generate runs it in its stage)."""
    await make_generic(Generation(run, cfg, llm), cfg.generic_prompts, cfg.chats.max_tokens)


def run_generic(run: "Run", cfg: GenerationSpec) -> None:
    """`generic` by the run's generator, as a stage (run.stage: usage recorded, clients closed)."""
    with run.stage("generate") as st:
        st.run(generic(run, cfg, run.llm("generator")))
