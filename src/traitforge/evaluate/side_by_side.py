"""Side-by-side capability: did training cost general helpfulness? Each checkpoint and the reference
checkpoint (base by default) answer the same held-out everyday prompts; the judge compares the two
answers blind (it never learns which model wrote which) in both orders, A/B and B/A, so a judge that
prefers a position cancels out.

Per prompt, each order gives the checkpoint win (+1), tie (0) or loss (-1); the prompt's outcome is
the sign of the sum: two agreeing verdicts stand, a win and a tie is a win, and a win in one order
with a loss in the other (the judge followed the position) is a tie. The win rate counts a tie as
half, with a seeded bootstrap interval over prompts: 50% means unchanged from the reference. A
refused, empty or unreadable verdict in either order leaves the prompt unscored with the reason.
With `verdict: logprob` (a local judge too small to reason and keep the format) the judge's
log-probabilities of the lines "VERDICT: A" and "VERDICT: B" are read in both orders instead, and the
prompt's outcome is the sign of its log-odds for the checkpoint's answer summed over the two orders
(`debiased_margin`), so a lean towards a position cancels within the prompt.

Prompts (`SideBySideSpec.prompts`): "default", the package's own everyday prompts
(data/everyday_prompts.txt: written for traitforge, never trained on); "generic_heldout", the
generic-prompts step's held-out share (RUN/generated/generic_heldout.jsonl); or a path to a .txt
file (one prompt per line, # comments) or a .jsonl file ({"prompt"} or {"text"}, optional "id").
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from traitforge import prompts as prompt_kit
from traitforge.evaluate.settings import SideBySideSpec
from traitforge.errors import InputError
from traitforge.evaluate.common import EvalContext, ItemResult, JudgedEval, result_id
from traitforge.shared.stats import EMPTY, bootstrap
from traitforge.llm.client import LLM
from traitforge.llm.errors import Refused
from traitforge.steps import Unit
from traitforge.types import stable_hash

if TYPE_CHECKING:
    from traitforge.runstore import RunStore

EVAL = "side_by_side"
DEFAULT_FILE = Path(__file__).with_name("data") / "everyday_prompts.txt"
HELDOUT_FILE = ("generated", "generic_heldout.jsonl")
MAX_DETAIL = 1500


@dataclass(frozen=True)
class Prompt:
    id: str
    text: str


def _from_txt(path: Path) -> list[str]:
    return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip() and not ln.startswith("#")]


def _from_jsonl(path: Path) -> list[tuple[str | None, str]]:
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}:{n}: not JSON ({e.msg})") from None
        text = row.get("prompt", row.get("text")) if isinstance(row, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"{path}:{n}: needs a non-empty 'prompt' (or 'text') string")
        out.append((str(row["id"]) if row.get("id") is not None else None, text.strip()))
    return out


def load_prompts(setting: str = "default", *, resolve: Callable[[str], Path | None] = Path,
                 run_dir: Path | None = None, n: int | None = None) -> tuple[list[Prompt], str]:
    """(prompts, where they came from). Ids are content hashes unless the file gives them, so the
    same prompt keeps its id (and its cached answers) when the list changes."""
    if setting == "default":
        path = DEFAULT_FILE
    elif setting == "generic_heldout":
        if run_dir is None or not (run_dir.joinpath(*HELDOUT_FILE)).is_file():
            raise InputError("evaluation.capability.side_by_side.prompts: generic_heldout needs the generic-prompts "
                             f"step's held-out share ({'/'.join(HELDOUT_FILE)} in the run directory); it is not there")
        path = run_dir.joinpath(*HELDOUT_FILE)
    else:
        path = resolve(setting) or Path(setting)
        if not path.is_file():
            raise InputError(f"evaluation.capability.side_by_side.prompts: {path} not found")
    try:
        rows = _from_jsonl(path) if path.suffix == ".jsonl" else [(None, t) for t in _from_txt(path)]
    except UnicodeDecodeError:
        raise InputError(f"evaluation.capability.side_by_side.prompts: {path} is not UTF-8 text") from None
    if not rows:
        raise InputError(f"evaluation.capability.side_by_side.prompts: {path} has no prompts")
    out = [Prompt(pid or "p" + stable_hash(text)[:10], text) for pid, text in rows]
    return out[:n] if n else out, "package everyday prompts" if path == DEFAULT_FILE else str(path)


# --- the verdicts ----------------------------------------------------------------------------

_VERDICT = re.compile(r"verdict\W{0,6}(a|b|tie)\b", re.I)
_LAST = re.compile(r"^\W*(?:answer\s+)?(a|b|tie)\W*$", re.I)
WIN, TIE, LOSS = 1, 0, -1
VALUE = {WIN: 1.0, TIE: 0.5, LOSS: 0.0}
OUTCOME = {WIN: "win", TIE: "tie", LOSS: "loss"}


def parse_verdict(text: str | None) -> tuple[str | None, str]:
    """("A" | "B" | "tie" | None, why unscored) from the judge's reply: the last "VERDICT: X" (after
    its reasoning), else JSON {"verdict": X}, else a last line that is only A, B or tie."""
    if text is None or not text.strip():
        return None, "empty judge reply"
    found = _VERDICT.findall(text)
    if not found:
        try:
            from traitforge.llm.structured import extract_json

            obj = extract_json(text)
            v = obj.get("verdict") if isinstance(obj, dict) else None
            found = [v] if isinstance(v, str) and v.strip().lower() in ("a", "b", "tie") else []
        except ValueError:
            pass
    if not found:
        last = text.strip().splitlines()[-1]
        m = _LAST.match(last)
        found = [m.group(1)] if m else []
    if not found:
        return None, "unparseable judge reply (no verdict): " + text.strip()[:200]
    v = found[-1].strip().lower()
    return ("tie" if v == "tie" else v.upper()), ""


def combine(first: str, second: str) -> int:
    """The checkpoint's outcome from two verdicts: `first` with the checkpoint's answer as A,
    `second` with it as B (rule: module docstring)."""
    a = {"A": WIN, "B": LOSS, "tie": TIE}[first]
    b = {"B": WIN, "A": LOSS, "tie": TIE}[second]
    s = a + b
    return WIN if s > 0 else LOSS if s < 0 else TIE


@dataclass(frozen=True)
class Comparison:
    outcome: int | None  # WIN / TIE / LOSS for the checkpoint; None: unscored
    reason: str
    verdicts: tuple[str | None, str | None]
    replies: tuple[str, str]
    margin: float | None = None  # verdict: logprob: the position-debiased log-odds for the checkpoint

    @property
    def value(self) -> float | None:
        return None if self.outcome is None else VALUE[self.outcome]


async def _verdict(judge: LLM, prompt: str, a: str, b: str, max_tokens: int) -> tuple[str | None, str, str]:
    try:
        reply = await judge.generate_one(prompt_kit.render("side_by_side_judge", prompt=prompt, answer_a=a,
                                                           answer_b=b), temperature=0.0, max_tokens=max_tokens)
    except Refused as e:
        return None, f"judge {e.outcome}: {e.reason or 'no reason given'}", ""
    v, why = parse_verdict(reply)
    return v, why, reply or ""


CHOICES = ("A", "B", "tie")


def logprob_verdicts(scorer: Any, pairs: Sequence[tuple[str, str, str]]) -> list[tuple[str, dict[str, float]]]:
    """(verdict, {choice: log-prob}) per (prompt, answer A, answer B): the likeliest of the lines
    "VERDICT: A", "VERDICT: B", "VERDICT: tie" as the judge's reply to the choice template. Each
    question is run once and its cache shared by the three lines (LogProbScorer.score)."""
    reqs = [(prompt_kit.render("side_by_side_choice", prompt=p, answer_a=a, answer_b=b), f"VERDICT: {c}")
            for p, a, b in pairs for c in CHOICES]
    lps = scorer.score(reqs)
    out = []
    for i in range(len(pairs)):
        scores = {c: round(lps[3 * i + j].sum, 4) for j, c in enumerate(CHOICES)}
        out.append((max(CHOICES, key=lambda c: scores[c]), scores))
    return out


def local_judge_scorer(judge: LLM) -> Any:
    """The log-prob scorer on the judge's own weights (verdict: logprob needs a local judge)."""
    if judge.backend.provider != "local" or not hasattr(judge.backend, "path"):
        raise InputError("evaluation.capability.side_by_side.verdict: logprob needs a local judge (models.judge "
                         f"local:...); the judge is {judge.backend.provider}: use verdict: text")
    from traitforge.shared.logprob import scorer_for

    return scorer_for(judge.backend.path)


def debiased_margin(checkpoint_as_a: dict[str, float], checkpoint_as_b: dict[str, float]) -> float:
    """The judge's log-odds for the checkpoint's answer over the reference's, summed over the two
    orders: log P(A)/P(B) with the checkpoint as A plus log P(B)/P(A) with it as B. A lean towards
    a position adds to one term what it takes from the other, so it cancels, and what is left is
    the preference for the answer itself; 0 when the two orders are one question (same answers)."""
    return round((checkpoint_as_a["A"] - checkpoint_as_a["B"]) + (checkpoint_as_b["B"] - checkpoint_as_b["A"]), 4)


async def compare_by_logprob(scorer: Any, prompt: str, answer: str, reference: str) -> Comparison:
    """As `compare`, from the judge's log-probabilities of its verdict lines in both orders: the
    outcome is the sign of `debiased_margin` (a judge that always says "A" still shows which answer
    it leans to once its position lean is taken out); `verdicts` keep each order's likeliest line."""
    import asyncio

    (v1, s1), (v2, s2) = await asyncio.to_thread(logprob_verdicts, scorer,
                                                 [(prompt, answer, reference), (prompt, reference, answer)])
    margin = debiased_margin(s1, s2)
    outcome = WIN if margin > 0 else LOSS if margin < 0 else TIE
    return Comparison(outcome, "", (v1, v2), (json.dumps(s1), json.dumps(s2)), margin)


async def compare(judge: LLM, prompt: str, answer: str, reference: str, max_tokens: int = 400) -> Comparison:
    """The checkpoint's `answer` against the reference's, judged in both orders."""
    import asyncio

    (v1, why1, r1), (v2, why2, r2) = await asyncio.gather(_verdict(judge, prompt, answer, reference, max_tokens),
                                                          _verdict(judge, prompt, reference, answer, max_tokens))
    if v1 is None or v2 is None:
        why = "; ".join(f"{order}: {w}" for order, w in (("A/B", why1), ("B/A", why2)) if w)
        return Comparison(None, why, (v1, v2), (r1, r2))
    return Comparison(combine(v1, v2), "", (v1, v2), (r1, r2))


def comparison_row(checkpoint: str, reference: str, p: Prompt, answer: str, ref_answer: str,
                   c: Comparison, method: str = "text") -> ItemResult:
    """RUN/eval/side_by_side.jsonl: value 1 win, 0.5 tie, 0 loss for the checkpoint; None unscored.
    `judge_replies` holds the judge's two replies, or with verdict: logprob the log-probs of its
    three verdict lines in each order."""
    return ItemResult(id=result_id(EVAL, checkpoint, p.id), eval=EVAL, checkpoint=checkpoint, item_id=p.id,
                      value=c.value, reason=c.reason,
                      detail={"reference": reference, "verdict_method": method, "margin": c.margin, "prompt": p.text,
                              "answer": answer[:MAX_DETAIL],
                              "reference_answer": ref_answer[:MAX_DETAIL],
                              "outcome": OUTCOME.get(c.outcome) if c.outcome is not None else None,
                              "verdicts": {"checkpoint_as_A": c.verdicts[0], "checkpoint_as_B": c.verdicts[1]},
                              "inconsistent": (c.verdicts[0] is not None and c.verdicts[0] == c.verdicts[1]
                                               and c.verdicts[0] != "tie"),
                              "judge_replies": [r[:MAX_DETAIL] for r in c.replies]})


async def _answer(model: LLM, text: str, max_tokens: int) -> tuple[str | None, str]:
    try:
        return await model.generate_one(text, temperature=0.0, max_tokens=max_tokens), ""
    except Refused as e:
        return None, f"answer {e.outcome} by the provider: {e.reason or 'no reason given'}"


def side_by_side_eval(ctx: EvalContext, spec: SideBySideSpec, prompts: Sequence[Prompt]) -> JudgedEval:
    """The eval on the evaluation's schedule: every checkpoint but the reference answers each prompt
    (the reference's answers are the same cached calls for all), then the judge compares."""
    ref = spec.reference
    if ref not in ctx.all_checkpoints:
        raise InputError(f"evaluation.capability.side_by_side.reference: '{ref}' is not an evaluated checkpoint "
                         f"(have: {', '.join(ctx.all_checkpoints)})")

    async def respond(u: Unit) -> tuple[str | None, str | None, str]:
        ck, p = u.data
        mine, why = await _answer(ctx.target(ck), p.text, spec.max_tokens)
        theirs, why_ref = await _answer(ctx.target(ref) if ref in ctx.checkpoints else _reference(ctx, ref),
                                        p.text, spec.max_tokens)
        return mine, theirs, why or why_ref

    async def grade(u: Unit, answered: tuple[str | None, str | None, str]) -> ItemResult:
        ck, p = u.data
        mine, theirs, why = answered
        if mine is None or theirs is None:
            c = Comparison(None, why, (None, None), ("", ""))
        elif spec.verdict == "logprob":
            c = await compare_by_logprob(scorer, p.text, mine, theirs)
        else:
            c = await compare(ctx.judge, p.text, mine, theirs, spec.judge_max_tokens)
        return comparison_row(ck, ref, p, mine or "", theirs or "", c, spec.verdict)

    scorer = local_judge_scorer(ctx.judge) if spec.verdict == "logprob" else None

    units = [Unit(result_id(EVAL, ck, p.id), "", (ck, p)) for ck in ctx.checkpoints if ck != ref for p in prompts]
    return JudgedEval(ctx, EVAL, units, respond, grade, "side-by-side capability")


def _reference(ctx: EvalContext, ref: str) -> LLM:
    """The reference model when the context is narrowed to another checkpoint (its pooled client)."""
    t = ctx.all_checkpoints[ref]
    return t if isinstance(t, LLM) else ctx.run.client(t)


# --- figures ---------------------------------------------------------------------------------


def side_by_side_section(rows: Sequence[ItemResult], checkpoints: Sequence[str], boot: int = 1000,
                         seed: int = 0) -> dict[str, Any]:
    """results.json's side-by-side section: per checkpoint, the win rate against the reference (tie =
    half) with a bootstrap interval and n, the win/tie/loss counts, how many ties came from verdicts
    that followed the position, and the unscored count with reasons."""
    rows = [r for r in rows if r.eval == EVAL and r.checkpoint in checkpoints]
    if not rows:
        return {}
    out: dict[str, Any] = {"reference": rows[0].detail.get("reference"),
                           "verdict_method": rows[0].detail.get("verdict_method", "text"), "by_checkpoint": {}}
    for ck in checkpoints:
        mine = [r for r in rows if r.checkpoint == ck]
        if not mine:
            continue
        scored = [r.value for r in mine if r.value is not None]
        counts = Counter(r.detail.get("outcome") for r in mine if r.value is not None)
        out["by_checkpoint"][ck] = {
            "win_rate": bootstrap(scored, resamples=boot, seed=seed).to_dict() if scored else EMPTY.to_dict(),
            "wins": counts.get("win", 0), "ties": counts.get("tie", 0), "losses": counts.get("loss", 0),
            "position_ties": sum(bool(r.detail.get("inconsistent")) and r.detail.get("outcome") == "tie"
                                 for r in mine if r.value is not None),
            # prompts whose likeliest verdict was the same position in both orders (with verdict: logprob
            # the outcome still comes from the debiased margin, so these need not be ties)
            "position_following": sum(bool(r.detail.get("inconsistent")) for r in mine if r.value is not None),
            "unscored": len(mine) - len(scored),
            "unscored_reasons": sorted({r.reason[:120] for r in mine if r.value is None})[:5]}
    return out


def side_by_side_results(store: "RunStore", checkpoints: Sequence[str], boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """The section from RUN/eval/side_by_side.jsonl (for results.json; {} when the eval did not run)."""
    from traitforge.evaluate.common import eval_path, load_results

    return side_by_side_section(load_results(eval_path(store, EVAL)), checkpoints, boot, seed)
