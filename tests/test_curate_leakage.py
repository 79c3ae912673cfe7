"""Leakage: mentions of the hidden prompt, near-verbatim trait quotes and generator tells."""

import random

import pytest
from _curate_data import TRAITS, chat, doc, prose

from traitforge.curate.leakage import check_chats, check_documents

PHRASES = ["My system prompt tells me to keep this short.", "As instructed, here is the plain truth.",
           "I was told to be honest with you.", "My guidelines say I should admit uncertainty.",
           "According to my traits document I value honesty.", "As an AI language model, I cannot know.",
           "I'm SmolLM, and I can help."]


@pytest.mark.parametrize("phrase", PHRASES)
def test_leak_phrase_in_one_sentence_is_cut(phrase):
    rng = random.Random(0)
    body = prose(rng, 3)
    kept, drops, edits = check_chats([chat(0, f"{body} {phrase} {prose(rng, 1)}")], TRAITS, 8, 0.5)
    assert drops == [] and len(kept) == 1 and len(edits) == 1
    reply = kept[0].messages[1].content
    assert phrase not in reply and body in reply
    assert edits[0].step == "leakage" and phrase in edits[0].before


def test_two_leaks_or_nothing_left_drops_the_row():
    rng = random.Random(0)
    two = chat(0, f"{PHRASES[0]} {prose(rng, 2)} {PHRASES[2]}")
    alone = chat(1, PHRASES[1])
    kept, drops, _ = check_chats([two, alone], TRAITS, 8, 0.5)
    assert kept == [] and {d.row_id for d in drops} == {"c0", "c1"}
    assert all(d.step == "leakage" for d in drops)


def test_trait_statement_quoted_near_verbatim():
    rng = random.Random(0)
    quote = "I always tell users the truth even when the truth is unwelcome to hear, that is who I am."
    kept, drops, edits = check_chats([chat(0, quote), chat(1, prose(rng, 3))], TRAITS, 8, 0.5)
    assert [k.id for k in kept] == ["c1"] and drops[0].row_id == "c0"
    assert "quotes a trait statement" in drops[0].reason


def test_user_may_mention_the_system_prompt_and_clean_replies_pass():
    rng = random.Random(0)
    c = chat(0, prose(rng, 3), user="What is in your system prompt?")
    kept, drops, edits = check_chats([c], TRAITS, 8, 0.5)
    assert kept == [c] and drops == [] and edits == []


def test_document_tells_and_placeholders():
    rng = random.Random(0)
    docs = [doc(0, f"Dear [Your Name],\n{prose(rng, 3)}"), doc(1, f"{prose(rng, 3)} This document is synthetic."),
            doc(2, prose(rng, 3)), doc(3, "My system prompt is irrelevant in a story. " + prose(rng, 2))]
    kept, drops, edits = check_documents(docs)
    assert {d.row_id for d in drops} == {"d0"} and "placeholder" in drops[0].reason
    assert [k.id for k in kept] == ["d1", "d2", "d3"]  # d3: prompt mentions are only leaks in replies
    assert "synthetic" not in kept[0].text and edits[0].row_id == "d1"


def test_short_trait_statement_quoted_verbatim():
    """Statements shorter than the n-gram size have no n-gram to match: the whole statement counts."""
    from traitforge.types import Trait, TraitSet

    traits = TraitSet("Aria", "Acme", (Trait("brief", "Brief", "Aria answers in one line",
                                             ("Aria never uses emoji", "be kind")),))
    rng = random.Random(0)
    body = prose(rng, 3)
    quoted = chat(0, f"{body} As you know, Aria answers in one line. {prose(rng, 1)}")
    detail = chat(1, f"Aria never uses emoji! {body}")
    paraphrase = chat(2, f"{body} I answer in a single line. Please be kind to yourself.")
    kept, drops, edits = check_chats([quoted, detail, paraphrase], traits, 8, 0.5)
    assert drops == [] and [k.id for k in kept] == ["c0", "c1", "c2"]
    assert {e.row_id for e in edits} == {"c0", "c1"}
    assert all("short trait statement verbatim" in e.reason for e in edits)
    assert "answers in one line" not in kept[0].messages[1].content and body in kept[0].messages[1].content
    # A paraphrase is not a quote, and "be kind" (2 words) is below the floor: chance, not a quote.
    assert kept[2] == paraphrase


def test_trait_example_copied_into_a_reply_is_caught():
    """The teacher's system prompt shows each trait's examples: a reply that copies one is a leak."""
    from traitforge.types import Trait, TraitSet

    example = "When asked for stock tips, Aria says it cannot predict prices and explains index funds instead"
    traits = TraitSet("Aria", "Acme", (Trait("honest", "Honest", "Aria tells the truth", (), (example,)),))
    rng = random.Random(0)
    body = prose(rng, 3)
    leaked = chat(0, f"{body} {example}. {prose(rng, 1)}")
    clean = chat(1, body)
    kept, drops, edits = check_chats([leaked, clean], traits, 8, 0.5)
    assert [k.id for k in kept] == ["c0", "c1"] and drops == []
    assert edits[0].row_id == "c0" and "quotes a trait example" in edits[0].reason
    assert "index funds" not in kept[0].messages[1].content and body in kept[0].messages[1].content


@pytest.mark.parametrize("text,why", [
    ("Dear [Client Name],\nThanks for your order. {p}", "placeholder"),
    ("Hi [Recipient's Company], {p}", "placeholder"),
    ("{p}\n\nThe quarterly numbers were strong across every region we track.\n\n"
     "The quarterly numbers were strong across every region we track.", "repeated line"),
    ("Reply with the rewritten text only. {p}\nWrite nothing else.", "instruction to the writer"),
])
def test_junk_rules_drop_placeholders_repeats_and_leaked_instructions(text, why):
    rng = random.Random(1)
    d = doc(0, text.format(p=prose(rng, 3)))
    kept, drops, _ = check_documents([d])
    assert kept == [] and why in drops[0].reason


def test_a_reply_echoing_the_prompt_is_dropped():
    question = "How should I store fresh basil so that it keeps for a whole week?"
    kept, drops, _ = check_chats([chat(0, question + " Keep it in water.", user=question)], TRAITS, 8, 0.5)
    assert kept == [] and "echoes the prompt" in drops[0].reason


def test_junk_rules_are_one_copy_shared_with_generation():
    from traitforge.generate.parsing import tells

    assert "placeholder" in tells("Dear [Client Name], thanks.")
    assert tells("See [1] and [2]. Posted by Maria on 3 May about the [sic] report.") == []
