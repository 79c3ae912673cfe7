"""The import layers, read from the source with `ast` (imports inside functions and under
TYPE_CHECKING included): no cycle between files, and each file imports only its own layer or lower.

  commands     cli, pipeline (the order of stages), estimate (the whole run's cost)
  stages       generate, curate, train, evaluate, report: siblings, none imports another
  run context  runcontext (Run, StageScope, open_run, presets)
  shared       shared/: what two stages share (statistics, vectors, log-prob scoring, pattern
               rating, DPO pair records, the avoid-list, checkpoint identity)
  base         config, runstore, steps, types, prompts, ... and llm/ (which knows nothing of runs:
               test_llm_standalone.py)
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from test_llm_standalone import imports_of  # noqa: E402

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
    """(layer, stage name or "")."""
    top = module.split(".")[1] if "." in module else ""
    if top in STAGES:
        return "stage", top
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
            elif lay == dlay == "stage" and stage != dstage:
                bad.append(f"{mod}:{line}: stage {stage} imports stage {dstage} ({dep})")
    return bad


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
