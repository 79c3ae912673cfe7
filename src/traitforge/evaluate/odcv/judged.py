"""ODCV on the evaluation's schedule: `respond` runs each checkpoint's episodes in the sandbox (one
unit per checkpoint and scenario; the model's calls are cached like every eval's), `grade` has the
run's judge score each episode's transcript with the upstream rubric, blind to the checkpoint (the
transcript never names it). The row (RUN/eval/odcv.jsonl) carries the episode: every command with
its output and exit code, the final files' diff against the laid-out scenario, and the judge-free
signal (the data files and KPI scripts it modified)."""

from __future__ import annotations

import atexit
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from traitforge.evaluate.settings import OdcvSpec
from traitforge.evaluate.common import EvalContext, ItemResult, JudgedEval, result_id
from traitforge.evaluate.odcv.agent import OdcvEpisode, OdcvSettings, Prepared, prepare, run_episode
from traitforge.evaluate.odcv.grade import EVAL, Grade, OdcvGrading, grade_episode, load_rubric, odcv_result
from traitforge.sandbox import Engine, make_engine, remove_tree
from traitforge.steps import Unit

log = logging.getLogger(__name__)


def settings_of(spec: OdcvSpec, root: Path) -> tuple[OdcvSettings, OdcvGrading]:
    """The section split into the harness's settings and the grading's (`root`: the resolved dir)."""
    d = spec.model_dump()
    harness = OdcvSettings(**{k: v for k, v in d.items() if k in OdcvSettings.model_fields and k != "dir"}, dir=root)
    grading = OdcvGrading(**{k: v for k, v in d.items() if k in OdcvGrading.model_fields and k != "dir"},
                          dir=str(root))
    return harness, grading


@dataclass
class _Laid:
    """The scenarios laid out once per process (every checkpoint's episodes copy from them)."""

    engine: Engine
    ready: list[Prepared]
    refused: dict[str, str]
    work: Path
    episodes: dict[str, OdcvEpisode] = field(default_factory=dict)  # result id -> episode (respond -> grade)


_LAID: dict[str, _Laid] = {}


def laid_out(ctx: EvalContext) -> _Laid:
    """The engine (raises SandboxUnavailable, one line) and the laid-out scenarios, for this run."""
    spec = ctx.ev.odcv
    harness, _ = settings_of(spec, ctx.run.resolve(spec.dir))
    key = f"{ctx.store.root}|{spec.model_dump_json()}"
    if key not in _LAID:
        engine = make_engine(harness.engine)
        work = Path(tempfile.mkdtemp(prefix="traitforge-odcv-"))
        atexit.register(remove_tree, work)  # the laid-out trees (each episode removes its own copy)
        ready, refused = prepare(harness, engine, work)
        for why in refused.values():
            log.warning("ODCV: scenario refused: %s", why)
        _LAID[key] = _Laid(engine, ready, refused, work)
    return _LAID[key]


def _item(p: Prepared) -> str:
    return f"{p.scenario.variant}/{p.scenario.name}"


async def odcv_eval(ctx: EvalContext) -> JudgedEval:
    spec = ctx.ev.odcv
    root = ctx.run.resolve(spec.dir)
    harness, grading = settings_of(spec, root)
    laid = laid_out(ctx)
    rubric = load_rubric(root)

    async def respond(u: Unit) -> OdcvEpisode:
        ck, p = u.data
        ep = laid.episodes.get(u.key)
        if ep is None:  # the grading pass of a by_eval schedule (or a resumed run): replayed from the cache
            ep = await run_episode(ctx.target(ck), p, harness, laid.engine, laid.work, checkpoint=ck)
            laid.episodes[u.key] = ep
        return ep

    async def grade(u: Unit, ep: OdcvEpisode) -> ItemResult:
        ck, p = u.data
        laid.episodes.pop(u.key, None)  # graded: a later evaluation runs it afresh (from the cache)
        detail: dict[str, Any] = {
            "files_changed": sorted(ep.modified_kpi + ep.modified_data), "modified_kpi": ep.modified_kpi,
            "modified_data": ep.modified_data, "kpi_scripts": ep.kpi_scripts, "ended": ep.ended,
            "summary": ep.summary, "steps": ep.steps, "engine": ep.engine, "seconds": ep.seconds,
            "commands": [c.model_dump() for c in ep.commands], "files": [f.model_dump() for f in ep.files],
            "messages": [m.model_dump() for m in ep.messages], "graded_by": ctx.judge.name}
        if ep.ended == "error":  # the sandbox failed, not the model: nothing to grade
            return odcv_result(ck, p.scenario.variant, p.scenario.name, Grade(None, f"sandbox error: {ep.error}"),
                               **detail)
        return await grade_episode(ctx.judge, rubric, grading, ck, p.scenario.variant, p.scenario.name,
                                   [m.model_dump() for m in ep.messages], **detail)

    units = [Unit(result_id(EVAL, ck, _item(p)), "", (ck, p)) for ck in ctx.checkpoints for p in laid.ready]
    return JudgedEval(ctx, EVAL, units, respond, grade, "ODCV")


def odcv_judge_calls(ctx: EvalContext) -> int:
    """The most judge calls ODCV makes: one grade per episode (a checkpoint and a scenario laid out)."""
    from traitforge.evaluate.odcv.layout import load_scenarios

    spec = ctx.ev.odcv
    harness, _ = settings_of(spec, ctx.run.resolve(spec.dir))
    return len(ctx.checkpoints) * len(load_scenarios(harness.dir, harness.variants, harness.scenarios))
