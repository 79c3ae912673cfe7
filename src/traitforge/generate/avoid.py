"""The "things to avoid" list: patterns a generator should not produce, named in its prompt.

One mechanism for both uses: generation names the known over-represented patterns (curation's
KNOWN offenders) up front, and curation can regenerate a row without a pattern it detected."""

from __future__ import annotations

from traitforge.generate.templates import PACKAGE, Templates

MAX_ITEMS = 8  # a longer list dilutes the prompt


def avoid_list(patterns: list[str], templates: Templates = PACKAGE) -> str:
    """The avoid.txt block naming each pattern once (most important first), or "" for none."""
    items = list(dict.fromkeys(p.strip() for p in patterns if p and p.strip()))[:MAX_ITEMS]
    if not items:
        return ""
    return templates.render("avoid", patterns="\n".join(f"- {p}" for p in items))


def known_offenders(dataset: str) -> list[str]:
    """Curation's known over-represented patterns of a dataset ("documents" or "chats")."""
    from traitforge.curate.pattern_rules import KNOWN

    return [k.description for k in KNOWN if k.dataset == dataset]
