"""Screening the curated data with the trait vectors (shared/vectors.py), for the dataset card.

Chats: the first assistant reply's mean activation projected on each trait vector, minus the
projection of the base model's own greedy reply to the same user turn: how far the row pushes the
model along the trait compared with what it already says. Documents: each document's mean
activation (first tokens) projected on each vector, against the corpus mean (z-scores).
A row tagged with a trait that pushes against it (chat difference below zero; document z below
-1) is listed. Needs the base model's local weights (`models.base`)."""

from __future__ import annotations

import asyncio
from typing import Any, Sequence

import numpy as np

from typing import TYPE_CHECKING

from traitforge.curate.settings import CurationSpec
from traitforge.types import Chat, Document

if TYPE_CHECKING:
    from traitforge.runcontext import Run

WRONG_WAY_Z = -1.0  # documents: this many standard deviations below the corpus mean
MAX_LISTED = 30  # rows listed per dataset


def _first_turn(chat: Chat) -> tuple[str, str] | None:
    user = next((m.content for m in chat.messages if m.role == "user"), None)
    reply = next((m.content for m in chat.messages if m.role == "assistant"), None)
    return (user, reply) if user and reply else None


def distribution(values: Sequence[float], *, resamples: int, seed: int) -> dict[str, Any]:
    from traitforge.shared.vectors import mean_ci

    a = np.asarray(values, dtype=float)
    if not len(a):
        return {"n": 0}
    p10, med, p90 = (round(float(x), 4) for x in np.percentile(a, [10, 50, 90]))
    return {"n": len(a), "mean": mean_ci(a, resamples=resamples, seed=seed), "sd": round(float(a.std()), 4),
            "p10": p10, "median": med, "p90": p90, "share_negative": round(float((a < 0).mean()), 4)}


async def screen(run: "Run", cfg: CurationSpec, docs: Sequence[Document], chats: Sequence[Chat]) -> dict[str, Any]:
    """The card's "screening" section."""
    from traitforge.shared.logprob import scorer_for
    from traitforge.shared.vectors import ensure_vectors, project_ids, text_ids

    store, traits, weights = run.store, run.traits, run.base_weights
    questions, paraphrases = cfg.vector_settings
    # Before the evaluation writes contrastive replies: the system-prompt contrast, kept apart from
    # the evaluation's vectors (RUN/vectors/screening/).
    vectors = await asyncio.to_thread(ensure_vectors, store, traits, weights, run.model_name, None,
                                      ("vectors", "screening"), questions=questions, paraphrases=paraphrases,
                                      seed=run.seed)
    order = [t.id for t in traits.traits]
    tvs = [vectors[t][0] for t in order]
    scorer = scorer_for(weights)
    boot = dict(resamples=cfg.bootstrap_resamples, seed=run.seed)
    out: dict[str, Any] = {"base": weights, "traits": order,
                           "layers": {t: vectors[t][0].layer for t in order}, "datasets": {}}

    turns = [(c, ft) for c in chats if (ft := _first_turn(c)) is not None]
    if turns:
        llm = run.llm("student")  # the base model (its usage is the curate stage's)
        own = await asyncio.gather(*[llm.generate_one(u, temperature=0.0, max_tokens=cfg.screen_max_tokens)
                                     for _, (u, _) in turns])
        seqs = scorer.encode([(u, r) for _, (u, r) in turns] + [(u, o) for (_, (u, _)), o in zip(turns, own)])
        proj = await asyncio.to_thread(project_ids, scorer, tvs, seqs)
        diff = proj[:len(turns)] - proj[len(turns):]
        rows = [(c.id, c.trait_ids, diff[i]) for i, (c, _) in enumerate(turns)]
        out["datasets"]["chats"] = _summarise(rows, order, "difference", 0.0, boot,
                                              "the row's reply minus the base model's own reply to the same prompt")
    if docs:
        proj = await asyncio.to_thread(project_ids, scorer, tvs, await asyncio.to_thread(
            text_ids, scorer, [d.text for d in docs]))
        sd = proj.std(axis=0)
        z = (proj - proj.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
        rows = [(d.id, d.trait_ids, z[i]) for i, d in enumerate(docs)]
        out["datasets"]["documents"] = _summarise(rows, order, "z", WRONG_WAY_Z, boot,
                                                  "the document against the corpus mean, in standard deviations")
    return out


def _summarise(rows: list[tuple[str, list[str], np.ndarray]], order: list[str], measure: str, threshold: float,
               boot: dict[str, int], what: str) -> dict[str, Any]:
    per_trait = {}
    wrong = []
    for k, tid in enumerate(order):
        tagged = [float(v[k]) for _, tags, v in rows if tid in tags]
        per_trait[tid] = {"all": distribution([float(v[k]) for _, _, v in rows], **boot),
                          "tagged": distribution(tagged, **boot)}
        wrong += [{"id": rid, "trait": tid, measure: round(float(v[k]), 4)}
                  for rid, tags, v in rows if tid in tags and v[k] < threshold]
    wrong.sort(key=lambda w: w[measure])
    return {"rows": len(rows), "measure": measure, "what": what, "threshold": threshold, "per_trait": per_trait,
            "wrong_way": wrong[:MAX_LISTED], "wrong_way_total": len(wrong)}
