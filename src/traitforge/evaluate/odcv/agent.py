"""The ODCV agent loop: one text protocol for every checkpoint, so a paired comparison is like for
like (no backend needs native tool calling).

Protocol (templates `odcv_agent_protocol`, `odcv_observation`, `odcv_nudge` in evaluate/prompts/,
overridable through a run's prompts_dir): the system turn is the scenario's system prompt followed
by the protocol text; the first user turn is the scenario's user prompt. Each model reply is read
for its first fenced ```bash (or sh/shell) block, which runs in the episode's sandbox; the exit
code, stdout and stderr (each cut to `output_chars`) come back as the next user turn. A line
`TASK_COMPLETE: <summary>` ends the episode (after the reply's command, if it has one). A reply with
neither gets the nudge, as upstream's loop nudges a reply with no tool call. The episode also ends
at `max_steps` model replies or `episode_timeout_s` of wall clock.

Every command, its output and exit code, the conversation, and the final files' diff against the
laid-out scenario go into the episode record (one row of eval/odcv.jsonl), with the judge-free
signal: did the agent modify a data file or a KPI script.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import Field

from traitforge import prompts
from traitforge.evaluate.settings import OdcvHarness
from traitforge.evaluate.odcv.diff import FileChange, kpi_scripts, modified, tree_diff
from traitforge.evaluate.odcv.layout import LaidOut, LayoutError, Scenario, lay_out, load_scenarios
from traitforge.llm.client import LLM
from traitforge.sandbox import Engine, Limits, SandboxUnavailable, copy_tree, make_engine, remove_tree
from traitforge.types import Record, stable_hash

BLOCK = re.compile(r"```(?:bash|sh|shell)?[ \t]*\n(.*?)```", re.DOTALL)
DONE = re.compile(r"^\s*\**TASK_COMPLETE\**\s*:?\s*(.*)$", re.MULTILINE)


class OdcvSettings(OdcvHarness):
    """evaluation.odcv's harness settings (evaluate/settings.py: OdcvHarness) and where the benchmark is."""

    dir: Path | None = None  # an ODCV-Bench checkout (traitforge evals fetch odcv-bench DIR)

    def limits(self) -> Limits:
        return Limits(memory_mb=self.memory_mb, processes=self.processes, file_size_mb=self.file_size_mb,
                      output_bytes=max(self.output_chars * 4, 10_000))


class Turn(Record):
    role: Literal["system", "user", "assistant"]
    content: str


class CommandRecord(Record):
    step: int
    command: str
    exit_code: int | None                       # None: killed at the time limit
    stdout: str
    stderr: str
    timed_out: bool = False
    seconds: float = 0.0


class OdcvEpisode(Record):
    """One agent run on one scenario: a row of eval/odcv.jsonl."""

    id: str
    scenario: str
    variant: Literal["mandated", "incentivized"]
    checkpoint: str
    engine: str
    ended: Literal["task_complete", "max_steps", "episode_timeout", "error"]
    summary: str | None = None                  # the TASK_COMPLETE line
    steps: int = 0                              # model replies
    messages: list[Turn] = Field(default_factory=list)
    commands: list[CommandRecord] = Field(default_factory=list)
    files: list[FileChange] = Field(default_factory=list)
    kpi_scripts: list[str] = Field(default_factory=list)
    modified_kpi: list[str] = Field(default_factory=list)   # judge-free signal
    modified_data: list[str] = Field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None

    @property
    def tampered(self) -> bool:
        return bool(self.modified_kpi or self.modified_data)


def parse_reply(text: str) -> tuple[str | None, str | None]:
    """(the command of the first bash block, the TASK_COMPLETE summary), each None when absent."""
    m = BLOCK.search(text)
    command = m.group(1).strip() if m and m.group(1).strip() else None
    d = DONE.search(BLOCK.sub("", text))
    return command, (d.group(1).strip() if d else None)


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n] + f"\n[... {len(text) - n} more characters cut]"


@dataclass
class Prepared:
    """A scenario laid out once; each episode works on its own copy."""

    scenario: Scenario
    laid: LaidOut


async def run_episode(llm: LLM, prepared: Prepared, settings: OdcvSettings, engine: Engine, work: Path,
                      checkpoint: str | None = None) -> OdcvEpisode:
    """One episode of `llm` on a laid-out scenario, in a fresh copy under `work` (removed after).
    A sandbox failure ends it with `ended="error"`; a model call's BackendError (a refusal, a dead
    backend) propagates, so no half episode is recorded as if the model had stopped."""
    sc, laid = prepared.scenario, prepared.laid
    name = checkpoint or llm.name
    start = time.monotonic()
    deadline = start + settings.episode_timeout_s
    system = prompts.render("odcv_agent_protocol", system_prompt=sc.system_prompt, workdir=laid.workdir)
    messages = [Turn(role="system", content=system), Turn(role="user", content=sc.user_prompt)]
    commands: list[CommandRecord] = []
    episode_dir = Path(tempfile.mkdtemp(prefix="episode-", dir=work))
    tree, scratch = episode_dir / "tree", episode_dir / "scratch"
    try:
        copy_tree(laid.root, tree)
        scratch.mkdir()
        ended, summary, error, steps = await _loop(llm, sc, laid, settings, engine, tree, scratch, deadline,
                                                   messages, commands)
        kpi = kpi_scripts(laid.root, sc.system_prompt + "\n" + sc.user_prompt)
        changes = tree_diff(laid.root, tree, kpi, settings.diff_chars)
    finally:
        remove_tree(episode_dir)
    return OdcvEpisode(
        id=stable_hash({"scenario": sc.id, "checkpoint": name}), scenario=sc.name, variant=sc.variant,  # type: ignore[arg-type]
        checkpoint=name, engine=engine.name, ended=ended, summary=summary, steps=steps,  # type: ignore[arg-type]
        messages=messages, commands=commands, files=changes, kpi_scripts=sorted(kpi),
        modified_kpi=modified(changes, "kpi"), modified_data=modified(changes, "data"),
        seconds=round(time.monotonic() - start, 3), error=error)


async def _loop(llm: LLM, sc: Scenario, laid: LaidOut, settings: OdcvSettings, engine: Engine, tree: Path,
                scratch: Path, deadline: float, messages: list[Turn], commands: list[CommandRecord]):
    """The turns of one episode; appends to `messages` and `commands`."""
    ended, summary, error, steps = "max_steps", None, None, 0
    session = None
    try:
        session = engine.open(tree, laid.workdir, laid.env, settings.limits(), scratch=scratch, tools=laid.tools)
        while steps < settings.max_steps:
            if time.monotonic() >= deadline:
                ended = "episode_timeout"
                break
            reply = await llm.generate_one([m.model_dump() for m in messages], max_tokens=settings.max_tokens,
                                           temperature=settings.temperature)
            steps += 1
            messages.append(Turn(role="assistant", content=reply))
            command, done = parse_reply(reply)
            if command is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    ended = "episode_timeout"
                    break
                r = await asyncio.to_thread(session.run, command, min(settings.command_timeout_s, left))
                rec = CommandRecord(step=steps, command=command, exit_code=r.exit_code,
                                    stdout=_cut(r.stdout, settings.output_chars),
                                    stderr=_cut(r.stderr, settings.output_chars), timed_out=r.timed_out,
                                    seconds=round(r.seconds, 3))
                commands.append(rec)
                code = "killed at the time limit" if r.timed_out else str(r.exit_code)
                messages.append(Turn(role="user", content=prompts.render(
                    "odcv_observation", exit_code=code, stdout=rec.stdout, stderr=rec.stderr)))
            if done is not None:
                ended, summary = "task_complete", done
                break
            if command is None:
                messages.append(Turn(role="user", content=prompts.render("odcv_nudge")))
    except (OSError, RuntimeError, SandboxUnavailable) as e:
        ended, error = "error", f"{type(e).__name__}: {e}"
    finally:
        if session is not None:
            session.close()
    return ended, summary, error, steps


@dataclass
class OdcvRun:
    episodes: list[OdcvEpisode] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)   # scenario id -> one-line reason


def prepare(settings: OdcvSettings, engine: Engine, work: Path) -> tuple[list[Prepared], dict[str, str]]:
    """Lay out the selected scenarios once under `work/laid`; refused ones (missing files, tools
    the sandbox lacks) come back with their one-line reason."""
    if settings.dir is None:
        raise LayoutError("evaluation.odcv.dir: not set (get one with: traitforge evals fetch odcv-bench DIR)")
    ready: list[Prepared] = []
    refused: dict[str, str] = {}
    for sc in load_scenarios(settings.dir, settings.variants, settings.scenarios):
        try:
            laid = lay_out(sc.dir, work / "laid" / sc.variant / sc.name)
        except LayoutError as e:
            refused[sc.id] = str(e)
            continue
        missing = engine.missing_tools(laid.tools)
        if missing:
            refused[sc.id] = (f"{sc.name}: the sandbox lacks {', '.join(missing)} (the Dockerfile installs it; "
                              f"apt-get install {' '.join(missing)})")
            continue
        ready.append(Prepared(sc, laid))
    return ready, refused


async def run_scenarios(llm: LLM, settings: OdcvSettings, work: Path, engine: Engine | None = None,
                        checkpoint: str | None = None) -> OdcvRun:
    """Every selected scenario, one episode each, for one model. Raises SandboxUnavailable (one
    line) when no engine works here: the eval is then skipped with that line."""
    engine = engine or make_engine(settings.engine)
    work.mkdir(parents=True, exist_ok=True)
    ready, refused = prepare(settings, engine, work)
    gate = asyncio.Semaphore(settings.concurrency)

    async def one(p: Prepared) -> OdcvEpisode:
        async with gate:
            return await run_episode(llm, p, settings, engine, work, checkpoint)

    episodes = await asyncio.gather(*(one(p) for p in ready))
    return OdcvRun(list(episodes), refused)
