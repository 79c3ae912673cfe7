"""`llm/` is a library that knows nothing of runs: its import graph (read with `ast`, imports inside
functions and under TYPE_CHECKING included) reaches no run module; one provider table serves the
registry, the batch runner and the model spec's validation; an option a provider does not take is
one error naming the key; budget and batch runner work on any Ledger, not only a RunStore."""

import ast
import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fake_batch_server import FakeBatchServer  # noqa: E402

from traitforge.config import ModelSpec, load_spec  # noqa: E402
from traitforge.errors import InputError  # noqa: E402
from traitforge.jsonl import write_json_atomic  # noqa: E402
from traitforge.llm import registry  # noqa: E402
from traitforge.llm.base import REASONING_OPTIONS, GenerateParams  # noqa: E402
from traitforge.llm.batch import runner  # noqa: E402
from traitforge.llm.budget import Budget  # noqa: E402
from traitforge.llm.ledger import Ledger  # noqa: E402
from traitforge.llm.providers import COMMON_OPTIONS, PROVIDERS  # noqa: E402
from traitforge.llm.registry import make_backend, make_llm  # noqa: E402
from traitforge.runstore import RunStore  # noqa: E402

LLM_DIR = Path(__file__).resolve().parents[1] / "src" / "traitforge" / "llm"
FORBIDDEN = ("traitforge.runstore", "traitforge.config", "traitforge.pipeline", "traitforge.generate",
             "traitforge.curate", "traitforge.evaluate", "traitforge.train", "traitforge.report",
             "traitforge.steps", "traitforge.runcontext", "traitforge.rundir", "traitforge.shared",
             "traitforge.cli")


# --- the import graph ----------------------------------------------------------------------------


def module_name(path: Path, root: Path) -> tuple[str, bool]:
    """("traitforge.llm.x.y", is_package) for a file under root (= src/traitforge/llm)."""
    rel = path.relative_to(root.parent.parent).with_suffix("")
    parts = list(rel.parts)
    is_pkg = parts[-1] == "__init__"
    if is_pkg:
        parts = parts[:-1]
    return ".".join(parts), is_pkg


def parse(source: str) -> ast.AST:
    """ast.parse, once more on a fresh thread if CPython 3.11.7 raises its spurious "AST constructor
    recursion depth mismatch" (gh-106905, fixed in 3.11.8): it depends on the caller's stack depth,
    which a long test session can leave where the check misfires."""
    try:
        return ast.parse(source)
    except SystemError:
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(ast.parse, source).result()


def imports_of(source: str, module: str, is_pkg: bool, strings: bool = True) -> list[tuple[int, str]]:
    """(line, absolute module) of every import anywhere in the source (module level, in functions,
    under `if TYPE_CHECKING:`), relative ones resolved; `from a import b` counts both a and a.b.
    Module paths given as strings ("pkg.mod:Class", importlib.import_module("pkg.mod")) count too
    (strings=False: they do not; a logger's name is not an import)."""
    package = module if is_pkg else module.rpartition(".")[0]
    out: list[tuple[int, str]] = []
    for node in ast.walk(parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((node.lineno, target))
            out += [(node.lineno, f"{target}.{a.name}") for a in node.names if a.name != "*"]
        elif strings and isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and node.value.startswith("traitforge."):
            out.append((node.lineno, node.value.partition(":")[0]))
    return out


def forbidden_imports(root: Path) -> list[str]:
    bad = []
    for path in sorted(root.rglob("*.py")):
        module, is_pkg = module_name(path, root)
        for line, target in imports_of(path.read_text(encoding="utf-8"), module, is_pkg):
            if any(target == f or target.startswith(f + ".") for f in FORBIDDEN):
                bad.append(f"{path.relative_to(root.parent.parent)}:{line}: imports {target}")
    return bad


def test_no_module_under_llm_imports_a_run_module():
    files = list(LLM_DIR.rglob("*.py"))
    assert len(files) > 20  # the walk really reads the package (batch/ and providers/ included)
    assert forbidden_imports(LLM_DIR) == []


def test_the_import_walk_sees_every_kind_of_import(tmp_path):
    # The checker itself: an import in a function, under TYPE_CHECKING, relative from a subpackage,
    # `from traitforge import config`, and a module named in a string are all caught.
    root = tmp_path / "traitforge" / "llm"
    (root / "batch").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "batch" / "__init__.py").write_text("from . import x\n")
    (root / "batch" / "x.py").write_text(textwrap.dedent("""\
        from typing import TYPE_CHECKING
        from ..cache import LLMCache
        if TYPE_CHECKING:
            from traitforge.runstore import RunStore
        def f():
            from ...config import ModelSpec
            import traitforge.pipeline
            from traitforge import evaluate
        TABLE = {"x": "traitforge.curate.run:Thing"}
        """))
    bad = forbidden_imports(root)
    assert [b.split(": imports ")[1] for b in bad] == [
        "traitforge.runstore", "traitforge.runstore.RunStore", "traitforge.config", "traitforge.config.ModelSpec",
        "traitforge.pipeline", "traitforge.evaluate", "traitforge.curate.run"]
    assert bad[0].startswith("traitforge/llm/batch/x.py:4:")
    assert imports_of("from . import x\n", "traitforge.llm.batch", True) == [
        (1, "traitforge.llm.batch"), (1, "traitforge.llm.batch.x")]


def test_loading_a_spec_imports_no_sdk_and_no_backend_module(tmp_path):
    # The provider table says which options each provider takes without importing its backend.
    spec = tmp_path / "spec.yaml"
    spec.write_text("traits: t.md\nmodels:\n  generator: {model: openai:o3, reasoning_effort: low}\n"
                    "  judge: {model: anthropic:c, thinking_budget: 2048}\n"
                    "  auditor: {model: gemini:g, thinking_level: low}\n"
                    "  refiner: {model: local:smollm2-135m, batch_size: 4}\n")
    code = ("import sys; from traitforge.config import load_spec; load_spec(sys.argv[1]); "
            "print('\\n'.join(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code, str(spec)], capture_output=True, text=True, check=True)
    loaded = set(out.stdout.split())
    heavy = {m for m in loaded if m.split(".")[0] in ("openai", "anthropic", "torch", "transformers", "aiohttp")
             or m.startswith("google.genai") or m.startswith("traitforge.llm.providers.")
             or m.startswith("traitforge.llm.batch")}
    assert "traitforge.llm.spec" in loaded and heavy == set()


# --- one provider table --------------------------------------------------------------------------


def test_registry_and_batch_runner_read_the_one_table():
    assert registry.PROVIDERS is PROVIDERS and runner.PROVIDERS is PROVIDERS
    for name, row in PROVIDERS.items():
        assert row.backend_class().provider == name
        batch = row.batch_class()
        assert batch is None or batch.provider == name
    assert {n for n, r in PROVIDERS.items() if r.batch} == {"openai", "anthropic", "gemini"}
    # The batch runner picks a provider's batch API from that table, and none for local/scripted.
    with FakeBatchServer() as srv:
        for name, suffix in (("openai", "/v1"), ("anthropic", ""), ("gemini", "")):
            llm = make_llm(ModelSpec(model=f"{name}:m", base_url=srv.url + suffix))
            assert type(runner.batch_provider(llm)) is PROVIDERS[name].batch_class()
    assert runner.batch_provider(make_llm("scripted:x")) is None


def test_every_spec_option_belongs_to_the_table():
    # No option of ModelSpec is outside the table, so none can be silently ignored by a backend.
    declared = set(COMMON_OPTIONS).union(*(r.options for r in PROVIDERS.values()))
    assert set(ModelSpec.model_fields) - {"model"} == declared


VALUES: dict[str, Any] = {"base_url": "http://127.0.0.1:9", "api_key_env": "SOME_KEY", "batch_size": 4,
                          "reasoning_effort": "low", "thinking_budget": 2048, "thinking_level": "low",
                          "thinking_room": 1024}


@pytest.mark.parametrize("provider", ["openai", "gemini", "anthropic", "scripted"])
def test_each_option_a_provider_takes_reaches_its_backend(provider):
    row = PROVIDERS[provider]
    # thinking_budget is given with neither thinking_level nor reasoning_effort (one of them at a time)
    options = {k: VALUES[k] for k in row.options
               if not (k == "thinking_budget" and {"thinking_level", "reasoning_effort"} & set(row.options))}
    backend = make_backend(ModelSpec(model=f"{provider}:m", **options))
    assert type(backend) is row.backend_class()
    for name in options:
        if name in REASONING_OPTIONS:
            assert backend.options[name] == options[name]
    if "api_key_env" in options:
        assert backend.env_var == "SOME_KEY"
    if "base_url" in options:
        url = backend.servers[0].url if provider == "openai" else backend.base_url
        assert url == "http://127.0.0.1:9"


def test_local_takes_batch_size(tmp_path):
    (tmp_path / "config.json").write_text("{}")  # a checkpoint folder; nothing is loaded
    backend = make_backend(ModelSpec(model=f"local:{tmp_path}", batch_size=3))
    assert backend.batch_size == 3 and backend.options == {}


CASES = [(p, o) for p, row in PROVIDERS.items() for o in VALUES if o not in row.all_options]


@pytest.mark.parametrize("provider, option", CASES, ids=[f"{p}-{o}" for p, o in CASES])
def test_an_option_the_provider_does_not_take_is_one_error_naming_the_key(tmp_path, provider, option):
    path = tmp_path / "spec.yaml"
    path.write_text(f"traits: t.md\nmodels:\n  judge: {{model: {provider}:m, {option}: {json.dumps(VALUES[option])}}}\n")
    with pytest.raises(InputError) as e:
        load_spec(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: key 'models.judge.{option}': {option} is for ") and "\n" not in msg
    assert f"not {provider} ({provider} takes: {', '.join(PROVIDERS[provider].all_options)})" in msg
    takers = [p for p, r in PROVIDERS.items() if option in r.options]
    assert all(p in msg.split(" is for ")[1].split(" models")[0] for p in takers)


def test_the_examples_in_the_issue_are_errors_with_their_yaml_path(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("traits: t.md\nevaluation:\n  models:\n    served: {model: local:ck, base_url: http://gpu1:8000/v1}\n")
    with pytest.raises(InputError, match=r"key 'evaluation\.models\.served\.base_url': base_url is for openai, "
                                         r"gemini and anthropic models, not local \(local takes: .*batch_size\)"):
        load_spec(path)
    path.write_text("traits: t.md\nmodels:\n  judge: {model: gemini:g, base_url: [http://a, http://b]}\n")
    with pytest.raises(InputError, match=r"key 'models\.judge\.base_url': a list of base_url is for openai models; "
                                         r"gemini takes one URL"):
        load_spec(path)
    path.write_text("traits: t.md\nmodels:\n  judge: {model: nosuch:m}\n")
    with pytest.raises(InputError, match=r"key 'models\.judge\.model': .*unknown provider \"nosuch\": use one of "
                                         r"anthropic, gemini, local, openai, scripted"):
        load_spec(path)
    # What each provider does take still loads.
    path.write_text("traits: t.md\nmodels:\n  generator: {model: openai:m, base_url: [http://a, http://b], "
                    "reasoning_effort: low, concurrency: 4}\n  judge: {model: local:smollm2-135m, batch_size: 8}\n")
    spec = load_spec(path)
    assert spec.models.generator.base_url == ["http://a", "http://b"] and spec.models.judge.batch_size == 8


# --- the ledger ----------------------------------------------------------------------------------


class MemoryLedger:
    """A Ledger that is not a run: a dict, files under a folder, usage added up in the dict."""

    def __init__(self, root: Path):
        self.root = root
        self.manifest: dict[str, Any] = {"usage": {}}
        self.saves = 0

    def path(self, *parts: str) -> Path:
        p = self.root.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def save(self) -> None:
        self.saves += 1
        write_json_atomic(self.root / "state.json", self.manifest)

    def add_usage(self, stage: str, model: str, *, input_tokens: int, output_tokens: int, calls: int,
                  cached: int, cost_usd: float | None, **outcome_counts) -> None:
        u = self.manifest["usage"].setdefault(stage, {}).setdefault(model, {"calls": 0, "cost_usd": 0.0})
        u["calls"] += calls
        u["cost_usd"] += cost_usd or 0.0
        self.save()

    def total_cost(self) -> float:
        return sum(m["cost_usd"] for s in self.manifest["usage"].values() for m in s.values())


def test_run_store_and_a_plain_object_are_ledgers(tmp_path):
    assert isinstance(RunStore(tmp_path / "run"), Ledger)
    assert isinstance(MemoryLedger(tmp_path), Ledger)
    assert not isinstance(object(), Ledger)


def test_budget_and_batch_runner_work_on_a_ledger_that_is_not_a_run(tmp_path):
    ledger = MemoryLedger(tmp_path / "jobs")
    with FakeBatchServer() as srv:
        llm = make_llm(ModelSpec(model="openai:gpt-4o-mini", base_url=srv.url + "/v1"),
                       cache=tmp_path / "cache.sqlite")
        budget = Budget(5.0, store=ledger)
        llm.budget = budget
        reqs = [(f"question {i}", GenerateParams(max_tokens=16)) for i in range(3)]

        async def go():
            try:
                return await runner.BatchRunner(llm, ledger, "gen", poll_interval_s=0.02, quiet=True,
                                                budget=budget).run(reqs)
            finally:
                await llm.aclose()
        report = asyncio.run(go())
    assert report.succeeded == 3 and len(srv.created) == 1
    entry = ledger.manifest["batches"]["gen"][0]
    assert entry["collected"] and (ledger.root / entry["request"]["keys_file"]).is_file()
    assert ledger.manifest["usage"]["gen"]["openai:gpt-4o-mini"]["calls"] == 3
    spent = ledger.manifest["budget"]["spent_usd"]
    assert spent == pytest.approx(ledger.total_cost()) and spent > 0
    saved = json.loads((ledger.root / "state.json").read_text())
    assert saved["batches"]["gen"][0]["id"] == entry["id"]
    # A new Budget on the same ledger continues from what it spent.
    assert Budget(5.0, store=ledger).spent_usd == pytest.approx(spent)
