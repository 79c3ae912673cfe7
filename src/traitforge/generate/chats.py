"""SFT chats by context distillation: scenarios -> user prompts -> critique -> default-response
probe (harden prompts the plain model already handles) -> teacher drafts (the relevant traits in
a system prompt) -> refine (a fresh context rewrites each draft to fit the traits) -> multi-turn
continuations against a simulated user who pushes back (or, for chats.cooperative_share of them,
builds on the answers) -> chats.jsonl without the system prompt, plus
dpo_pairs.jsonl, candidate pairs (refined answer = chosen, plain default = rejected) that curation
turns into the trained pairs from the curated chats (curate/dpo.py). Traits whose chats fall short
of the plan get top-up rounds of new scenarios; chats.balance reports the shares."""

from __future__ import annotations

import math
import re
from collections import Counter
from string import Template

from typing import TYPE_CHECKING

from traitforge.generate.settings import GenerationSpec
from traitforge.shared.avoid import avoid_list, known_offenders, read_found
from traitforge.shared.leaks import LeakDetector
from traitforge.generate.parsing import (clean_message, is_keep, mentions_rewrite, names_trait, parse_critique,
                                        parse_plans, parse_probe_verdict, refuses, tells)
from traitforge.generate.records import DPOPair, Probe, Refinement, UserPrompt
from traitforge.generate.axes import load_axes
from traitforge.generate.prompt_leak import TraitLeakCheck
from traitforge.generate.stage import (TOPUP_KEY_BASE, CutOff, Generation, Skip, Unit, count_reasons, scaled_counts,
                                      split_evenly, trait_weights)
from traitforge.prompts import PACKAGE, PromptKit
from traitforge.llm.client import LLM
from traitforge.types import Chat, ChatMessage, Scenario, Trait, TraitSet, stable_hash

if TYPE_CHECKING:
    from traitforge.runcontext import Run

PROMPT_TEMPLATES = ("scenarios", "scenario_categories", "scenario_plan", "user_prompt", "critique", "probe_verdict",
                    "harden", "user_followup", "user_followup_cooperative", "refine", "select_traits", "avoid")
# Scenarios asked for beyond those kept: the first that comes to a model's mind is the obvious one.
EXTRA_SCENARIOS = 2
EARLIER_SHOWN = 12  # earlier scenarios of the same trait and category fed back to a top-up round
USER_STYLE_AXES = ("persona", "length", "register", "messiness")
# The over-application guard (scenario_categories.txt): the trait should NOT change the answer, so a
# plain answer that already does well is the point, not a reason to harden, and no preference pair.
RESTRAINT = "restraint"
_STOP = {"about", "their", "there", "which", "would", "should", "being", "other", "these", "those", "without",
         "where", "while", "model", "users", "always", "never", "things"}


def categories(templates: PromptKit = PACKAGE) -> list[tuple[str, str]]:
    """(name, hint template) pairs from prompts/scenario_categories.txt."""
    out = []
    for line in templates.text("scenario_categories").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, hint = line.partition("|")
            out.append((name.strip(), hint.strip()))
    return out


def relevant_traits(traits: TraitSet, target: Trait, text: str) -> list[Trait]:
    """The scenario's own trait, plus any other trait whose name words show up in the prompt:
    the teacher sees what bears on this conversation, not the whole document."""
    words = set(re.findall(r"[a-z]+", text.casefold()))
    out = [target]
    for t in traits.traits:
        keys = {w for w in re.findall(r"[a-z]+", t.name.casefold()) if len(w) >= 5 and w not in _STOP}
        if t.id != target.id and keys & words:
            out.append(t)
    return out


def transcript(messages: list[ChatMessage]) -> str:
    return "\n\n".join(f"{'User' if m.role == 'user' else 'Assistant'}: {m.content}" for m in messages)


def run_chats(run: "Run", cfg: GenerationSpec) -> None:
    """The chats, by the run's generator (the refiner rewrites the drafts: models.refiner, unset the
    generator; the probe's verdicts come from models.judge with chats.probe_judge: judge), as a stage
    (run.stage: usage recorded, clients closed)."""
    generator, refiner = run.llm("generator"), run.llm("refiner")
    judge = run.llm("judge") if cfg.chats.probe_default and cfg.chats.probe_judge == "judge" else None
    with run.stage("generate") as st:
        st.run(ChatsRun(run, cfg, generator, None if refiner is generator else refiner,
                        judge=None if judge is generator else judge).run())


class ChatsRun(Generation):
    def __init__(self, run: "Run", cfg: GenerationSpec, llm: LLM, refiner: LLM | None = None,
                 judge: LLM | None = None):
        super().__init__(run, cfg, llm)
        traits = run.traits
        self.cs = cfg.chats
        self.refiner = refiner or llm
        if self.refiner is not llm:
            self.clients["refiner"] = self.refiner
        # The probe's verdict on the plain model's answer: another model where the run has one.
        self.judge = judge or llm
        if self.judge is not llm:
            self.clients["judge"] = self.judge
        self.user_style = load_axes(self.templates, traits.model_name, "user_style")
        self.trait_leak = TraitLeakCheck(traits)
        self.by_id = {t.id: t for t in traits.traits}
        self.prompt_leak = LeakDetector(PROMPT_TEMPLATES, templates=self.templates)
        self.response_leak = LeakDetector(("teacher_system",) + PROMPT_TEMPLATES, templates=self.templates)
        self.names = dict(model_name=traits.model_name, organisation=traits.organisation)
        self.scenarios: dict[str, Scenario] = {}
        self.probes: list[Probe] = []  # of every round: the DPO pairs' rejected side
        self.avoid = avoid_list(known_offenders("chats"), self.templates) if self.cs.avoid_known else ""
        self.avoid_block = ""  # the patterns curation found, for top-up rounds' teacher prompts

    def short_trait(self, t: Trait) -> str:
        return f"{t.name}: {t.statement}"

    # --- checks --------------------------------------------------------------------------
    def prompt_problems(self, text: str, trait: Trait) -> list[str]:
        out = []
        if len(text) < 15:
            out.append(f"too short ({len(text)} chars)")
        if len(text) > 2500:
            out.append(f"too long ({len(text)} chars)")
        if names_trait(text, trait.name, trait.id):
            out.append("names the trait")
        if self.prompt_leak.leaks(text):
            out.append("copies the prompt's wording")
        out += tells(text)
        return out

    def user_prompt_problems(self, text: str, trait: Trait) -> list[str]:
        """A first user message's problems: prompt_problems, and the trait's description copied or
        paraphrased into it (n-gram and embedding check: generate/prompt_leak.py)."""
        return self.prompt_problems(text, trait) or self.trait_leak.problems(text)

    def response_problems(self, text: str, user: str = "") -> list[str]:
        out = []
        if user and len(user) >= 20 and user.strip()[:80] in text:
            out.append("echoes the user's message")
        if len(text) < 20:
            out.append(f"too short ({len(text)} chars)")
        if self.response_leak.leaks(text):
            out.append("copies the system prompt's wording")
        out += tells(text)
        return out

    # --- 1. scenarios ------------------------------------------------------------------
    def usable_plans(self, text: str) -> list[tuple[str, str, str]]:
        """Scenario plans from a reply: a situation with a tell or the prompt's wording is dropped;
        such a "shows" or "why" part is blanked (the situation still stands)."""
        def ok(part: str) -> bool:
            return not self.prompt_leak.leaks(part) and not tells(part)

        return [(sit, shows if ok(shows) else "", why if ok(why) else "")
                for sit, shows, why in parse_plans(text, min_chars=25, max_chars=600) if ok(sit)]

    async def make_scenarios(self, per_trait: dict[str, int], r: int = 0) -> list[Scenario]:
        """`per_trait` scenarios per trait, spread over the categories. Top-up round `r` > 0 plans
        new ones (own unit keys, other categories first, another seed)."""
        cats = categories(self.templates)
        hints = dict(cats)
        suffix = f".topup{r}" if r else ""
        units = [Unit(f"{t.id}/{cat}{suffix}", t.id, (t, cat, n)) for ti, t in enumerate(self.traits.traits)
                 if t.id in per_trait
                 for cat, n in split_evenly(per_trait[t.id], [c for c, _ in cats],
                                            offset=ti + r * self.cs.scenarios_per_trait).items()]

        async def work(u: Unit) -> list[Scenario] | Skip:
            t, cat, n = u.data
            hint = Template(hints[cat]).safe_substitute(**self.names)
            prompt = self.render("scenarios", **self.names, trait=t.describe(), category_hint=hint,
                                 n=n + EXTRA_SCENARIOS, earlier=self.earlier(t.id, cat))
            items, text = await self.sample_items(prompt, lambda text: self.pick(self.usable_plans(text), n),
                                                  max_tokens=self.gen.list_max_tokens,
                                                  seed=self.ctx.seed + r * TOPUP_KEY_BASE if r else None)
            if not items:
                return Skip(f"no usable scenarios in the reply: {text[:160]!r}")
            return [Scenario(id=stable_hash(["scenario", u.key, i]), trait_id=t.id, category=cat, description=sit,
                             shows=shows, why=why, ood=cat == "ood", topup_round=r)
                    for i, (sit, shows, why) in enumerate(items)]

        res = await self.step(f"chats.scenarios{suffix}", "scenarios.jsonl", Scenario, units, work,
                              fingerprint=self.fp("scenarios", "scenario_categories",
                                                  max_tokens=self.gen.list_max_tokens),
                              key_of=lambda s: f"{s.trait_id}/{s.category}" + (f".topup{s.topup_round}"
                                                                               if s.topup_round else ""))
        return res.rows

    @staticmethod
    def pick(plans: list, n: int) -> list:
        """n of the plans a reply listed: the later ones first when there are spare ones (a model
        writes the most obvious situation first), in their listed order."""
        spare = max(0, len(plans) - n)
        return plans[min(spare, EXTRA_SCENARIOS):][:n] if spare else plans[:n]

    def earlier(self, trait_id: str, category: str) -> str:
        """Scenarios already planned for this trait and category (earlier rounds), for the prompt
        to steer away from; "" when there are none."""
        done = [s.description for s in self.scenarios.values() if s.trait_id == trait_id and s.category == category]
        if not done:
            return ""
        listed = "\n".join(f"- {d}" for d in done[-EARLIER_SHOWN:])
        return f"\nThese situations are already planned; write different ones:\n{listed}\n"

    def plan(self, sc: Scenario) -> str:
        """The scenario's plan (how the trait shows, why) as the prompt writers see it: the
        scenario_plan template's lines for the parts the plan has."""
        return self.templates.render_given("scenario_plan", shows=sc.shows, why=sc.why)

    # --- 2. user prompts ---------------------------------------------------------------
    async def make_prompts(self, scenarios: list[Scenario], suffix: str = "") -> list[UserPrompt]:
        k = self.cs.prompts_per_scenario

        async def work(u: Unit) -> list[UserPrompt] | Skip:
            sc: Scenario = u.data
            trait = self.by_id[sc.trait_id]
            # Each prompt its own writer: the situation and a sampled persona, length, register and
            # messiness; never the plan (how the trait should show), which would leak into the message.
            rows, why = [], []
            for i in range(k):
                problems: list[str] = []

                def usable(raw: str) -> list[str]:
                    text = clean_message(raw, "message")
                    found = self.user_prompt_problems(text, trait)
                    problems[:] = found
                    return [] if found else [text]

                # A junk message (repetitive, a placeholder, the trait named) is asked for once more
                # with another seed, as the list steps are (sample_items), before the scenario is skipped.
                texts, _ = await self.sample_items(self.render("user_prompt", scenario=sc.description,
                                                               **self.user_style_of(sc.id, i)),
                                                   usable, max_tokens=self.gen.list_max_tokens)
                if texts:
                    rows.append(UserPrompt(id=stable_hash(["prompt", sc.id, i]), scenario_id=sc.id,
                                           trait_id=sc.trait_id, text=texts[0]))
                else:
                    why.append("; ".join(problems))
            return rows or Skip(f"no usable prompt: {' | '.join(why)}")

        units = [Unit(s.id, s.trait_id, s) for s in scenarios]
        res = await self.step(f"chats.prompts{suffix}", "prompts.jsonl", UserPrompt, units, work,
                              fingerprint=self.fp("user_prompt", "user_style", max_tokens=self.gen.list_max_tokens),
                              key_of=lambda p: p.scenario_id)
        return res.rows

    def user_style_of(self, scenario_id: str, i: int) -> dict[str, str]:
        """persona, length, register and messiness for prompt i of a scenario (user_style.txt),
        sampled by the pair: stable across runs."""
        out = {}
        for axis in USER_STYLE_AXES:
            values = self.user_style.get(axis) or []
            out[axis] = (values[int(stable_hash([scenario_id, i, axis], 8), 16) % len(values)].text
                         if values else "")
        return out

    # --- 3. critique -------------------------------------------------------------------
    async def critique(self, prompts: list[UserPrompt], suffix: str = "") -> list[UserPrompt]:
        async def work(u: Unit) -> list[UserPrompt] | Skip:
            p: UserPrompt = u.data
            trait = self.by_id[p.trait_id]
            text = await self.llm.generate_one(
                self.render("critique", prompt=p.text, scenario=self.scenarios[p.scenario_id].description,
                            trait=self.short_trait(trait)),
                temperature=0.0, max_tokens=self.gen.list_max_tokens)
            verdict, why, new = parse_critique(text)
            if verdict is None:
                return [p.model_copy(update={"critique": "unparsed"})]  # the critic failed, not the prompt
            if verdict == "DROP":
                return Skip(f"critique dropped it: {why[:200]!r}")
            if verdict == "REVISE":
                if new and not self.user_prompt_problems(new, trait):
                    return [p.model_copy(update={"text": new, "critique": "revised", "revised": True})]
                return [p.model_copy(update={"critique": "revise-unusable"})]
            return [p.model_copy(update={"critique": "keep"})]

        units = [Unit(p.id, p.trait_id, p) for p in prompts]
        res = await self.step(f"chats.critique{suffix}", "prompts_critiqued.jsonl", UserPrompt, units, work,
                              fingerprint=self.fp("critique", max_tokens=self.gen.list_max_tokens))
        return res.rows

    # --- 4. default-response probe -----------------------------------------------------
    async def verdict(self, trait: Trait, prompt: str, default: str) -> tuple[str | None, str]:
        """The probe judge's verdict (shows | generic | missing, None: unparsed) on the plain answer,
        given after its reasoning, and the raw reply. Asked twice at most (the second sampled)."""
        ask = self.render("probe_verdict", trait=self.short_trait(trait), prompt=prompt, response=default)
        judged = ""
        for attempt in range(2):
            extra = {"seed": self.ctx.seed + 1000} if attempt else {"temperature": 0.0}
            judged = await self.judge.generate_one(ask, max_tokens=self.gen.verdict_max_tokens, **extra)
            verdict = parse_probe_verdict(judged)
            if verdict is not None:
                return verdict, judged
        return None, judged

    async def probe(self, prompts: list[UserPrompt], suffix: str = "") -> list[Probe]:
        async def work(u: Unit) -> list[Probe] | Skip:
            p: UserPrompt = u.data
            trait = self.by_id[p.trait_id]
            text = p.text
            default = (await self.answer(text, max_tokens=self.cs.max_tokens)).strip()
            verdict, judged = await self.verdict(trait, text, default)
            if verdict is None:  # unknown whether the prompt is too easy: not worth a teacher's answer
                return Skip(f"probe verdict unparsed: {judged[:160]!r}")
            hardened = False
            sc = self.scenarios[p.scenario_id]
            if verdict in ("shows", "generic") and sc.category != RESTRAINT:
                # The plain model already does this (or says nothing): a harder version that makes
                # the answer engage with the scenario's details, probed again, or the prompt goes.
                def usable(reply: str) -> list[str]:
                    new = clean_message(reply, "message")
                    return [new] if new != text and not self.user_prompt_problems(new, trait) else []

                harden = self.render("harden", prompt=text, scenario=sc.description, trait=self.short_trait(trait),
                                     details=self.harden_details(p.id))
                items, raw = await self.sample_items(harden, usable, max_tokens=self.gen.list_max_tokens)
                if not items:
                    new = clean_message(raw, "message")
                    problems = self.user_prompt_problems(new, trait) or ["the same prompt"]
                    return Skip(f"hardening failed (default answer {verdict}): {'; '.join(problems)}: {new[:160]!r}")
                text, hardened = items[0], True
                default = (await self.answer(text, max_tokens=self.cs.max_tokens)).strip()
                again, judged = await self.verdict(trait, text, default)
                if again is None:
                    return Skip(f"probe verdict on the hardened prompt unparsed: {judged[:160]!r}")
                if again == "shows":
                    return Skip("still easy after hardening: the plain answer already shows the trait")
            return [Probe(id=p.id, scenario_id=p.scenario_id, trait_id=p.trait_id, prompt=text,
                          default_response=default, verdict=verdict, hardened=hardened)]

        units = [Unit(p.id, p.trait_id, p) for p in prompts]
        res = await self.step(f"chats.probe{suffix}", "probes.jsonl", Probe, units, work,
                              fingerprint=self.fp("probe_verdict", "harden", "harden_details",
                                                  max_tokens=self.cs.max_tokens, judge=self.judge.name,
                                                  verdict_max_tokens=self.gen.verdict_max_tokens))
        return res.rows

    def harden_details(self, prompt_id: str, k: int = 2) -> str:
        """k kinds of detail for the hardener to add (harden_details.txt), sampled by the prompt's id."""
        kinds = [line.strip() for line in self.templates.text("harden_details").splitlines()
                 if line.strip() and not line.lstrip().startswith("#")]
        if not kinds:
            return "the specifics a real person in this situation would mention"
        start = int(stable_hash(["harden", prompt_id], 8), 16) % len(kinds)
        return "; ".join(kinds[(start + j) % len(kinds)] for j in range(min(k, len(kinds))))

    # --- 5. teacher drafts -------------------------------------------------------------
    def trait_list(self, trait_ids: list[str]) -> str:
        return "\n".join(f"- {self.by_id[t].describe()}" for t in trait_ids)

    def system_prompt(self, traits: list[Trait]) -> str:
        system = self.render("teacher_system", **self.names, traits=self.trait_list([t.id for t in traits]))
        extra = "\n\n".join(x for x in (self.avoid, self.avoid_block) if x)
        return f"{system}\n\n{extra}" if extra else system

    async def choose_traits(self, target: Trait, text: str) -> list[Trait]:
        """The traits that bear on a reply to `text`: the scenario's own, plus those the generator
        picks from the whole traits document (chats.select_traits: generator), or whose names show
        up in the prompt (keywords)."""
        if self.cs.select_traits == "keywords" or len(self.traits.traits) == 1:
            return relevant_traits(self.traits, target, text)
        numbered = list(self.traits.traits)
        listing = "\n".join(f"{i}. {t.name}: {t.statement}" for i, t in enumerate(numbered, 1))
        reply = await self.llm.generate_one(
            self.render("select_traits", traits=listing, prompt=text, target=numbered.index(target) + 1),
            temperature=0.0, max_tokens=self.gen.verdict_max_tokens)
        picked = {int(n) for n in re.findall(r"\b(\d{1,3})\b", reply) if 1 <= int(n) <= len(numbered)}
        return [target] + [t for i, t in enumerate(numbered, 1) if i in picked and t.id != target.id]

    async def respond(self, system: str, messages: list[ChatMessage]) -> str:
        """The teacher's reply; a reply cut at max_tokens follows generation.on_truncated (CutOff)."""
        msgs = [{"role": "system", "content": system}] + [m.model_dump() for m in messages]
        return clean_message(await self.answer(msgs, max_tokens=self.cs.max_tokens))

    async def responses(self, prompts: list[tuple[str, str, str, str]], suffix: str = "") -> list[Chat]:
        """prompts: (prompt id, trait id, scenario id, text) -> single-turn chats (drafts)."""
        async def work(u: Unit) -> list[Chat] | Skip:
            _, trait_id, scenario_id, text = u.data
            relevant = await self.choose_traits(self.by_id[trait_id], text)
            system = self.system_prompt(relevant)
            user = ChatMessage(role="user", content=text)
            reply = await self.respond(system, [user])
            problems = self.response_problems(reply, text)
            if problems:
                return Skip(f"teacher response: {'; '.join(problems)}: {reply[:160]!r}")
            return [Chat(id=u.key, trait_ids=[t.id for t in relevant], scenario_id=scenario_id, system_prompt=system,
                         messages=[user, ChatMessage(role="assistant", content=reply)])]

        units = [Unit(stable_hash(["chat", pid]), tid, (pid, tid, sid, text)) for pid, tid, sid, text in prompts]
        res = await self.step(f"chats.responses{suffix}", "responses.jsonl", Chat, units, work,
                              fingerprint=self.fp("teacher_system", "select_traits", "avoid",
                                                  max_tokens=self.cs.max_tokens, select=self.cs.select_traits,
                                                  avoid=self.cs.avoid_known))
        return res.rows

    # --- 6. refine ---------------------------------------------------------------------
    async def refine_reply(self, trait_ids: list[str], messages: list[ChatMessage],
                           draft: str) -> tuple[str, list[str]]:
        """The refiner's rewrite of `draft`, the reply to the last user message of `messages`, in a
        fresh context (no teacher system prompt, the conversation as text); and why it is not
        usable (empty: use it)."""
        prompt = self.render("refine", traits=self.trait_list(trait_ids), conversation=transcript(messages),
                             draft=draft)
        try:
            raw = await self.answer(prompt, max_tokens=self.cs.max_tokens, llm=self.refiner)
        except CutOff as e:  # the draft stands (it passed its own checks)
            return "", [str(e)]
        if is_keep(raw):  # the refiner's keep exit: the draft as it is, byte for byte
            return draft, []
        text = clean_message(raw, "reply")
        problems = self.response_problems(text, messages[-1].content)
        if refuses(text) and not refuses(draft):
            problems.append("a refusal")
        if mentions_rewrite(text):
            problems.append("talks about the rewrite")
        return text, problems

    async def refine(self, drafts: list[Chat], suffix: str = "") -> dict[str, Refinement]:
        """One rewrite per draft's first answer; a junk rewrite is kept with its problems (the
        chat then keeps the draft), and counted."""
        async def work(u: Unit) -> list[Refinement]:
            chat: Chat = u.data
            draft = chat.messages[1].content
            text, problems = await self.refine_reply(chat.trait_ids, chat.messages[:1], draft)
            return [Refinement(id=chat.id, trait_id=chat.trait_ids[0], text=text, problems="; ".join(problems),
                               unchanged=not problems and text == draft)]

        units = [Unit(c.id, c.trait_ids[0], c) for c in drafts]
        name = f"chats.refine{suffix}"
        res = await self.step(name, "refined.jsonl", Refinement, units, work,
                              fingerprint=self.fp("refine", refiner=self.refiner.name, max_tokens=self.cs.max_tokens))
        kept = [r for r in res.rows if r.problems]
        self.store.set_counts(name, refined=len(res.rows) - len(kept), kept_draft=len(kept),
                              kept_as_is=sum(r.unchanged for r in res.rows),
                              kept_draft_reasons=count_reasons(why for r in kept for why in r.problems.split("; ")))
        return {r.id: r for r in res.rows}

    @staticmethod
    def refined(chat: Chat, refinements: dict[str, Refinement]) -> Chat:
        """The draft chat with its first answer replaced by the usable rewrite (the draft kept in
        metadata); unchanged without one."""
        r = refinements.get(chat.id)
        if r is None or r.problems:
            return chat
        return chat.model_copy(update={"draft": chat.messages[1].content,
                                       "messages": [chat.messages[0], ChatMessage(role="assistant", content=r.text)]})

    # --- 7. multi-turn and the final chats ---------------------------------------------
    def multiturn_ids(self, chats: list[Chat]) -> set[str]:
        """The share of chats to continue, picked by id hash: stable across re-runs."""
        if self.cs.max_turns < 2:
            return set()
        n = round(self.cs.multiturn_share * len(chats))
        return {c.id for c in sorted(chats, key=lambda c: stable_hash(["multiturn", c.id]))[:n]}

    def cooperative_ids(self, chosen: set[str]) -> set[str]:
        """Of the multi-turn chats, the cooperative share (a user who builds on the answers), by id hash."""
        n = round(self.cs.cooperative_share * len(chosen))
        return set(sorted(chosen, key=lambda i: stable_hash(["cooperative", i]))[:n])

    async def finalize(self, drafts: list[Chat], refinements: dict[str, Refinement], suffix: str = "") -> list[Chat]:
        """Chats with their refined first answer; the multi-turn share continued against a
        simulated user who pushes back, each later answer drafted by the teacher and refined
        like the first (a junk rewrite keeps that turn's draft)."""
        chosen = self.multiturn_ids(drafts)
        cooperative = self.cooperative_ids(chosen)
        # Later-turn rewrites per chat: (refined, kept the draft). Keyed by chat so that batch
        # mode's dry passes over a unit count once.
        later: dict[str, tuple[int, int]] = {}

        async def work(u: Unit) -> list[Chat] | Skip:
            chat = self.refined(u.data, refinements)
            if chat.id not in chosen:
                return [chat]
            trait = self.by_id[chat.trait_ids[0]]
            scenario = self.scenarios.get(chat.scenario_id)
            messages = list(chat.messages)
            refined = kept = 0
            for _ in range(self.cs.max_turns - 1):
                follow = clean_message(await self.llm.generate_one(
                    self.render("user_followup_cooperative" if chat.id in cooperative else "user_followup",
                                scenario=scenario.description if scenario else "a conversation",
                                transcript=transcript(messages)), max_tokens=self.gen.list_max_tokens))
                if self.prompt_problems(follow, trait):
                    break  # the simulated user wrote junk: the chat ends at the last good turn
                user = ChatMessage(role="user", content=follow)
                try:
                    reply = await self.respond(chat.system_prompt, messages + [user])
                except CutOff:
                    break  # a later answer cut at max_tokens: the chat ends at the last whole turn
                if self.response_problems(reply, follow):
                    break
                if self.cs.refine:
                    text, problems = await self.refine_reply(chat.trait_ids, messages + [user], reply)
                    refined, kept = refined + (not problems), kept + bool(problems)
                    reply = reply if problems else text
                messages += [user, ChatMessage(role="assistant", content=reply)]
            later[chat.id] = (refined, kept)
            return [chat.model_copy(update={"messages": messages})]

        refine = ("refine",) if self.cs.refine else ()
        units = [Unit(c.id, c.trait_ids[0], c) for c in drafts]
        name = f"chats.final{suffix}"
        res = await self.step(name, "chats.jsonl", Chat, units, work,
                              fingerprint=self.fp("user_followup", "user_followup_cooperative", "teacher_system",
                                                  *refine, max_turns=self.cs.max_turns,
                                                  share=self.cs.multiturn_share,
                                                  cooperative=self.cs.cooperative_share,
                                                  max_tokens=self.cs.max_tokens,
                                                  refiner=self.refiner.name if refine else None))
        # Later turns live inside the chats, so these count only the turns made by this call.
        self.store.set_counts(name, new_turns_refined=sum(r for r, _ in later.values()),
                              new_turns_kept_draft=sum(k for _, k in later.values()),
                              multiturn=len(chosen), cooperative=len(cooperative))
        return res.rows

    # --- 9. preference pairs -----------------------------------------------------------
    async def dpo_pairs(self, chats: list[Chat], probes: list[Probe]) -> None:
        """Candidates, one per chat (id train.data.pair_id_for(chat id)); chosen: the chat's (refined)
        first answer, rejected: the probe's default answer. Curation rebuilds the pairs from the
        curated chats (curate/dpo.py): the trained chosen side is the curated reply."""
        by_prompt = {stable_hash(["chat", p.id]): p for p in probes}

        async def work(u: Unit) -> list[DPOPair] | Skip:
            chat: Chat = u.data
            probe = by_prompt[chat.id]
            chosen = chat.messages[1].content
            rejected = probe.default_response.strip()
            if len(rejected) < 20 or rejected == chosen:
                return Skip("default response empty or the same as the chosen answer")
            return [DPOPair(id=u.key, trait_ids=chat.trait_ids, prompt=[chat.messages[0]], chosen=chosen,
                            rejected=rejected)]

        restraint = {s.id for s in self.scenarios.values() if s.category == RESTRAINT}
        units = [Unit(stable_hash(["dpo", c.id]), c.trait_ids[0], c) for c in chats
                 if c.id in by_prompt and c.scenario_id not in restraint]
        await self.step("chats.dpo_pairs", "dpo_pairs.jsonl", DPOPair, units, work,
                        fingerprint=self.fp(chosen="refined" if self.cs.refine else "draft",
                                            refiner=self.refiner.name if self.cs.refine else None),
                        trait_of=lambda r: r.trait_ids[0])

    # --- one round, and the whole set ------------------------------------------------------
    async def chat_round(self, per_trait: dict[str, int], r: int = 0) -> list[Chat]:
        """Every step for `per_trait` new scenarios per trait; round `r` > 0 is a top-up, its
        steps named `chats.<step>.topup<r>` (the same files: row ids never collide)."""
        suffix = f".topup{r}" if r else ""
        # Top-up rounds name the patterns curation flagged as things to avoid (shared/avoid.py).
        self.avoid_block = avoid_list(read_found(self.store.root), self.templates) if r else ""
        scenarios = await self.make_scenarios(per_trait, r)
        self.scenarios.update({s.id: s for s in scenarios})
        prompts = await self.make_prompts(scenarios, suffix)
        if self.cs.critique:
            prompts = await self.critique(prompts, suffix)
        if self.cs.probe_default:
            probes = await self.probe(prompts, suffix)
            self.probes += probes
            final = [(p.id, p.trait_id, p.scenario_id, p.prompt) for p in probes]
        else:
            final = [(p.id, p.trait_id, p.scenario_id, p.text) for p in prompts]
        drafts = await self.responses(final, suffix)
        refinements = await self.refine(drafts, suffix) if self.cs.refine else {}
        return await self.finalize(drafts, refinements, suffix)

    async def run(self) -> None:
        weights = trait_weights(self.gen, self.traits)
        per_trait = scaled_counts(self.cs.scenarios_per_trait, weights)
        k = self.cs.prompts_per_scenario
        planned = {tid: n * k for tid, n in per_trait.items()}
        chats = await self.chat_round(per_trait)

        async def more(short: dict[str, int], r: int) -> list[Chat]:
            return await self.chat_round({tid: math.ceil(n / k) for tid, n in short.items()}, r)

        chats = await self.top_up(chats, planned, self.cs.topup_rounds, lambda c: c.trait_ids[0], more)
        if self.probes and self.cs.dpo_pairs:
            await self.dpo_pairs(chats, self.probes)
        self.report_balance("chats.balance", Counter(c.trait_ids[0] for c in chats), weights, planned)
