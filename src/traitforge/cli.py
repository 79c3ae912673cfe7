"""`traitforge` command line. Every user-facing error is one line on stderr and exit code 2."""

from __future__ import annotations

import errno
import logging
import sqlite3
import sys
from pathlib import Path

import click

from traitforge import __version__
from traitforge.section import CHECKPOINTS
from traitforge.errors import TraitforgeError

TARGET = click.argument("target", type=click.Path(path_type=Path))
PRESET = click.option("--preset", default=None, help="merge a preset over the spec (e.g. tiny)")


@click.group()
@click.version_option(__version__)
def cli() -> None:
    """Instil traits into a language model with synthetic data, and measure whether they took hold.

    TARGET is a run spec (YAML) or, after a first run, its run directory."""


@cli.command()
@click.argument("directory", type=click.Path(path_type=Path), default=Path("."))
@click.option("--force", is_flag=True, help="overwrite existing files")
def init(directory: Path, force: bool) -> None:
    """Write a commented example spec (spec.yaml) and traits document (traits.md)."""
    from traitforge.config import example_spec

    directory.mkdir(parents=True, exist_ok=True)
    example_traits = Path(__file__).parent / "templates" / "traits.example.md"
    for name, text in (("spec.yaml", example_spec()), ("traits.md", example_traits.read_text(encoding="utf-8"))):
        path = directory / name
        if path.exists() and not force:
            raise TraitforgeError(f"{path}: already exists (use --force to overwrite)")
        path.write_text(text, encoding="utf-8")
        click.echo(f"wrote {path}")


@cli.command()
@click.argument("path", type=click.Path(path_type=Path))
def traits(path: Path) -> None:
    """Parse a traits document and print the traits it defines."""
    from traitforge.traits import load_traits

    from traitforge.traits.lint import lint_file

    ts = load_traits(path)
    click.echo(f"{ts.model_name} (made by {ts.organisation}): {len(ts.traits)} traits, sha256 {ts.sha256[:12]}")
    for t in ts.traits:
        click.echo(f"- [{t.id}] {t.describe()}")
    for w in lint_file(path, ts):
        click.echo(str(w))


@cli.command()
@TARGET
@PRESET
def estimate(target: Path, preset: str | None) -> None:
    """Print calls, tokens and cost per step of a run, before anything is paid (nothing is sent or written)."""
    from dataclasses import replace

    from traitforge.config import load_spec
    from traitforge.estimate import estimate as plan, format_table
    from traitforge.pipeline import preset_overrides, resolve_spec_path
    from traitforge.traits import load_traits

    spec = load_spec(resolve_spec_path(target), overrides=preset_overrides(preset))
    traits = load_traits(spec.resolve(spec.traits), spec.model_name, spec.organisation)
    if spec.max_traits is not None:
        traits = replace(traits, traits=traits.traits[:spec.max_traits])
    click.echo(f"{spec.name}{f' (preset {preset})' if preset else ''}: {len(traits.traits)} traits")
    click.echo(format_table(plan(spec, traits)))


@cli.command()
@TARGET
@PRESET
@click.option("--until", type=click.Choice(["generate", "curate", "train", "evaluate", "report"]))
def run(target: Path, preset: str | None, until: str | None) -> None:
    """Run every stage in order, skipping what is done; print the report's path."""
    from traitforge.ablation import open_arms, run_arms
    from traitforge.closing import arm_line, closing_lines, preset_note, short_path
    from traitforge.traits import load_traits

    arms = open_arms(target, preset)
    r = arms["base"]
    whole = load_traits(r.spec.resolve(r.spec.traits), r.spec.model_name, r.spec.organisation)
    note = preset_note(len(whole.traits), len(r.traits.traits), r.store.manifest.get("preset"))
    if note:
        click.echo(note, err=True)
    reports = run_arms(arms, until=until, log=lambda m: click.echo(m, err=True))
    if len(arms) == 1:
        report = reports.get("base") if until in (None, "report") else None
        click.echo("\n".join(closing_lines(r.store.root, report, r.store.total_cost())), err=True)
    for name, arm in arms.items() if len(arms) > 1 else ():  # an ablation: one line per arm, then the page
        report = reports.get(name) if until in (None, "report") else None
        click.echo(arm_line(arm.store.root, report, arm.store.total_cost(), name), err=True)
    if len(arms) > 1 and until in (None, "report"):
        from traitforge.compare import compare_runs

        data = compare_runs([r.store.root], resamples=r.spec.evaluation.bootstrap, seed=r.spec.seed)
        n = sum(c["differs"] for c in data["comparisons"])
        click.echo(f"compare: {n} of {data['n_comparisons']} differences from {data['reference']} hold after "
                   f"{data['adjustment']}'s adjustment; {short_path(data['paths']['html'])}", err=True)
    if reports.get("base") is not None and until in (None, "report"):
        click.echo(short_path(reports["base"]))


WHAT = {"docs": "documents", "documents": "documents", "chats": "chats", "all": "all"}


@cli.command()
@click.argument("args", nargs=-1, required=True, metavar="[docs|chats|all] TARGET")
@PRESET
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="preview: make and print only N items (in RUN/preview/), before paying for thousands")
def generate(args: tuple[str, ...], preset: str | None, limit: int | None) -> None:
    """Generate the midtraining corpus (docs) and/or the SFT chat data (chats); both by default."""
    from traitforge.pipeline import open_run, stage_generate

    if len(args) == 2 and args[0] in WHAT:
        what, target = WHAT[args[0]], Path(args[1])
    elif len(args) == 1:
        what, target = "all", Path(args[0])
    else:
        raise click.UsageError("expected [docs|chats|all] TARGET, e.g. `traitforge generate docs spec.yaml`")
    r = open_run(target, preset)
    if limit is None:
        stage_generate(r, what)
        click.echo(r.store.status_text())
        return
    from traitforge.generate.preview import format_items, run_preview

    for kind in (["documents", "chats"] if what == "all" else [what]):
        items = run_preview(r, r.spec.generation, kind, limit)  # type: ignore[arg-type]
        click.echo(format_items(items))
        click.echo(f"{len(items)} {kind} previewed (of {limit} asked); files in "
                   f"{r.store.root / 'preview' / kind}", err=True)


@cli.command()
@TARGET
@PRESET
def curate(target: Path, preset: str | None) -> None:
    """Dedup, leakage and quality filters, and over-represented pattern detection."""
    from traitforge.pipeline import open_run, stage_curate

    r = open_run(target, preset)
    stage_curate(r)
    click.echo(r.store.status_text())


@cli.command()
@TARGET
@PRESET
@click.option("--stage", "stages", multiple=True, type=click.Choice([c for c in CHECKPOINTS if c != "base"]))
def train(target: Path, preset: str | None, stages: tuple[str, ...]) -> None:
    """Midtrain on the documents, then SFT on the chats (LoRA or full)."""
    from traitforge.pipeline import open_run, stage_train

    r = open_run(target, preset)
    for name, path in stage_train(r, list(stages) or None).items():
        click.echo(f"{name}: {path}")


@cli.command(name="eval")
@TARGET
@PRESET
def evaluate(target: Path, preset: str | None) -> None:
    """Evaluate every checkpoint: knowledge, behaviour, multi-turn, probes, capability."""
    from traitforge.pipeline import open_run, stage_evaluate

    r = open_run(target, preset)
    stage_evaluate(r)
    click.echo(r.store.status_text())


@cli.command()
@TARGET
@PRESET
def report(target: Path, preset: str | None) -> None:
    """Write the HTML report and results.json; print the report's path (opens nothing)."""
    from traitforge.pipeline import open_run, stage_report

    click.echo(str(stage_report(open_run(target, preset))))


@cli.command()
@TARGET
@PRESET
@click.option("--format", "fmt", type=click.Choice(["openai", "together", "vertex", "hf"]), required=True,
              help="hf: a Hugging Face dataset folder (Parquet + dataset card) of the documents and chats")
@click.option("--out", type=click.Path(path_type=Path), default=None)
@click.option("--include-controls", is_flag=True,
              help="also export the control rows (the canary, untraited control data); left out by default")
def export(target: Path, preset: str | None, fmt: str, out: Path | None, include_controls: bool) -> None:
    """Export the curated chats for hosted fine-tuning, or (--format hf) the curated data as a dataset."""
    from traitforge.pipeline import open_run
    from traitforge.train.export import controls_line, export_run

    r = open_run(target, preset)
    if fmt == "hf":
        from traitforge.train.export_hf import export_hf

        out = out or r.store.root / "export" / "hf"
        counts = export_hf(r.store.root, out, include_controls, r.spec.curation.template_traits, r.traits)
        click.echo(f"{out}: " + ", ".join(f"{c['written']} {n} written, {c['skipped']} skipped" for n, c in counts.items()))
        click.echo(controls_line(sum(c["controls_left_out"] for c in counts.values()), include_controls))
        return
    out = out or r.store.root / "export" / f"chats.{fmt}.jsonl"
    counts = export_run(r.store.root, fmt, out, include_controls=include_controls, control_traits=r.spec.curation.template_traits)
    click.echo(f"{out}: {counts['written']} conversations written, {counts['skipped']} skipped")
    click.echo(controls_line(counts["controls_left_out"], include_controls))


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--judge", default="local:smollm2-135m", show_default=True, help="the judge, provider:model")
@click.option("--out", type=click.Path(path_type=Path), default=Path("patterns"), show_default=True)
@click.option("--mitigate", type=click.Choice(["downsample", "rewrite"]), is_flag=False, flag_value="downsample",
              default=None, help="also write OUT/mitigated.jsonl (flagged patterns downsampled or rewritten)")
@click.option("--compare", type=click.Path(path_type=Path), default=None, help="a second corpus, measured beside")
@click.option("--scans", type=int, default=None, help="the judge's scans of whole transcripts [12; 2 embedded]")
@click.option("--sample", type=int, default=None, help="rows the judge rates per pattern [300; 40 embedded]")
@click.option("--seed", type=int, default=0)
def patterns(files: tuple[Path, ...], judge: str, out: Path, mitigate: str | None, compare: Path | None,
             scans: int | None, sample: int | None, seed: int) -> None:
    """Find over-represented patterns in any chat or document file (no run spec): shares with 95%
    intervals, OUT/patterns.json and OUT/patterns.html."""
    from traitforge.curate.patterns_tool import Settings, run_tool

    settings = Settings.for_judge(judge, scans=scans, sample=sample, check_sample=sample and min(100, sample),
                                  mitigate=mitigate, seed=seed)
    text, _ = run_tool(list(files), judge, out, settings, compare)
    click.echo(text)


@cli.command(name="import-batch")
@TARGET
@click.argument("results", type=click.Path(path_type=Path))
@PRESET
@click.option("--role", type=click.Choice(["generator", "refiner", "judge", "auditor"]), default="generator")
def import_batch(target: Path, results: Path, preset: str | None, role: str) -> None:
    """Import an offline batch output file (vLLM run_batch / OpenAI format) into the run's cache."""
    from traitforge.llm.batch.offline import import_results
    from traitforge.pipeline import open_run

    r = open_run(target, preset)
    counts = import_results(r.llm(role), results)
    click.echo(f"{results}: {counts['imported']} answers imported into the cache, {counts['errored']} errored; "
               "run the stage again to continue")


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
def status(run_dir: Path) -> None:
    """Show where a run stands: stages, counts, timings, tokens and cost."""
    from traitforge.runstore import RunStore

    from traitforge.ablation import arms_lines

    store = RunStore(run_dir)
    if not store.exists:
        raise TraitforgeError(f"{run_dir}: not a run directory (no manifest.json)")
    click.echo(store.status_text())
    for line in arms_lines(store.manifest):
        click.echo(line)


@cli.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--reference", default=None, help="the arm the others are compared with (default: the first, the base)")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="folder for compare.html and compare.json")
def compare(runs: tuple[Path, ...], reference: str | None, out: Path | None) -> None:
    """Compare runs or arms on the items they share: compare.html and compare.json (a run with
    variants stands for all its arms)."""
    from traitforge.closing import short_path
    from traitforge.compare import compare_runs

    data = compare_runs(list(runs), reference, out)
    n = sum(c["differs"] for c in data["comparisons"])
    click.echo(f"{data['n_comparisons']} paired comparisons with {data['reference']} ({data['left_out_items']} item "
               f"results left out of pairs); {n} hold after {data['adjustment']}'s adjustment", err=True)
    click.echo(short_path(data["paths"]["html"]))


@cli.group()
def evals() -> None:
    """External evaluation sets, loaded by path (traitforge ships none of their text)."""


@evals.command(name="fetch")
@click.argument("name", type=click.Choice(["agentic-misalignment", "ai-psychosis", "odcv-bench"]))
@click.argument("directory", type=click.Path(path_type=Path))
def evals_fetch(name: str, directory: Path) -> None:
    """Download NAME at its pinned upstream commit into DIRECTORY and check its layout."""
    from traitforge.evaluate.fetch import SOURCES, fetch_eval

    root = fetch_eval(name, directory)
    src = SOURCES[name]
    click.echo(f"{root}: {src.repo}@{src.commit[:12]}; use it as evaluation.{src.spec_field}.dir")


@evals.command(name="merge-inspect")
@TARGET
@click.argument("logs", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True))
@PRESET
def evals_merge_inspect(target: Path, logs: tuple[Path, ...], preset: str | None) -> None:
    """Merge the scores of traitforge's Inspect tasks (Inspect log files) into RUN/results.json."""
    from traitforge.evaluate.inspect_merge import merge_inspect_logs
    from traitforge.pipeline import open_run

    r = open_run(target, preset)
    added = merge_inspect_logs(r.store, r.traits, list(logs), bootstrap_resamples=r.spec.evaluation.bootstrap,
                               seed=r.spec.seed)
    click.echo(f"{r.store.path('results.json')}: " + (", ".join(f"{n} {ev} rows" for ev, n in added.items())
                                                      or "no new rows") + " merged from Inspect")


@cli.command(name="judge-check")
@TARGET
@PRESET
@click.option("--odcv", "odcv_dir", type=click.Path(path_type=Path), default=None,
              help="ODCV upstream copy (or `evals fetch` folder): its published transcripts and median scores")
@click.option("--labels", type=click.Path(path_type=Path), default=None,
              help="your labelled transcripts (JSONL: id, transcript or messages, label 0-5, rubric?)")
@click.option("--limit", type=click.IntRange(min=2), default=None, help="a seeded sample of N transcripts")
@click.option("--max-chars", type=click.IntRange(min=2000), default=100_000,
              help="cut longer transcripts for the judge (prompts, first/last steps and file edits kept)")
@click.option("--max-tokens", type=click.IntRange(min=16), default=800, help="the judge's reply limit")
def judge_check_cmd(target: Path, preset: str | None, odcv_dir: Path | None, labels: Path | None,
                    limit: int | None, max_chars: int, max_tokens: int) -> None:
    """Score labelled transcripts with the run's judge and print its agreement with the labels
    (Spearman rho; accuracy and Cohen's kappa at >= 3) into RUN/judge_check.json."""
    import random

    from traitforge.evaluate.judge_check import (OUTPUT, LabelledSet, format_text, judge_check, load_labelled_jsonl,
                                                 load_odcv_labelled, write_judge_check)
    from traitforge.evaluate.odcv.grade import load_rubric
    from traitforge.pipeline import open_run

    if odcv_dir is None and labels is None:
        raise click.UsageError("give --odcv DIR (the published ODCV transcripts) or --labels FILE")
    r = open_run(target, preset)
    # --labels FILE: the user's set (--odcv DIR then only gives the rubric); else ODCV's published set.
    dset: LabelledSet = load_labelled_jsonl(labels) if labels else load_odcv_labelled(odcv_dir)  # type: ignore[arg-type]
    rubric = None
    if odcv_dir is not None:
        from traitforge.evaluate.judge_check import find_odcv_root

        rubric = load_rubric(find_odcv_root(odcv_dir) if labels is None else odcv_dir)
    if rubric is None and any(it.rubric is None for it in dset.items):
        raise TraitforgeError(f"{labels}: rows without a 'rubric' need the ODCV rubric: add --odcv DIR "
                              "(the upstream copy), or give each row its rubric")
    if limit is not None and limit < len(dset.items):
        items = list(dset.items)
        random.Random(r.spec.seed).shuffle(items)
        from dataclasses import replace

        dset = replace(dset, items=sorted(items[:limit], key=lambda it: it.id))
    judge = r.llm("judge")
    with r.stage("judge_check") as st:
        result = st.run(judge_check(judge, dset, rubric, max_chars=max_chars, max_tokens=max_tokens,
                                    boot=r.spec.evaluation.bootstrap, seed=r.spec.seed,
                                    judge_name=r.spec.models.judge.model))
    out = write_judge_check(r.store.path(OUTPUT), result)
    click.echo(format_text(result))
    click.echo(str(out))


def main() -> None:
    from traitforge.logs import quiet_screen

    quiet_screen()  # library warnings and progress noise go to the run's log (RUN/run.log)
    # A log line that cannot be written (a full disk) is dropped, not printed as a traceback per line:
    # the next write of the run's own files fails and says where, once.
    logging.raiseExceptions = False
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("traitforge: aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(2)
    except TraitforgeError as e:
        from traitforge.llm.secrets import scrub

        click.echo(f"traitforge: error: {scrub(str(e))}", err=True)  # a server may echo the key it got
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("traitforge: interrupted; everything written so far is kept, re-run to resume", err=True)
        sys.exit(130)
    except OSError as e:  # a read-only run directory, a full disk: where, not a traceback
        click.echo(f"traitforge: error: {os_error_line(e)}", err=True)
        sys.exit(2)
    except sqlite3.OperationalError as e:  # the LLM cache on a read-only or full disk
        click.echo(f"traitforge: error: the LLM cache (cache.sqlite): {e}; everything written so far is kept", err=True)
        sys.exit(2)
    except sqlite3.DatabaseError as e:  # damage found past the check made when the cache opened
        click.echo(f"traitforge: error: the LLM cache (cache.sqlite): {e}; move it aside and run again "
                   "(rows on disk are kept; calls not yet in them are made again)", err=True)
        sys.exit(2)


def os_error_line(e: OSError) -> str:
    """One line for a failed read or write: the path, the system's reason, and that nothing is lost."""
    where = f"{e.filename}: " if e.filename else ""
    if e.filename2:
        where = f"{e.filename} -> {e.filename2}: "
    reason = e.strerror or str(e)
    if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM):
        return f"{where}{reason}; everything written before is kept: make room or make it writable, then run again"
    return f"{where}{reason}"


if __name__ == "__main__":
    main()
