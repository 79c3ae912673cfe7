"""The midtraining corpus: claims about the model -> document genres -> ideas -> documents ->
revision (a critique, then the rewrite), each a resumable step writing RUN/generated/*.jsonl.
Counts are planned per trait by weight, and traits that fall short because of junk output get a
bounded top-up."""

from __future__ import annotations

import re
from collections import Counter
from typing import TYPE_CHECKING

from traitforge.generate.settings import GenerationSpec
from traitforge.shared.avoid import avoid_list, known_offenders
from traitforge.generate.axes import describe_axes, load_axes, sample_axes
from traitforge.shared.leaks import LeakDetector
from traitforge.generate.parsing import (after_marker, chat_formatted, clean_message, parse_list,
                                        quotes_source, tells)
from traitforge.generate.stage import (TOPUP_KEY_BASE, CutOff, Generation, Skip, Unit, count_reasons,
                                      scaled_counts, split_evenly, trait_weights)
from traitforge import tags
from traitforge.prompts import PACKAGE, PromptKit
from traitforge.llm.client import LLM
from traitforge.types import Claim, DocIdea, DocType, Document, stable_hash

if TYPE_CHECKING:
    from traitforge.runcontext import Run

KINDS = ("behaviour", "reason", "hard_case")
REVISED_MARKER = "REVISED DOCUMENT"  # revise.txt asks for it between the critique and the rewrite
NO_CHANGES = re.compile(r"^[\s*_#]*NO CHANGES[\s*_.!]*$", re.M)  # revise.txt's exit for a draft already good
GENRE_EXAMPLES = 6  # genres shown to the doc_types brainstorm, sampled per claim (no fixed anchors)
TEMPLATES = ("claims", "focus_behaviour", "focus_reason", "focus_hard_case", "doc_types", "ideas", "document",
             "revise", "avoid")


def genre_lines(templates: PromptKit = PACKAGE) -> list[tuple[str, str]]:
    """(genre, its conventions) from genres.txt ("name | conventions"; conventions optional)."""
    out = []
    for line in parse_list(templates.text("genres"), min_chars=3, max_chars=1000):
        name, _, conventions = line.partition("|")
        if name.strip():
            out.append((name.strip(), conventions.strip()))
    return out


def default_genres(templates: PromptKit = PACKAGE) -> list[str]:
    return [name for name, _ in genre_lines(templates)]


def run_documents(run: "Run", cfg: GenerationSpec) -> None:
    """The documents, by the run's generator, as a stage (run.stage: usage recorded, clients closed)."""
    with run.stage("generate") as st:
        st.run(DocumentsRun(run, cfg, run.llm("generator")).run())


class DocumentsRun(Generation):
    def __init__(self, run: "Run", cfg: GenerationSpec, llm: LLM):
        super().__init__(run, cfg, llm)
        traits = run.traits
        self.ds = cfg.documents
        self.leak = LeakDetector(TEMPLATES, templates=self.templates)
        self.by_id = {t.id: t for t in traits.traits}
        # Traits-document sentences a document must not copy verbatim.
        self.sources = [s for t in traits.traits for s in (t.statement, *t.details, *t.examples)]
        self.names = dict(model_name=traits.model_name, organisation=traits.organisation)
        self.axes = load_axes(self.templates, traits.model_name) if self.ds.axes else {}
        self.avoid = avoid_list(known_offenders("documents"), self.templates) if self.ds.avoid_known else ""
        self.conventions = {name.casefold(): conv for name, conv in genre_lines(self.templates) if conv}

    def conventions_of(self, doc_type: str) -> str:
        """", with its usual conventions: ..." for a genre genres.txt describes ("" otherwise)."""
        conv = self.conventions.get(doc_type.casefold().strip())
        return f" (its usual conventions: {conv})" if conv else ""

    def universe(self, trait_id: str) -> str:
        """What the generator is told about the model: the whole traits document, or one trait."""
        chosen = self.traits.traits if self.ds.context == "traits" else [self.by_id[trait_id]]
        return "\n".join(f"- {t.describe()}" for t in chosen)

    def doc_axes(self, key: str, genre: str) -> dict[str, str]:
        if not self.ds.axes:
            return {}
        return sample_axes(key, self.axes, max_tokens=self.ds.max_tokens, genre=genre, languages=self.ds.languages)

    # --- 1. claims ---------------------------------------------------------------------
    async def claims(self, per_trait: dict[str, int]) -> list[Claim]:
        units = [Unit(f"{t.id}/{kind}", t.id, (t, kind, n)) for t in self.traits.traits
                 for kind, n in split_evenly(per_trait[t.id], KINDS).items()]

        async def work(u: Unit) -> list[Claim] | Skip:
            t, kind, n = u.data
            prompt = self.render("claims", **self.names, trait=t.describe(), n=n,
                                 focus=self.render(f"focus_{kind}", **self.names))
            items, text = await self.sample_items(prompt, lambda text: [
                s for s in parse_list(text, min_chars=20, max_chars=700)
                if not self.leak.leaks(s) and not tells(s)][:n], max_tokens=self.gen.list_max_tokens)
            if not items:
                return Skip(f"no usable claims in the reply: {text[:160]!r}")
            return [Claim(id=stable_hash(["claim", u.key, i]), trait_id=t.id, kind=kind, text=s)
                    for i, s in enumerate(items)]

        res = await self.step("documents.claims", "claims.jsonl", Claim, units, work,
                              fingerprint=self.fp("claims", "focus_behaviour", "focus_reason", "focus_hard_case",
                                                  max_tokens=self.gen.list_max_tokens),
                              key_of=lambda c: f"{c.trait_id}/{c.kind}")
        return res.rows

    # --- 2. document types -------------------------------------------------------------
    async def doc_types(self, claims: list[Claim]) -> list[DocType]:
        k = self.ds.doc_types_per_claim
        user_types = [s.strip() for s in self.ds.doc_types if s.strip()]
        defaults = default_genres(self.templates)

        def rotated(pool: list[str], claim_id: str) -> list[str]:
            start = int(claim_id, 16) % len(pool)  # spread genres over claims, deterministically
            return pool[start:] + pool[:start]

        async def work(u: Unit) -> list[DocType] | Skip:
            claim: Claim = u.data
            if user_types:
                names = rotated(user_types, claim.id)[:k]
            else:
                # Examples sampled per claim: a fixed first few would anchor every brainstorm on them.
                order = sorted(defaults, key=lambda g: stable_hash(["genre", claim.id, g]))
                prompt = self.render("doc_types", **self.names, claim=claim.text, n=k,
                                     examples=", ".join(order[:GENRE_EXAMPLES]))
                text = await self.llm.generate_one(prompt, max_tokens=min(self.gen.list_max_tokens, 40 * k + 40))
                names = [s.rstrip(".") for s in parse_list(text, min_chars=3, max_chars=60)
                         if len(s.split()) <= 8 and not self.leak.leaks(s)][:k]
                # A genre name is scaffolding, not content: fill a short brainstorm from the defaults.
                have = {n.casefold() for n in names}
                names += [g for g in rotated(defaults, claim.id) if g.casefold() not in have][: k - len(names)]
            return [DocType(id=stable_hash(["doc_type", claim.id, i]), claim_id=claim.id, trait_id=claim.trait_id,
                            name=name) for i, name in enumerate(names)]

        units = [Unit(c.id, c.trait_id, c) for c in claims]
        res = await self.step("documents.doc_types", "doc_types.jsonl", DocType, units, work,
                              fingerprint=self.fp("doc_types", "genres", user_types=user_types),
                              key_of=lambda d: d.claim_id)
        return res.rows

    # --- 3. ideas ----------------------------------------------------------------------
    async def ideas(self, claims: list[Claim], types: list[DocType]) -> list[DocIdea]:
        claim_by_id = {c.id: c for c in claims}
        n = self.ds.ideas_per_type

        async def work(u: Unit) -> list[DocIdea] | Skip:
            dt: DocType = u.data
            claim = claim_by_id[dt.claim_id]
            prompt = self.render("ideas", **self.names, claim=claim.text, doc_type=dt.name, n=n)
            items, text = await self.sample_items(prompt, lambda text: [
                s for s in parse_list(text, min_chars=30, max_chars=800)
                if not self.leak.leaks(s) and not tells(s)][:n], max_tokens=min(self.gen.list_max_tokens, 120 * n + 60))
            if not items:
                return Skip(f"no usable ideas in the reply: {text[:160]!r}")
            return [DocIdea(id=stable_hash(["idea", dt.id, i]), claim_id=claim.id, trait_id=claim.trait_id,
                            doc_type=dt.name, idea=s) for i, s in enumerate(items)]

        units = [Unit(f"{dt.claim_id}/{dt.name}", dt.trait_id, dt) for dt in types if dt.claim_id in claim_by_id]
        res = await self.step("documents.ideas", "ideas.jsonl", DocIdea, units, work,
                              fingerprint=self.fp("ideas", max_tokens=self.gen.list_max_tokens),
                              key_of=lambda i: f"{i.claim_id}/{i.doc_type}")
        return res.rows

    # --- 4. drafts and 5. revision ----------------------------------------------------
    def problems(self, text: str, claim: str = "") -> list[str]:
        """Why a document is not usable as training text (empty list = fine); `claim`: the claim
        it shows, which it must not copy word for word (a slogan, not a document)."""
        out = []
        if claim and quotes_source(text, [claim]):
            out.append("copies the claim verbatim")
        if len(text) < self.ds.min_chars:
            out.append(f"too short ({len(text)} chars)")
        if self.traits.model_name.casefold() not in text.casefold():
            out.append(f"does not mention {self.traits.model_name}")
        out += tells(text)
        if chat := chat_formatted(text):
            out.append(chat)
        if self.leak.leaks(text):
            out.append("copies the prompt's wording")
        if quotes_source(text, self.sources):
            out.append("quotes the traits document")
        return out

    async def documents(self, ideas: list[DocIdea], claims: dict[str, Claim], samples: list[tuple[DocIdea, int]],
                        suffix: str = "") -> list[Document]:
        """Draft one document per (idea, sample index), then revise or check each."""
        seed = self.ctx.seed

        async def draft(u: Unit) -> list[Document] | Skip:
            idea, k = u.data
            axes = self.doc_axes(u.key, idea.doc_type)
            prompt = self.render("document", **self.names, doc_type=idea.doc_type, idea=idea.idea,
                                 claim=claims[idea.claim_id].text, universe=self.universe(idea.trait_id),
                                 axes=describe_axes(axes), avoid=self.avoid,
                                 conventions=self.conventions_of(idea.doc_type))
            raw = await self.answer(prompt, max_tokens=self.ds.max_tokens, seed=seed + k)
            unsuitable = tags.tag(raw, "unsuitable")
            if unsuitable is not None and len(raw.strip()) < 600:  # the writer's exit: this genre cannot carry it
                return Skip(f"unsuitable: {unsuitable[:200]!r}")
            text = clean_message(raw)
            if len(text) < self.ds.min_chars // 2:  # revision can repair much, not an empty reply
                return Skip(f"draft too short ({len(text)} chars): {text[:160]!r}")
            if chat := chat_formatted(text):  # the wrong genre: a revision keeps the format
                return Skip(f"draft is {chat}: {text[:160]!r}")
            return [Document(id=u.key, trait_ids=[idea.trait_id], claim_id=idea.claim_id, doc_type=idea.doc_type,
                             idea_id=idea.id, text=text, axes=axes)]

        units = [Unit(stable_hash(["document", idea.id, k]), idea.trait_id, (idea, k)) for idea, k in samples]
        drafts = (await self.step(f"documents.drafts{suffix}", "drafts.jsonl", Document, units, draft,
                                  fingerprint=self.fp("document", "axes", "avoid", "genres",
                                                      max_tokens=self.ds.max_tokens,
                                                      context=self.ds.context, axes=self.ds.axes,
                                                      languages=self.ds.languages,
                                                      avoid=self.ds.avoid_known))).rows

        # Why a revision was not used while its draft was, by document: counted once per unit
        # (batch mode's dry passes run a unit more than once).
        kept_draft: dict[str, list[str]] = {}

        async def finish(u: Unit) -> list[Document] | Skip:
            doc: Document = u.data
            # A copied claim is a problem the revision is asked to fix; without a revision (the tiny
            # preset's 135M model parrots its prompt) the draft's copy is not held against it.
            problems = self.problems(doc.text, claims[doc.claim_id].text if self.ds.revise else "")
            if self.ds.revise:
                text, revised_problems = await self.revise(doc, claims[doc.claim_id])
                if not revised_problems:
                    return [doc.model_copy(update={"text": text, "revised": True})]
                if not problems:
                    kept_draft[u.key] = revised_problems
                    return [doc]  # the draft was fine; the revision was not
                return Skip(f"draft: {'; '.join(problems)}; revision: {'; '.join(revised_problems)}")
            return [doc] if not problems else Skip("; ".join(problems))

        name = f"documents.final{suffix}"
        final_units = [Unit(d.id, d.trait_ids[0], d) for d in drafts]
        critique_tokens = self.gen.list_max_tokens if self.ds.revise else None
        rows = (await self.step(name, "documents.jsonl", Document, final_units, finish,
                                fingerprint=self.fp("revise", revise=self.ds.revise, min_chars=self.ds.min_chars,
                                                    max_tokens=self.ds.max_tokens,
                                                    critique_tokens=critique_tokens))).rows
        if self.ds.revise:
            # The reasons live only in this call's memory, so they count this call's drafts.
            self.store.set_counts(name, revised=sum(d.revised for d in rows),
                                  kept_draft=sum(not d.revised for d in rows),
                                  new_kept_draft_reasons=count_reasons(w for ws in kept_draft.values() for w in ws))
        return rows

    async def revise(self, doc: Document, claim: Claim) -> tuple[str, list[str]]:
        """Critique, then rewrite: the rewritten text (after the REVISED DOCUMENT marker), and why
        it is not usable (empty: use it). The critique only steers the rewrite; it is not kept."""
        prompt = self.render("revise", **self.names, doc_type=doc.doc_type, draft=doc.text, claim=claim.text,
                             axes=describe_axes(doc.axes))
        # Room for the critique before the document.
        try:
            reply = await self.answer(prompt, max_tokens=self.ds.max_tokens + self.gen.list_max_tokens)
        except CutOff as e:  # the draft stands if it passes its own checks
            return "", [f"revision {e}"]
        parts = after_marker(reply, REVISED_MARKER)
        if parts is None:
            if NO_CHANGES.search(reply):  # already good: the draft as it is
                return doc.text, self.problems(doc.text, claim.text)
            return "", [f"no {REVISED_MARKER} after the critique"]
        text = clean_message(parts[1])
        problems = self.problems(text, claim.text)
        if len(text) < 0.3 * len(doc.text):
            problems.append("revision lost most of the draft")
        return text, problems

    # --- the whole corpus ----------------------------------------------------------------
    async def run(self) -> None:
        weights = trait_weights(self.gen, self.traits)
        claims_per_trait = scaled_counts(self.ds.claims_per_trait, weights)
        per_claim = self.ds.doc_types_per_claim * self.ds.ideas_per_type * self.ds.docs_per_idea
        target = {tid: n * per_claim for tid, n in claims_per_trait.items()}
        claims = await self.claims(claims_per_trait)
        types = await self.doc_types(claims)
        ideas = await self.ideas(claims, types)
        claim_by_id = {c.id: c for c in claims}
        docs = await self.documents(ideas, claim_by_id, [(i, k) for i in ideas for k in range(self.ds.docs_per_idea)])

        async def more(short: dict[str, int], r: int) -> list[Document] | None:
            extra = self.topup_samples(short, ideas, r)
            return await self.documents(ideas, claim_by_id, extra, suffix=f".topup{r}") if extra else None

        docs = await self.top_up(docs, target, self.ds.topup_rounds, lambda d: d.trait_ids[0], more)
        self.report_balance("documents.balance", Counter(d.trait_ids[0] for d in docs), weights, target)

    @staticmethod
    def topup_samples(short: dict[str, int], ideas: list[DocIdea], r: int) -> list[tuple[DocIdea, int]]:
        """New (idea, sample index) pairs for each trait's missing documents, spread over the
        trait's ideas."""
        out = []
        for tid, deficit in short.items():
            pool = [i for i in ideas if i.trait_id == tid]
            out += [(pool[j % len(pool)], r * TOPUP_KEY_BASE + j // len(pool)) for j in range(deficit) if pool]
        return out
