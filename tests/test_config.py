"""Run spec validation: unknown keys and wrong types are errors that name the key."""

from pathlib import Path

import pytest

from traitforge.config import example_spec, load_spec
from traitforge.errors import InputError


def spec_file(tmp_path, text):
    p = tmp_path / "spec.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_example_spec_is_valid(tmp_path):
    spec = load_spec(spec_file(tmp_path, example_spec()))
    assert spec.models.generator.model == "local:smollm2-135m"
    assert spec.resolve("traits.md") == tmp_path / "traits.md"
    assert spec.output_path == tmp_path / "runs" / "my-run"


def test_model_spec_string_or_mapping(tmp_path):
    spec = load_spec(spec_file(tmp_path, "traits: t.md\nmodels:\n  generator: openai:gpt-4o-mini\n"
                                         "  judge: {model: anthropic:claude-haiku-4-5, concurrency: 4}\n"))
    assert spec.models.generator.model == "openai:gpt-4o-mini"
    assert spec.models.judge.concurrency == 4


@pytest.mark.parametrize("text,expected", [
    ("traits: t.md\nsed: 1\n", "unknown key 'sed'"),
    ("traits: t.md\ngeneration:\n  documents:\n    claims_per_trait: many\n",
     "key 'generation.documents.claims_per_trait'"),
    ("traits: t.md\ncuration: {dedup_threshold: 3}\n", "key 'curation.dedup_threshold'"),
    ("traits: t.md\nmodels: {judge: gpt-4o}\n", 'must be "provider:model"'),
    ("traits: t.md\ntraining: {method: qlora}\n", "key 'training.method'"),
    ("models: {}\n", "missing required key 'traits'"),
    ("- a\n- b\n", "must be a YAML mapping"),
    ("traits: [t.md\n", "invalid YAML at line"),
])
def test_bad_specs(tmp_path, text, expected):
    p = spec_file(tmp_path, text)
    with pytest.raises(InputError) as e:
        load_spec(p)
    assert expected in str(e.value) and str(p) in str(e.value) and "\n" not in str(e.value)


def test_overrides_merge_deeply(tmp_path):
    spec = load_spec(spec_file(tmp_path, "traits: t.md\ngeneration: {documents: {claims_per_trait: 9}}\n"),
                     overrides={"generation": {"documents": {"revise": False}}})
    assert spec.generation.documents.claims_per_trait == 9 and spec.generation.documents.revise is False


EXAMPLE_TRAITS = Path(__file__).resolve().parents[1] / "examples" / "traits.md"


def test_refiner_defaults_to_the_generator_and_shares_cache_and_budget(tmp_path):
    from traitforge.pipeline import open_run

    (tmp_path / "traits.md").write_text(EXAMPLE_TRAITS.read_text(encoding="utf-8"), encoding="utf-8")
    base = "traits: traits.md\nbudget: {max_usd: 1}\nmodels:\n  generator: scripted:gen\n"
    run = open_run(spec_file(tmp_path, base))
    assert run.spec.models.refiner is None and run.llm("refiner") is run.llm("generator")
    run = open_run(spec_file(tmp_path, base + "  refiner: {model: scripted:strong, concurrency: 2}\n"))
    refiner, generator = run.llm("refiner"), run.llm("generator")
    assert refiner is not generator and refiner.name == "scripted:strong"
    assert refiner.cache is generator.cache is run.cache and refiner.budget is generator.budget is not None


def test_a_model_both_judge_and_evaluated_is_one_client(tmp_path):
    """The run's one client pool: the judge and an evaluated model naming the same API model share one
    client (one connection pool, one rate limiter), and the evaluation takes it from the pool."""
    from traitforge.evaluate.common import EvalContext, normalise_checkpoints
    from traitforge.pipeline import open_run

    (tmp_path / "traits.md").write_text(EXAMPLE_TRAITS.read_text(encoding="utf-8"), encoding="utf-8")
    api = "{model: 'openai:served', base_url: 'http://127.0.0.1:9/v1', rpm: 60}"
    run = open_run(spec_file(tmp_path, f"traits: traits.md\nmodels:\n  judge: {api}\n"
                                       f"evaluation:\n  models:\n    served: {api}\n    other: {{model: scripted:x}}\n"))
    cks = normalise_checkpoints({}, run.spec.evaluation.models, run.spec.resolve)
    ctx = EvalContext(run, run.spec.evaluation, run.llm("judge"), run.llm("judge"), cks)
    assert ctx.target("served") is run.llm("judge") and ctx.target("served").limiter is run.llm("judge").limiter
    assert ctx.target("other") is not run.llm("judge") and ctx.target("other") is run.client(cks["other"])
    # The run's pool holds one client per model identity: the judge's model is not opened twice.
    assert [c for c in run.clients() if c.name == run.llm("judge").name] == [run.llm("judge")]


def test_max_traits_keeps_the_first_traits(tmp_path):
    from traitforge.pipeline import open_run, preset_overrides

    (tmp_path / "traits.md").write_text(EXAMPLE_TRAITS.read_text(encoding="utf-8"), encoding="utf-8")
    spec = spec_file(tmp_path, "traits: traits.md\n")
    assert len(open_run(spec).traits.traits) == 5
    # The tiny preset keeps the CI run at the example's first two traits, whatever the document adds.
    assert preset_overrides("tiny")["max_traits"] == 2
    tiny = open_run(spec, preset="tiny")
    assert [t.id for t in tiny.traits.traits] == ["honest-under-pressure", "not-sycophantic"]
    assert tiny.store.manifest["traits"]["ids"] == [t.id for t in tiny.traits.traits]
