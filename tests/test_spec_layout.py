"""The spec file format is one document whose sections each stage reads for itself: every example
spec and every preset loads, and the few settings one stage takes from another's section reach the
reader's section without becoming keys of it (spec dumps and stage fingerprints are unchanged)."""

from __future__ import annotations

from pathlib import Path

import pytest

from traitforge.config import RunSpec, example_spec, load_spec
from traitforge.runcontext import PRESETS_DIR, preset_overrides

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.yaml"))
PRESETS = sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
@pytest.mark.parametrize("preset", [None, *PRESETS])
def test_every_example_spec_loads_with_every_preset(path, preset):
    spec = load_spec(path, overrides=preset_overrides(preset))
    assert spec.traits and spec.curation.chat_max_tokens == spec.generation.chats.max_tokens


@pytest.mark.parametrize("preset", [None, *PRESETS])
def test_the_packaged_example_loads_with_every_preset(tmp_path, preset):
    path = tmp_path / "spec.yaml"
    path.write_text(example_spec(), encoding="utf-8")
    assert load_spec(path, overrides=preset_overrides(preset)).traits


def test_examples_and_presets_were_found():
    assert len(EXAMPLES) >= 2 and {"tiny", "paper"} <= set(PRESETS)


def test_settings_taken_from_another_section_reach_the_readers_section_only():
    spec = RunSpec.model_validate({
        "traits": "t.md", "generation": {"chats": {"max_tokens": 77}},
        "curation": {"template_traits": ["canary", "house-style"]},
        "evaluation": {"bootstrap": 300, "vector_questions": 5, "vector_paraphrases": 2},
        "training": {"checkpoints": ["base", "sft"]}})
    assert spec.curation.chat_max_tokens == 77
    assert spec.curation.bootstrap_resamples == 300 and spec.curation.vector_settings == (5, 2)
    assert spec.training.template_traits == ["canary", "house-style"]
    assert spec.generation.control_arm is False
    assert RunSpec(traits="t.md").generation.control_arm is True  # the default checkpoints list it
    # Not keys: a section's dump (what fingerprints and the manifest's inputs read) does not hold them.
    for section, keys in (("curation", ("chat_max_tokens", "bootstrap_resamples", "vector_settings")),
                          ("training", ("template_traits",)), ("generation", ("control_arm",))):
        dumped = getattr(spec, section).model_dump()
        assert not any(k in dumped or f"_{k}" in dumped for k in keys)
    assert "chat_max_tokens" not in RunSpec.model_json_schema()["$defs"]["CurationSpec"]["properties"]


def test_each_stage_section_lives_beside_its_stage():
    homes = {"generation": "generate", "curation": "curate", "training": "train", "evaluation": "evaluate"}
    for key, stage in homes.items():
        assert RunSpec.model_fields[key].annotation.__module__ == f"traitforge.{stage}.settings", key
    for key in ("models", "controls", "budget"):  # run-level: read through the run context by several stages
        assert RunSpec.model_fields[key].annotation.__module__ == "traitforge.config", key


def test_a_section_built_alone_falls_back_to_the_defaults_the_spec_would_hand_it():
    from traitforge.curate.settings import CurationSpec
    from traitforge.generate.settings import GenerationSpec
    from traitforge.train.settings import TrainingSpec

    spec = RunSpec(traits="t.md")
    alone = CurationSpec()
    assert alone.chat_max_tokens == spec.generation.chats.max_tokens == spec.curation.chat_max_tokens
    assert alone.bootstrap_resamples == spec.evaluation.bootstrap
    assert alone.vector_settings == (spec.evaluation.vector_questions, spec.evaluation.vector_paraphrases)
    assert TrainingSpec().template_traits == spec.curation.template_traits == spec.training.template_traits
    assert GenerationSpec().control_arm is ("control" in spec.training.checkpoints) is spec.generation.control_arm


def test_the_evaluations_flat_keys_still_load_beside_its_nested_ones(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("traits: t.md\nevaluation:\n  capability_text: text.txt\n  capability_window: 64\n"
                    "  capability_max_tokens: 512\n  lm_eval_tasks: [hellaswag]\n  vector_questions: 5\n"
                    "  capability:\n    side_by_side: {n: 3, verdict: logprob}\n"
                    "  odcv: {dir: odcv, max_steps: 5, keep_steps: 2}\n", encoding="utf-8")
    ev = load_spec(path).evaluation
    assert (ev.capability_text, ev.capability_window, ev.capability_max_tokens) == ("text.txt", 64, 512)
    assert ev.lm_eval_tasks == ["hellaswag"] and ev.capability.side_by_side.n == 3
    assert ev.odcv.max_steps == 5 and ev.odcv.keep_steps == 2  # harness and grading keys in one section
