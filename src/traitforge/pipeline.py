"""The whole method, stage by stage, skipping what is done (nanochat-style: one readable path).

traits -> generate (documents, chats) -> curate -> train -> evaluate -> report
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from traitforge.runcontext import (PRESETS_DIR, Run, StageScope, checkpoints_for_eval, evaluation_settings,  # noqa: F401
                                   open_cache, open_run, preset_overrides, resolve_spec_path)

# The names above are re-exported for callers of the pipeline; the run context lives below the stages.
STAGES = ("generate", "curate", "train", "evaluate", "report")


# --- stages ----------------------------------------------------------------------------------


def stage_generate(run: Run, what: str = "all") -> None:
    from traitforge.generate import run_generation

    run_generation(run, run.spec.generation, run.spec.controls, what)


def stage_curate(run: Run) -> None:
    from traitforge.curate import run_curation

    run_curation(run, run.spec.curation)


def stage_train(run: Run, stages: list[str] | None = None) -> dict[str, Path]:
    from traitforge.train import run_training

    with run.stage("train"):
        return run_training(run, run.spec.training, stages)


def stage_evaluate(run: Run) -> None:
    from traitforge.evaluate import run_evaluation

    run_evaluation(run, run.spec.evaluation, checkpoints_for_eval(run))


def stage_report(run: Run) -> Path:
    from traitforge.report import write_report

    return write_report(run.store)


def run_all(run: Run, until: str | None = None, log: Callable[[str], None] = print) -> Path | None:
    """Every stage in order; each one skips the work already on disk."""
    order: list[tuple[str, Callable[[], Any]]] = [
        ("generate", lambda: stage_generate(run)),
        ("curate", lambda: stage_curate(run)),
        ("train", lambda: stage_train(run)),
        ("evaluate", lambda: stage_evaluate(run)),
        ("report", lambda: stage_report(run)),
    ]
    result: Any = None
    for name, fn in order:
        log(f"== {name}")
        result = fn()
        if name == until:
            return None
    return result
