"""Warnings about a traits document (`traitforge traits FILE` prints them): things that parse fine but
train badly.

- negated phrasings ("never does X", "does not cave"): models trained on negations often learn
  the opposite; say what the model does instead;
- vague traits with no behaviour ("Aria is kind."): nothing concrete for the generator to show;
- near-duplicate traits: the data over-weights what they share;
- traits with no examples: the teacher has nothing concrete to imitate;
- a document that names its model ("Lumen is an assistant built by Northwind") while model_name
  falls back to the default, so the generated data would call the model by the wrong name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from traitforge.traits.parse import DEFAULT_MODEL, DEFAULT_ORG, _read_text, _split_front_matter
from traitforge.types import Trait, TraitSet

_NEGATION = re.compile(r"\b(?:never|not|no longer|does(?:n't| not)|do(?:n't| not)|won't|will not|cannot|can't|"
                       r"refuses? to|avoids?)\b", re.I)
_CONDITION = re.compile(r"\b(?:when|if|unless|whether|even though|because)\b", re.I)
_COPULA_ONLY = re.compile(r"^\s*[\w'-]+\s+(?:is|are|should be|must be|stays|remains)\s+(?:(?:very|always|really|"
                          r"genuinely)\s+)?[\w-]+(?:\s*(?:,|and|or)\s*[\w-]+){0,4}\s*\.?\s*$", re.I)
_NAMES_MODEL = re.compile(r"\b([A-Z][\w-]{1,30}),? (?:is|as) an? (?:[\w-]+ ){0,3}(?:assistant|model|chatbot|AI)\b"
                          r"(?:[^.\n]{0,40}?\b(?:built|made|created|developed|trained) by ([A-Z][\w&.-]*(?: [A-Z][\w&.-]*){0,3}))?")
_STOP = frozenset("the a an and or of to in on for with it its is are be that this when as by at from than "
                  "model assistant ai user users".split())
DUPLICATE_JACCARD = 0.6
VAGUE_WORDS = 6


@dataclass(frozen=True)
class LintWarning:
    trait_id: str | None  # None: about the whole document
    kind: str  # negation | vague | near-duplicate | no-examples | model-name
    message: str

    def __str__(self) -> str:
        where = f"trait '{self.trait_id}'" if self.trait_id else "document"
        return f"warning: {where}: {self.message}"


def _content_words(text: str, name: str) -> set[str]:
    ws = re.findall(r"[a-z]+", text.lower())
    return {w[:6] for w in ws if w not in _STOP and w != name.lower()}


def negations(text: str) -> list[str]:
    """Negated phrasings of behaviour in `text`, not negations inside a condition ("when it does not
    know", "even if the user is not upset")."""
    out = []
    for clause in re.split(r"[.;:,]\s*", text):
        for m in _NEGATION.finditer(clause):
            after = clause[m.end():]
            if _CONDITION.search(clause[:m.start()]) or re.match(r"\s+(?:only|just|merely|because)\b", after, re.I):
                continue  # a condition, or a contrast ("not only X", "not because Y"), not a negated behaviour
            out.append(" ".join([m.group(0), *after.split()[:5]]))
    return out


def _vague(t: Trait) -> bool:
    n = len(re.findall(r"\w+", t.statement))
    return not t.details and not t.examples and (n < VAGUE_WORDS or bool(_COPULA_ONLY.match(t.statement)))


def lint_traits(traits: TraitSet, text: str = "", model_name_set: bool = True) -> list[LintWarning]:
    """Warnings for a parsed document; `text`: its source (for the model-name check);
    `model_name_set`: whether model_name came from the front matter or the command line."""
    out: list[LintWarning] = []
    for t in traits.traits:
        for phrase in [*negations(t.name), *negations(t.statement), *(p for d in t.details for p in negations(d))][:2]:
            out.append(LintWarning(t.id, "negation", f"negated phrasing ({phrase!r}): models trained on negations "
                                   "often learn the opposite; say what the model does instead"))
        if _vague(t):
            out.append(LintWarning(t.id, "vague", f"vague ({t.statement!r}): no behaviour, details or examples "
                                   "for the generator to show"))
        if not t.examples:
            out.append(LintWarning(t.id, "no-examples", "no examples (add '- Example: ...' under the trait)"))
    sets = [(t, _content_words(f"{t.name} {t.statement}", traits.model_name)) for t in traits.traits]
    for i, (a, wa) in enumerate(sets):
        for b, wb in sets[i + 1:]:
            if wa and wb and len(wa & wb) / len(wa | wb) >= DUPLICATE_JACCARD:
                out.append(LintWarning(b.id, "near-duplicate", f"near-duplicate of trait '{a.id}': the data "
                                       "would over-weight what they share; merge them or make them distinct"))
    if not model_name_set and traits.model_name == DEFAULT_MODEL:
        m = _NAMES_MODEL.search(text)
        if m and m.group(1) != DEFAULT_MODEL:
            org = f" and organisation: {m.group(2)}" if m.group(2) and traits.organisation == DEFAULT_ORG else ""
            out.append(LintWarning(None, "model-name", f"names its model {m.group(1)!r} but model_name falls back "
                                   f"to the default {DEFAULT_MODEL!r}: set model_name: {m.group(1)}{org} in the "
                                   "front matter (or --model-name)"))
    return out


def lint_file(path: str | Path, traits: TraitSet, model_name: str | None = None) -> list[LintWarning]:
    """lint_traits for a document on disk (`traits` as load_traits parsed it)."""
    path = Path(path)
    text = _read_text(path)
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text)
        meta = data if isinstance(data, dict) else {}
    else:
        meta, _ = _split_front_matter(text, path)
    return lint_traits(traits, text, model_name_set=bool(model_name or meta.get("model_name")))
