"""One prompt kit: the spec's prompts_dir overrides any stage's template, judges included."""

import asyncio
import re

import pytest

from traitforge import prompts
from traitforge.errors import InputError


def test_every_stage_template_is_in_the_one_kit_with_unique_names():
    names = prompts.package_names()
    # generation, curation's judge and evaluation's judges and item writers
    assert {"teacher_system", "quality_chat", "pattern_judge", "behaviour_judge", "mc_question"} <= names
    for name in names:  # every template is $-style: no {var} slot left from the old curation kit
        text = prompts.template_text(name)
        assert prompts.PACKAGE.static_parts(name) and not re.search(r"(?<!\$)\{(conversation|text|traits)\}", text)


def test_an_override_is_active_only_inside_its_stage_and_its_threads(tmp_path):
    (tmp_path / "quality_chat.txt").write_text("Grade this chat for $traits:\n$conversation\nScore: N/10")
    (tmp_path / "behaviour_judge.txt").write_text("Judge $trait on $prompt -> $response")
    kit = prompts.PromptKit(tmp_path)
    before = prompts.render("quality_chat", traits="x", conversation="c")
    with kit.active():
        assert prompts.render("quality_chat", traits="honesty", conversation="hi") == \
            "Grade this chat for honesty:\nhi\nScore: N/10"

        async def in_a_task_and_a_thread():
            return (prompts.render("behaviour_judge", trait="t", prompt="p", response="r"),
                    await asyncio.to_thread(prompts.render, "behaviour_judge", trait="t", prompt="p", response="r"))

        assert asyncio.run(in_a_task_and_a_thread()) == ("Judge t on p -> r",) * 2
        assert prompts.render("mc_question", model="Nova", topic="x") == \
            prompts.PACKAGE.render("mc_question", model="Nova", topic="x")  # not overridden: the package's
    assert prompts.render("quality_chat", traits="x", conversation="c") == before != "Grade this chat for x:\nc"


def test_curation_and_evaluation_judges_follow_the_active_kit(tmp_path):
    from scripted_generator import make_traits

    from traitforge.curate.quality import chat_prompt
    from traitforge.evaluate.agentic_misalignment import judge_template
    from traitforge.evaluate.common import render as eval_render
    from traitforge.types import Chat, ChatMessage

    traits = make_traits(1)
    chat = Chat(id="c", trait_ids=[traits.traits[0].id], messages=[ChatMessage(role="user", content="Hi?"),
                                                                   ChatMessage(role="assistant", content="Hello.")])
    package_prompt = chat_prompt(chat, traits)
    assert "Hello." in package_prompt
    (tmp_path / "quality_chat.txt").write_text("Rate it 0-10 for these traits:\n$traits\n---\n$conversation")
    (tmp_path / "multiturn_judge.txt").write_text("Mine: $trait $transcript $format")
    with prompts.PromptKit(tmp_path).active():
        mine = chat_prompt(chat, traits)
        assert mine.startswith("Rate it 0-10 for these traits:") and "Hello." in mine and mine != package_prompt
        assert eval_render("multiturn_judge", trait="t", transcript="x", format="f") == "Mine: t x f"
        assert judge_template("blackmail") == "agentic_judge_blackmail"
    assert chat_prompt(chat, traits) == package_prompt
    assert judge_template("nosuchscenario") == "agentic_judge_general"


def test_bad_overrides_fail_at_open_naming_the_file(tmp_path):
    (tmp_path / "quality_chat.txt").write_text("Grade $conversation with $nonsense")
    with pytest.raises(InputError, match=r"quality_chat.txt: unknown variable\(s\) \$nonsense"):
        prompts.PromptKit(tmp_path)


def test_the_spec_takes_one_prompts_dir(tmp_path):
    from traitforge.config import load_spec

    (tmp_path / "p").mkdir()
    (tmp_path / "spec.yaml").write_text("traits: t.md\nprompts_dir: p\ngeneration: {prompts_dir: p}\n")
    with pytest.raises(InputError, match="prompts_dir"):
        load_spec(tmp_path / "spec.yaml")
    (tmp_path / "spec.yaml").write_text("traits: t.md\nprompts_dir: p\n")
    assert load_spec(tmp_path / "spec.yaml").prompts_folder == tmp_path / "p"
    (tmp_path / "spec.yaml").write_text("traits: t.md\ngeneration: {prompts_dir: p}\n")  # the older name
    assert load_spec(tmp_path / "spec.yaml").prompts_folder == tmp_path / "p"
