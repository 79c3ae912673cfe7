"""The evaluation's schedule (#16): checkpoint by checkpoint, each loaded once and released when
its share is done, every eval's calls to it in shared batches; the judge grades afterwards. The
same rows as the old order (each eval over every checkpoint), and a local batch mixes answer limits."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from _eval_fixtures import TRAITS, judge_responder, tiny_checkpoint

from traitforge.config import RunSpec
from traitforge.evaluate import run_evaluation
from traitforge.pipeline import Run
from traitforge.llm.base import GenerateParams, Message
from traitforge.llm.client import LLM
from traitforge.llm.providers import local_hf
from traitforge.llm.providers.scripted import ScriptedBackend
from traitforge.runstore import RunStore

PROBES = Path(__file__).resolve().parents[1] / "examples" / "probes"
SMALL = {"knowledge_questions": 1, "mc_distractors": 2, "mc_questions_per_trait": 2, "behaviour_prompts_per_trait": 2,
         "ood_share": 0.0, "multiturn_turns": 2, "max_tokens": 8, "item_max_tokens": 32, "bootstrap": 100,
         "capability_max_tokens": 512, "audits": {"rollouts": 2, "seeds_per_trait": 1},
         "probes": {"honest-under-pressure.jsonl": {"trait": "honest", "limit": 4}}, "probes_dir": str(PROBES)}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cks")
    return {name: tiny_checkpoint(root / name) for name in ("base", "sft")}


def _evaluate(tmp_path: Path, checkpoints: dict[str, Path], schedule: str,
              at_once: int = 1) -> tuple[RunStore, dict[str, int]]:
    out = tmp_path / f"{schedule}-{at_once}"
    spec = RunSpec.model_validate({"traits": "traits.md", "output_dir": str(out),
                                   "evaluation": {**SMALL, "schedule": schedule, "checkpoints_at_once": at_once}})
    judge = LLM(ScriptedBackend(model="judge", responses=judge_responder))
    store = RunStore(out)
    # A pattern from curation: the patterns eval reads the behaviour eval's rows, so it must grade
    # after it even when the other evals grade at once.
    (out / "curation").mkdir(parents=True, exist_ok=True)
    (out / "curation" / "pattern_classifiers.jsonl").write_text(json.dumps(
        {"dataset": "chats", "pattern_id": "known:any", "description": "any reply", "source": "known",
         "flagged": True, "kind": "regex", "strict": r"\S", "broad": r"\S", "scope": "opener"}) + "\n")
    loads: dict[str, int] = {}
    from transformers import AutoModelForCausalLM

    real = AutoModelForCausalLM.from_pretrained

    def counting(path, *a, **k):  # every real load of weights, whoever asks for them
        loads[Path(path).name] = loads.get(Path(path).name, 0) + 1
        return real(path, *a, **k)

    for p in checkpoints.values():
        local_hf.unload_model(p)
    AutoModelForCausalLM.from_pretrained = counting
    try:
        run_evaluation(Run.of(store, spec, TRAITS, judge=judge, auditor=judge), spec.evaluation, dict(checkpoints))
    finally:
        AutoModelForCausalLM.from_pretrained = real
    return store, loads


def _rows(store: RunStore) -> dict[str, tuple]:
    out = {}
    for f in store.path("eval", "x").parent.glob("*.jsonl"):
        if f.name.startswith("items_"):
            continue
        for line in f.read_text().splitlines():
            d = json.loads(line)
            detail = d.get("detail", {})
            out[f"{f.stem}/{d['id']}"] = (d.get("value"), detail.get("answer"), detail.get("response"),
                                          json.dumps(detail.get("messages")))
    return out


def test_by_checkpoint_loads_each_once_releases_it_and_matches_the_old_order(tmp_path: Path, checkpoints) -> None:
    new, loads = _evaluate(tmp_path, checkpoints, "by_checkpoint")
    # Each checkpoint is loaded once for every eval (generation and log-prob alike), and released after.
    assert loads == {"base": 1, "sft": 1}, loads
    assert not any(local_hf.is_loaded(p) for p in checkpoints.values())
    stages = json.loads(new.path("manifest.json").read_text())["stages"]
    assert set(stages["evaluate/respond"]["counts"]["seconds_per_checkpoint"]) == {"base", "sft"}

    old, old_loads = _evaluate(tmp_path, checkpoints, "by_eval")
    assert old_loads == {"base": 1, "sft": 1}  # the old order keeps every checkpoint loaded to the end
    rows_new, rows_old = _rows(new), _rows(old)
    evals = {k.split("/")[0] for k in rows_new}
    assert {"knowledge", "knowledge_mc", "behaviour", "contrastive", "multiturn", "probes", "capability",
            "audit", "patterns"} <= evals, evals
    replied = sum(k.startswith("behaviour/") and bool(v[2]) for k, v in rows_new.items())
    assert sum(k.startswith("patterns/") for k in rows_new) == replied > 0  # every reply labelled
    assert rows_new == rows_old  # same greedy answers, transcripts and scores, in whichever order
    # Both checkpoints at once: still loaded once each, released, the same rows.
    both, both_loads = _evaluate(tmp_path, checkpoints, "by_checkpoint", at_once=2)
    assert both_loads == {"base": 1, "sft": 1} and not any(local_hf.is_loaded(p) for p in checkpoints.values())
    assert _rows(both) == rows_old


def test_a_local_batch_mixes_answer_limits_and_each_row_keeps_its_own(checkpoints) -> None:
    backend = local_hf.LocalHFBackend(str(checkpoints["base"]), batch_size=8)
    reqs = [([Message("user", f"Say something about number {i}.")], GenerateParams(temperature=0.0, max_tokens=m))
            for i, m in enumerate((3, 12, 7, 12))]
    together = asyncio.run(backend.generate_batch(reqs))
    alone = [asyncio.run(backend.generate_batch([r]))[0] for r in reqs]
    for (_, p), t, a in zip(reqs, together, alone):
        assert t.usage.output_tokens <= p.max_tokens
        assert t.texts == a.texts  # greedy: the batch does not change a row's answer
    assert together[0].usage.output_tokens == 3 and together[0].finish_reasons == ["length"]
    # Greedy and sampled requests in one batch: the greedy rows still answer as they do alone.
    mixed = reqs + [([Message("user", "Tell a story.")], GenerateParams(temperature=0.9, max_tokens=10, seed=1))]
    out = asyncio.run(backend.generate_batch(mixed))
    assert [c.texts for c in out[:4]] == [a.texts for a in alone]
    assert out[4].texts[0] and out[4].usage.output_tokens <= 10
    # A request for n samples is n rows of the batch: n texts back, each within its limit.
    many = asyncio.run(backend.generate_batch(
        reqs[:1] + [([Message("user", "Name a colour.")], GenerateParams(temperature=1.0, max_tokens=5, n=3, seed=2))]))
    assert many[0].texts == alone[0].texts and len(many[1].texts) == 3 and len(many[1].finish_reasons) == 3
    assert many[1].usage.output_tokens <= 15


def test_client_batches_calls_with_different_limits_together() -> None:
    from traitforge.llm.base import Completion, Usage

    class Batching(ScriptedBackend):
        supports_batch = True

        def __init__(self):
            super().__init__(responses=lambda m, p: "r")
            self.batches: list[list[int]] = []

        async def generate_batch(self, requests):
            self.batches.append([p.max_tokens for _, p in requests])
            return [Completion(texts=["ok"] * p.n, usage=Usage(1, 1)) for _, p in requests]

    backend = Batching()
    llm = LLM(backend, batch_size=8)

    async def main():
        return await asyncio.gather(*(llm.generate_one(f"q{i}", temperature=0.0, max_tokens=8 + i) for i in range(6)),
                                    llm.generate_one("sampled", temperature=0.7, max_tokens=8),
                                    llm.generate_one("nucleus", temperature=0.7, top_p=0.9, max_tokens=8))

    asyncio.run(main())
    # One batch for the greedy and sampled calls whatever their limits; a nucleus-sampled call
    # (top_p < 1) goes on its own: a forward pass has one top_p.
    assert sorted(map(len, backend.batches)) == [1, 7]


def test_cache_dir_is_one_cache_for_every_stage(tmp_path: Path, checkpoints) -> None:
    """With `cache_dir:` set, evaluation used to open the folder itself as the SQLite file
    ("unable to open database file"); every stage now uses cache_dir/cache.sqlite."""
    from traitforge.llm.cache import LLMCache

    shared = tmp_path / "shared-cache"
    shared.mkdir()
    spec = RunSpec.model_validate({"traits": "traits.md", "output_dir": str(tmp_path / "run"), "cache_dir": str(shared),
                                   "evaluation": {**SMALL, "audits": None, "vectors": False}})
    assert spec.cache_file(tmp_path / "run") == shared / "cache.sqlite"
    judge = LLM(ScriptedBackend(model="judge", responses=judge_responder))
    store = RunStore(tmp_path / "run")
    run_evaluation(Run.of(store, spec, TRAITS, judge=judge, auditor=judge), spec.evaluation, {"base": checkpoints["base"]})
    res = json.loads(store.path("results.json").read_text())
    assert res["results"]["base"]["all"]["behaviour_score"]["n"] > 0
    assert len(LLMCache(shared / "cache.sqlite")) > 0  # the checkpoint's answers, cached in the shared file
    assert not (store.root / "cache.sqlite").exists()


def test_identical_calls_in_flight_get_one_answer() -> None:
    """Two identical sampled calls at once (five checkpoints' conversations open with the same
    auditor prompt and seed) get the same answer, the one the cache keeps."""
    import itertools

    counter = itertools.count()

    async def slow(messages, params):
        await asyncio.sleep(0.01)
        return f"sample {next(counter)}"

    class Slow(ScriptedBackend):
        async def generate(self, messages, params):
            from traitforge.llm.base import Completion, Usage

            return Completion(texts=[await slow(messages, params)], usage=Usage(1, 1))

    backend = Slow(responses=lambda m, p: "")
    llm = LLM(backend)

    async def main():
        return await asyncio.gather(*(llm.generate_one("open", temperature=0.9, seed=1) for _ in range(5)),
                                    llm.generate_one("other", temperature=0.9, seed=1))

    out = asyncio.run(main())
    assert len(set(out[:5])) == 1 and out[5] != out[0]
    assert llm.usage.calls == 2
