"""The import layers, read from the source with `ast` (imports inside functions and under
TYPE_CHECKING included): no cycle between files, and each file imports only its own layer or lower.

  commands     cli, pipeline (the order of stages), estimate (the whole run's cost)
  stages       generate, curate, train, evaluate, report: siblings, none imports another
  run context  runcontext (Run, StageScope, open_run, presets)
  shared       shared/: what two stages share (statistics, vectors, log-prob scoring, pattern
               rating, DPO pair records, the avoid-list, checkpoint identity)
  base         config, runstore, steps, types, prompts, ... and llm/ (which knows nothing of runs:
               test_llm_standalone.py); and each stage's settings module (generate/settings.py,
               curate/settings.py, ...): in the stage's folder but base layer, importing only base
               modules and never another stage's settings; config composes them into RunSpec

A stage package's `__init__` is light: its entry points load on first use (PEP 562 `__getattr__`,
traitforge/lazy.py), so importing a stage's settings module, and so `traitforge.config`, runs none of
the stage's code.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from test_llm_standalone import imports_of, parse  # noqa: E402

SRC = Path(__file__).resolve().parents[1] / "src" / "traitforge"
STAGES = ("generate", "curate", "train", "evaluate", "report")
COMMANDS = ("cli", "pipeline", "estimate", "__main__", "ablation", "compare")
LAYERS = {"base": 0, "shared": 1, "runcontext": 2, "stage": 3, "commands": 4}


def module_of(path: Path, root: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    is_pkg = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_pkg else parts), is_pkg


def graph(root: Path) -> dict[str, dict[str, int]]:
    """module -> {module of this package it imports: first line}; `from a.b import c` is a.b.c when
    that is a module (a package's own modules importing their siblings through it is no cycle),
    else a.b."""
    files = {module_of(p, root)[0]: p for p in sorted(root.rglob("*.py"))}
    out: dict[str, dict[str, int]] = {}
    for mod, path in files.items():
        _, is_pkg = module_of(path, root)
        deps: dict[str, int] = {}
        found = imports_of(path.read_text(encoding="utf-8"), mod, is_pkg, strings=False)
        for line, target in found:
            if any(ln == line and t.startswith(target + ".") and t in files for ln, t in found):
                continue  # `from target import module`: the module, not the package
            while target and target not in files:
                target = target.rpartition(".")[0]
            if target and target != mod:
                deps.setdefault(target, line)
        out[mod] = deps
    return out


def layer(module: str) -> tuple[str, str]:
    """(layer, stage name or ""); a stage's settings module is base layer, still named by its stage."""
    top = module.split(".")[1] if "." in module else ""
    if top in STAGES:
        return ("base" if module == f"traitforge.{top}.settings" else "stage"), top
    if top in COMMANDS:
        return "commands", ""
    if top in ("shared", "runcontext"):
        return top, ""
    return "base", ""


def layer_breaks(g: dict[str, dict[str, int]]) -> list[str]:
    bad = []
    for mod, deps in g.items():
        (lay, stage) = layer(mod)
        for dep, line in deps.items():
            dlay, dstage = layer(dep)
            if LAYERS[dlay] > LAYERS[lay]:
                bad.append(f"{mod}:{line}: {lay} imports {dep} ({dlay})")
            elif stage and dstage and stage != dstage:  # stage code or settings, either side
                bad.append(f"{mod}:{line}: stage {stage} imports stage {dstage} ({dep})")
    return bad


def heavy_inits(root: Path) -> list[str]:
    """Imports a stage package's `__init__` runs when it is imported: any but `__future__`, `typing`,
    `traitforge.lazy` (its PEP 562 `__getattr__`: the entry points, loaded on first use) and the
    package's own settings module, outside `if TYPE_CHECKING:` and a `def __getattr__`. An import in
    any other function is flagged too: the stage's code belongs in its modules, not in the `__init__`."""
    bad = []
    for stage in STAGES:
        path = root / stage / "__init__.py"
        if not path.is_file():
            continue
        light = ("__future__", "typing", "traitforge.lazy", f"traitforge.{stage}.settings")

        def walk(nodes: list[ast.stmt]) -> None:
            for node in nodes:
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                        from_names(node, f"traitforge.{stage}")
                    bad.extend(f"traitforge.{stage}:{node.lineno}: imports {n} when imported" for n in names
                               if n not in light)
                elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    if node.name != "__getattr__":
                        bad.extend(f"traitforge.{stage}:{n.lineno}: imports in {node.name}(); only __getattr__ may"
                                   for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom)))
                elif isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
                    walk(node.orelse)
                else:
                    for field in ("body", "orelse", "finalbody", "handlers"):
                        walk([n for n in getattr(node, field, []) if isinstance(n, ast.AST)])

        walk(parse(path.read_text(encoding="utf-8")).body)  # type: ignore[attr-defined]
    return bad


def from_names(node: ast.ImportFrom, package: str) -> list[str]:
    """What `from M import a, b` in `package`'s `__init__` imports: M, or M.a and M.b where M is the
    package itself (its submodules)."""
    module = node.module or ""
    if node.level:  # relative: from the package itself (level 1) or above it
        module = ".".join(package.split(".")[:len(package.split(".")) + 1 - node.level] + [module]).strip(".")
    return [f"{module}.{a.name}" for a in node.names] if module == package else [module]


def loaded_by(module: str, src: Path) -> list[str]:
    """The traitforge modules a fresh interpreter holds after `import <module>` from `src`."""
    code = f"import sys, {module}; print('\\n'.join(m for m in sys.modules if m.startswith('traitforge')))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return sorted(out.stdout.split())


def stage_code(modules: list[str]) -> list[str]:
    """Those of `modules` above the base layer, but for the stage packages themselves (light inits)."""
    return [m for m in modules if layer(m)[0] != "base" and m != f"traitforge.{layer(m)[1]}"]


def cycles(g: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components of more than one file (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    for start in g:
        if start in index:
            continue
        work = [(start, iter(g[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(g.get(w, {}))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_no_cycle_between_files():
    g = graph(SRC)
    assert len(g) > 100 and "traitforge.runcontext" in g["traitforge.pipeline"]
    assert cycles(g) == []


def test_each_file_imports_only_its_layer_or_lower():
    g = graph(SRC)
    assert {layer(m)[1] for m in g} >= set(STAGES)
    assert layer_breaks(g) == []


def test_the_run_context_is_below_the_stages_and_every_stage_takes_it_from_there():
    g = graph(SRC)
    assert not any(layer(d)[0] in ("stage", "commands") for d in g["traitforge.runcontext"])
    for stage in ("generate", "curate", "train", "evaluate"):
        users = [m for m, deps in g.items() if layer(m) == ("stage", stage) and "traitforge.runcontext" in deps]
        assert users, stage


def test_the_checks_catch_a_cycle_a_sibling_stage_and_a_type_checking_import(tmp_path):
    root = tmp_path / "traitforge"
    for d in ("curate", "evaluate", "shared"):
        (root / d).mkdir(parents=True)
        (root / d / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "pipeline.py").write_text("")
    (root / "config.py").write_text("import logging\nlog = logging.getLogger('traitforge.pipeline')\n")
    (root / "curate" / "a.py").write_text(textwrap.dedent("""\
        from typing import TYPE_CHECKING
        if TYPE_CHECKING:
            from traitforge.pipeline import Run
        def f():
            from traitforge.evaluate.b import g
        """))
    (root / "evaluate" / "b.py").write_text("from ..curate import a\n")
    (root / "shared" / "c.py").write_text("from traitforge.shared import d\n")
    (root / "shared" / "d.py").write_text("import traitforge.shared.c\nfrom traitforge.config import x\n")
    g = graph(root)
    assert g["traitforge.config"] == {}  # a logger's name is not an import
    assert sorted(cycles(g)) == [["traitforge.curate.a", "traitforge.evaluate.b"],
                                 ["traitforge.shared.c", "traitforge.shared.d"]]
    assert sorted(layer_breaks(g)) == [
        "traitforge.curate.a:3: stage imports traitforge.pipeline (commands)",
        "traitforge.curate.a:5: stage curate imports stage evaluate (traitforge.evaluate.b)",
        "traitforge.evaluate.b:1: stage evaluate imports stage curate (traitforge.curate.a)"]


def test_stage_settings_beside_their_stage_import_only_the_base():
    g = graph(SRC)
    for stage in ("generate", "curate", "train", "evaluate"):
        mod = f"traitforge.{stage}.settings"
        assert layer(mod) == ("base", stage) and mod in g["traitforge.config"], mod
        assert all(layer(d)[0] == "base" and layer(d)[1] in ("", stage) for d in g[mod]), (mod, g[mod])
    # config reads a stage's settings and nothing else of it
    assert [d for d in g["traitforge.config"] if layer(d)[1]] == sorted(
        d for d in g["traitforge.config"] if d.endswith(".settings"))


def test_stage_packages_are_light():
    assert heavy_inits(SRC) == []


def test_importing_the_config_runs_no_stage_code():
    loaded = loaded_by("traitforge.config", SRC.parent)
    assert "traitforge.config" in loaded and "traitforge.evaluate.settings" in loaded
    assert stage_code(loaded) == []


def test_the_checks_catch_settings_that_reach_a_stage_and_a_heavy_init(tmp_path):
    root = tmp_path / "traitforge"
    for d in ("curate", "train", "evaluate", "shared"):
        (root / d).mkdir(parents=True)
        (root / d / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "section.py").write_text("")
    (root / "config.py").write_text("from traitforge.curate.settings import C\nfrom traitforge.train import run\n")
    (root / "curate" / "settings.py").write_text("from traitforge.section import S\nfrom traitforge.train.settings import T\n")
    (root / "curate" / "x.py").write_text("from traitforge.curate.settings import C\nfrom traitforge.evaluate.settings import E\n")
    (root / "train" / "settings.py").write_text("from traitforge.train import common\n")
    (root / "train" / "common.py").write_text("")
    (root / "train" / "run.py").write_text("")
    (root / "evaluate" / "settings.py").write_text("")
    (root / "shared" / "y.py").write_text("from traitforge.evaluate.settings import E\n")
    (root / "curate" / "__init__.py").write_text(textwrap.dedent("""\
        from __future__ import annotations
        from typing import TYPE_CHECKING
        from traitforge.lazy import entry_points
        from traitforge.curate.settings import C
        if TYPE_CHECKING:
            from traitforge.curate.x import f
        try:
            from traitforge.curate import x
        except ImportError:
            from . import run
        def __getattr__(name):
            from traitforge.curate import x
        def run_curation():
            from traitforge.curate.x import f
        """))
    (root / "train" / "__init__.py").write_text("import torch\n")
    g = graph(root)
    assert sorted(layer_breaks(g)) == [
        "traitforge.config:2: base imports traitforge.train.run (stage)",
        "traitforge.curate.settings:2: stage curate imports stage train (traitforge.train.settings)",
        "traitforge.curate.x:2: stage curate imports stage evaluate (traitforge.evaluate.settings)",
        "traitforge.train.settings:1: base imports traitforge.train.common (stage)"]
    assert heavy_inits(root) == [
        "traitforge.curate:8: imports traitforge.curate.x when imported",
        "traitforge.curate:10: imports traitforge.curate.run when imported",
        "traitforge.curate:14: imports in run_curation(); only __getattr__ may",
        "traitforge.train:1: imports torch when imported"]
    # the subprocess check sees a stage module that config pulls in through a package's __init__
    (root / "config.py").write_text("import traitforge.curate.settings\n")
    (root / "curate" / "settings.py").write_text("")
    (root / "curate" / "__init__.py").write_text("from traitforge.curate import x\n")
    (root / "curate" / "x.py").write_text("")
    loaded = loaded_by("traitforge.config", tmp_path)
    assert "traitforge.curate.settings" in loaded and stage_code(loaded) == ["traitforge.curate.x"]
