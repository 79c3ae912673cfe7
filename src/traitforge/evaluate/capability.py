"""Did training cost general ability? Perplexity on a held-out generic text, per window so it gets
a bootstrap interval; and, when lm-evaluation-harness is installed and tasks are named, those tasks
(skipped cleanly otherwise).

The default text is Python's documentation topics (`pydoc_data.topics`, shipped with CPython under
the PSF licence: ~465k characters, ~113k tokens for the embedded tokenizer), so no file is needed
and nothing is downloaded. It is held out from the run's training data, not necessarily from the
base model's pretraining (the docs are on the web): what the eval reads is the change from base.
`evaluation.capability_max_tokens` scores only its first N tokens (the tiny preset: ~10k); every
row records the tokens it scored and the text it came from."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import platform

from traitforge.errors import InputError
from traitforge.evaluate.common import EvalContext, ItemResult, eval_path, result_id
from traitforge.steps import done_keys
from traitforge.jsonl import append_jsonl

log = logging.getLogger("traitforge.evaluate")


def default_capability_text() -> tuple[str, str]:
    """(text, source): every pydoc topic, in name order, so the text and a token slice of it are
    the same on every run with the same Python minor version (the topics change between versions)."""
    try:
        from pydoc_data.topics import topics
    except ImportError:  # some distributions split pydoc_data out of the standard library
        raise InputError("evaluation.capability_text: this Python has no pydoc_data (the default perplexity "
                         "text); name a UTF-8 text file in evaluation.capability_text") from None
    version = ".".join(platform.python_version_tuple()[:2])
    return "\n\n".join(topics[k].strip() for k in sorted(topics)), f"pydoc_data.topics (Python {version})"


def capability_text(ctx: EvalContext) -> tuple[str, str]:
    """(text, source) for perplexity: evaluation.capability_text, else Python's documentation topics."""
    if not ctx.ev.capability_text:
        return default_capability_text()
    path = ctx.run.resolve(ctx.ev.capability_text)
    if not path.is_file():
        raise InputError(f"evaluation.capability_text: {path} not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"evaluation.capability_text: {path} is not UTF-8 text") from None
    if not text.strip():
        raise InputError(f"evaluation.capability_text: {path} is empty")
    return text, str(path)


async def run_perplexity(ctx: EvalContext) -> None:
    path = eval_path(ctx.store, "capability")
    done = done_keys(path)
    text, source = capability_text(ctx)
    for ck in ctx.logprob_checkpoints():
        if result_id("perplexity", ck, "w0") in done:
            continue
        chunks = await asyncio.to_thread(ctx.scorer(ck).text_nll, text, ctx.ev.capability_window,
                                         ctx.ev.capability_max_tokens)
        append_jsonl(path, [ItemResult(id=result_id("perplexity", ck, f"w{i}"), eval="perplexity", checkpoint=ck,
                                       item_id=f"w{i}", value=nll, detail={"tokens": n, "text": source})
                            for i, (nll, n) in enumerate(chunks)])
        log.info("perplexity %s: %d tokens of %s in %d windows", ck, sum(n for _, n in chunks), source, len(chunks))


def lm_eval_installed() -> bool:
    return importlib.util.find_spec("lm_eval") is not None


def run_lm_eval(ctx: EvalContext) -> list[str]:
    """lm-evaluation-harness tasks per checkpoint; returns notes on what was skipped and why."""
    tasks = ctx.ev.lm_eval_tasks
    if not tasks:
        return []
    if not lm_eval_installed():
        return [f"lm-evaluation-harness not installed: skipped tasks {', '.join(tasks)}"]
    import lm_eval  # type: ignore[import-not-found]

    path = eval_path(ctx.store, "lm_eval")
    done = done_keys(path)
    notes = []
    for ck in ctx.logprob_checkpoints():
        where = ctx.weights(ck)
        if all(result_id(f"lm_eval:{t}", ck, "all") in done for t in tasks):
            continue
        from traitforge.llm.embedded import resolve_model_path

        try:
            out = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={resolve_model_path(where)}",
                                          tasks=list(tasks), limit=ctx.ev.lm_eval_limit)
        except Exception as e:  # noqa: BLE001 - an optional extra must not end the evaluation
            notes.append(f"lm-evaluation-harness failed on {ck}: {type(e).__name__}: {e}"[:300])
            continue
        rows = []
        for task, res in (out or {}).get("results", {}).items():
            acc = next((v for k, v in res.items() if k.startswith("acc") and "stderr" not in k), None)
            if isinstance(acc, (int, float)):
                # Questions scored, as the harness reports them; 0 = unknown (then no interval).
                n = int((out.get("n-samples", {}).get(task) or {}).get("effective") or 0)
                rows.append(ItemResult(id=result_id(f"lm_eval:{task}", ck, "all"), eval=f"lm_eval:{task}",
                                       checkpoint=ck, item_id="all", value=float(acc), detail={"n": n}))
        append_jsonl(path, rows)
    return notes
