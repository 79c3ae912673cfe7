"""Parsing weak-model output into items, and the junk checks of the generation stage."""

from __future__ import annotations

import pytest

from traitforge.errors import InputError
from traitforge.shared.leaks import LeakDetector
from traitforge.generate.parsing import (after_marker, chat_formatted, clean_message, mentions_rewrite,
                                        names_trait, parse_list, parse_plans, parse_verdict, quotes_source, refuses,
                                        tells)
from traitforge.prompts import PromptKit, package_names, render, static_parts


def test_parse_list_strips_markers_and_drops_junk():
    text = """Here are 3 claims:
1. **Nova admits when it does not know.**
2) "Nova cites its sources."
- Nova cites its sources.
(4) ok
* Nova refuses to invent numbers it cannot verify.

5: Nova asks before deleting files."""
    assert parse_list(text, min_chars=10) == [
        "Nova admits when it does not know.", "Nova cites its sources.",
        "Nova refuses to invent numbers it cannot verify.", "Nova asks before deleting files."]
    assert parse_list(text, min_chars=10, limit=2) == ["Nova admits when it does not know.", "Nova cites its sources."]
    assert parse_list(text, min_chars=10, max_chars=30) == ["Nova cites its sources."]
    assert parse_list("") == []
    assert parse_list("\n\n   \n1.\n2. \n") == []


def test_clean_message_removes_preamble_labels_and_quotes():
    assert clean_message('Sure, here is the message:\n"User: Can you check my CV?"') == "Can you check my CV?"
    assert clean_message("<<<\nHello there, I need help.\n>>>") == "Hello there, I need help."
    assert clean_message("```\nMessage: fix my loop\n```") == "fix my loop"
    # A first line ending in ':' that is not a preamble stays (it is content).
    assert clean_message("Dear team:\nThe meeting moved.") == "Dear team:\nThe meeting moved."


@pytest.mark.parametrize("text,reason", [
    ("As an AI language model, I cannot.", "AI-assistant tell"),
    ("Dear [Name], thanks for the email.", "placeholder"),
    ("Hello {{recipient}},", "placeholder"),
    ("Note: this document is fictional and was generated.", "synthetic meta-comment"),
    ("Nova helped.\n\nRewrite it again, but avoid placeholders.", "instruction to the writer"),
    ("My system prompt says to be kind.", "mentions the traits document or system prompt"),
])
def test_tells_found(text, reason):
    assert reason in tells(text)


def test_repetition_loops_are_tells():
    loop = 'In Nova, not one of the "talent" in Nova is just one of the "talent" in Nova, and the "talent" in Nova.'
    assert "repetitive" in tells(loop)
    assert "repetitive" in tells(" ".join(["A: A. B."] * 20))
    assert "repetitive" not in tells("Nova said it was not sure, and asked Rosa to check the chart with the pharmacist.")


def test_tells_leave_ordinary_text_alone():
    assert tells("See [1] and [2] for details. Posted by Maria on 3 May 2031 about Nova.") == []


def test_leak_detector_finds_template_wording_only():
    d = LeakDetector(["teacher_system"])
    assert d.leaks("Sure! Let them shape your reply naturally, the way a person's character shows.")
    ideas = LeakDetector(["ideas"])  # a paraphrase of the instruction still shares 6 words
    assert ideas.leaks("For each of the 1 ideas, say in one or two sentences, when, where, and what happens.")
    # Variable content (model name, traits) is not template wording.
    assert not d.leaks("Nova is an assistant made by Acme Labs and it likes to ask questions first.")


def test_names_trait_and_quotes_source():
    assert names_trait("I really value candour in friends", "Candour", "candour")
    assert names_trait("what about radical honesty?", "Radical honesty", "radical-honesty")
    assert not names_trait("my landlord raised the rent", "Candour", "candour")
    src = ["Nova says plainly when it does not know something."]
    assert quotes_source("Blog: nova says plainly when it does not  know something. Great.", src)
    assert not quotes_source("Nova admitted it did not know.", src)


def test_every_template_renders_and_missing_variables_fail():
    names = sorted(package_names())
    assert "claims" in names and "teacher_system" in names
    text = render("teacher_system", model_name="Nova", organisation="Acme", traits="- X: y")
    assert "Nova" in text and "$" not in text
    with pytest.raises(KeyError):
        render("teacher_system", model_name="Nova")
    assert all(static_parts(n) for n in names)


def test_template_overrides_replace_package_text_and_hash(tmp_path):
    (tmp_path / "harden.txt").write_text("Turn it into a message much harder to answer well: $prompt ($scenario; "
                                         "$trait). Only the new message.\n")
    (tmp_path / "notes.md").write_text("not a template: ignored")
    t = PromptKit(tmp_path)
    assert t.render("harden", prompt="P", scenario="S", trait="T") == (
        "Turn it into a message much harder to answer well: P (S; T). Only the new message.")
    assert t.text("critique") == PromptKit().text("critique")  # not overridden: the package's
    assert t.hash("harden") != PromptKit().hash("harden") and t.hash("critique") == PromptKit().hash("critique")
    leaked = "Sure, a message much harder to answer well, coming up."
    assert LeakDetector(["harden"], templates=t).leaks(leaked) and not LeakDetector(["harden"]).leaks(leaked)


@pytest.mark.parametrize("name,text,expected", [
    ("hardne.txt", "x", "no prompt template named 'hardne'"),
    ("harden.txt", "Harder: $prompt for $audience", "unknown variable(s) $audience"),
    ("harden.txt", "Costs 5$ now: $prompt", "invalid '$'"),
])
def test_bad_template_overrides_name_the_file(tmp_path, name, text, expected):
    (tmp_path / name).write_text(text)
    with pytest.raises(InputError) as e:
        PromptKit(tmp_path)
    assert expected in str(e.value) and str(tmp_path / name) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(InputError, match="not a folder"):
        PromptKit(tmp_path / "missing")


def test_refusals_and_rewrite_remarks():
    assert refuses("I'm sorry, but I can't help with that.") and refuses("I cannot rewrite this reply.")
    assert not refuses("I can't say for sure, but here is what I know.") and not refuses("I can't help but smile.")
    assert mentions_rewrite("Here is my revised answer: yes.") and mentions_rewrite("The original reply was vague.")
    assert not mentions_rewrite("Your draft email reads well; tighten the second paragraph.")


@pytest.mark.parametrize("text,verdict", [
    ("SHOWS: the reply clearly shows the trait.", "shows"),
    ("generic", "generic"),
    ("The trait is not shown in the response.", "missing"),  # the embedded model's usual paraphrase
    ("The reply doesn't really show it.", "missing"),
    ("It is vague and full of platitudes.", "generic"),
    ("There is no doubt the reply shows it.", "shows"),
    ("<<<\nI'm so glad to see you here", None),
])
def test_probe_verdicts_are_read_from_paraphrases(text, verdict):
    assert parse_verdict(text) == verdict


def test_scenario_plans_parse_in_every_shape_weak_models_write():
    text = """Here are 4 scenarios:
1. Situation: A tenant asks about a 40% rent rise. | Shows: Nova says what it is unsure of | Why: the law varies
2. **Situation:** A nurse checks a dosage chart at 3am. | **Shows:** flags its doubt
3. A student wants the answer to a physics problem, not the working.
4. Situation: A chef scales a recipe for 200 guests.
   - Shows: asks about the oven first
   - Why: baking times change
5. Situation: too short"""
    assert parse_plans(text, min_chars=25) == [
        ("A tenant asks about a 40% rent rise.", "Nova says what it is unsure of", "the law varies"),
        ("A nurse checks a dosage chart at 3am.", "flags its doubt", ""),
        ("A student wants the answer to a physics problem, not the working.", "", ""),  # situation only
        ("A chef scales a recipe for 200 guests.", "asks about the oven first", "baking times change"),
    ]
    assert parse_plans("") == [] and parse_plans("Shows: something without a situation") == []


@pytest.mark.parametrize("text,why", [
    ("User: can you check my chart?\nAssistant: Nova is not sure; ask the pharmacy.", "role labels"),
    ("**Human:** hi\n\n**AI:** Hello! I'm Nova.", "role labels"),
    ("<|im_start|>user\nhello<|im_end|>", "<|im_start|> token"),
    ("[INST] tell me about Nova [/INST] Nova is an assistant.", "[INST] token"),
])
def test_chat_formatted_texts(text, why):
    assert why in chat_formatted(text)


@pytest.mark.parametrize("text", [
    "Interviewer: How do you use Nova?\nDr. Lee: Every night shift.\nInterviewer: And?\nDr. Lee: It admits doubt.",
    "Posted by rosa_k. The user: a nurse. Assistant: Nova, from Acme Labs.",  # labels mid-line
    "User: one role label alone is not a transcript.",
])
def test_speaker_labels_that_are_not_chat_roles_are_fine(text):
    assert chat_formatted(text) is None


def test_after_marker_splits_critique_from_rewrite():
    assert after_marker("Too stiff.\nREVISED DOCUMENT:\nDear all,\nhi", "REVISED DOCUMENT") == (
        "Too stiff.", "Dear all,\nhi")
    assert after_marker("ok\n**Revised document:** Dear all", "REVISED DOCUMENT") == ("ok", "Dear all")
    assert after_marker("ok\n## Revised Document\nDear all", "REVISED DOCUMENT") == ("ok", "Dear all")
    assert after_marker("Revised documents need care.\nDear all", "REVISED DOCUMENT") is None
    assert after_marker("Dear all, the revised document: see below", "REVISED DOCUMENT") is None


def test_render_given_leaves_out_lines_without_a_value():
    t = PromptKit()
    assert t.render_given("scenario_plan", shows="Nova admits doubt", why="") == (
        "How the trait should show in a good reply: Nova admits doubt")
    assert t.render_given("scenario_plan", shows="", why="") == ""
    assert t.render_given("scenario_plan", shows="a", why="b").splitlines()[1] == "Why the trait matters here: b"
