"""The evaluation's trait-vector step (the vectors themselves: shared/vectors.py): vectors from the
evaluated base checkpoint, the steering check, each checkpoint's projections (RUN/eval/vectors.jsonl)
and their shifts in results.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence


from traitforge.shared.vectors import (MAX_RESPONSE_TOKENS, MIN_REPLY_PAIRS, STEER_COEFS, TraitVector,  # noqa: F401
                                       activations_ids, correlation, ensure_vectors, hash_pairs, load_vector,
                                       mean_ci, project_ids, shift, steering_check, text_ids)


def _summary_path(store: Any) -> Path:
    return store.path("vectors", "summary.json")


def run_vectors_sync(ctx: Any, items: Sequence[Any],
                     replies_by_checkpoint: dict[str, dict[str, str]] | None = None) -> None:
    """The evaluation step: vectors from the evaluated base checkpoint, the steering check on the
    behaviour items' contrastive pairs, and every local checkpoint's projections on the behaviour
    prompts (RUN/eval/vectors.jsonl, one row per checkpoint, trait and prompt)."""
    from traitforge.evaluate.common import ItemResult, eval_path
    from traitforge.shared.logprob import scorer_for
    from traitforge.jsonl import append_jsonl, write_json_atomic

    store, ev, seed = ctx.store, ctx.ev, ctx.run.seed
    # The whole evaluation's base, also when this context is narrowed to one checkpoint (the schedule
    # runs this step a checkpoint at a time, base first: the vectors and the steering check are made
    # in base's turn and read back from RUN/vectors/ in the others').
    everyone = ctx.all_checkpoints
    base = ctx.weights("base") if "base" in everyone else None
    if base is None:
        why = ("no base checkpoint is evaluated" if "base" not in everyone
               else f"{ctx.not_applicable().get('base') or 'base has no local weights'}")
        write_json_atomic(_summary_path(store), {"available": False,
                                                 "reason": f"trait vectors need the base model's weights: {why}"})
        return
    usable = [i for i in items if i.dropped is None]
    # Each trait's contrastive pairs (the item writer's replies showing and violating it): the vector
    # is built from them, and the steering check runs on the pairs held out from building it.
    replies = {t.id: [(i.prompt, i.consistent, i.violating) for i in sorted(usable, key=lambda i: i.id)
                      if i.trait_id == t.id and i.consistent.strip() and i.violating.strip()]
               for t in ctx.traits.traits}
    vectors = ensure_vectors(store, ctx.traits, base, ctx.model_name(), replies, questions=ev.vector_questions,
                             paraphrases=ev.vector_paraphrases, seed=seed)
    steering: dict[str, Any] = {}
    old = _read_json(_summary_path(store)).get("steering", {})
    for tid, (tv, fp) in vectors.items():
        pairs = replies.get(tid, [])
        if tv.meta.get("source") == "replies":
            pairs = [pairs[k] for k in tv.meta["held_out"]]
        key = f"{fp}:{hash_pairs(pairs)}"
        if old.get(tid, {}).get("key") == key:
            steering[tid] = old[tid]
            continue
        steering[tid] = {**steering_check(scorer_for(base), tv, pairs, resamples=ev.bootstrap,
                                          seed=seed), "key": key}
    write_json_atomic(_summary_path(store), {
        "available": True, "base": base,
        "traits": {tid: {**tv.meta, "fingerprint": fp} for tid, (tv, fp) in vectors.items()},
        "steering": steering})
    path = eval_path(store, "vectors")
    order = list(vectors)
    for ck, todo in _pending_projections(ctx, usable, {t: fp for t, (_, fp) in vectors.items()}).items():
        scorer = scorer_for(ctx.weights(ck))
        reply = (replies_by_checkpoint or {}).get(ck, {})
        proj = project_ids(scorer, [vectors[t][0] for t in order],
                           scorer.encode([(i.prompt, reply.get(i.id, "")) for i in todo]))
        append_jsonl(path, [ItemResult(id=_row_id(ck, tid, i.id), eval="projection", checkpoint=ck, item_id=i.id,
                                       trait_id=tid, ood=i.ood, value=round(float(proj[n, k]), 6),
                                       detail={"vector": vectors[tid][1], "layer": vectors[tid][0].layer,
                                               "prompt_trait": i.trait_id, "measure": "own reply"})
                            for n, i in enumerate(todo) for k, tid in enumerate(order)])


def _pending_projections(ctx: Any, usable: Sequence[Any], fingerprints: dict[str, str] | None) -> dict[str, list[Any]]:
    """checkpoint -> the behaviour items whose projection rows are missing or made with other vectors
    (fingerprints None: vectors not built yet, so every item of every local checkpoint)."""
    from traitforge.evaluate.common import eval_path
    from traitforge.jsonl import iter_jsonl_dicts

    have = {d.get("id"): d.get("detail", {}).get("vector") for d in iter_jsonl_dicts(eval_path(ctx.store, "vectors"))}
    out = {}
    for ck in ctx.logprob_checkpoints():
        todo = [i for i in usable if fingerprints is None
                or any(have.get(_row_id(ck, tid, i.id)) != fp for tid, fp in fingerprints.items())]
        if todo:
            out[ck] = todo
    return out


async def run_vectors(ctx: Any, items: Sequence[Any]) -> None:
    """The vectors step. Each checkpoint's projection is of its own greedy reply to each behaviour
    prompt (the reply the behavioural eval asks for, so it comes from the cache), read by the
    checkpoint itself and averaged over the reply tokens: the vector is made from reply tokens, and
    on SmolLM2-135M a checkpoint trained on trait-showing replies moved the wrong way at the last
    prompt token while its replies moved the right way at every layer measured."""
    import asyncio

    from traitforge.steps import Unit

    usable = [i for i in items if i.dropped is None]
    replies: dict[str, dict[str, str]] = {}
    for ck, todo in _pending_projections(ctx, usable, None).items():
        target = ctx.target(ck)
        res = await ctx.step("vectors replies", [Unit(i.id, i.trait_id, i) for i in todo],
                             lambda u: target.generate_one(u.data.prompt, temperature=0.0, max_tokens=ctx.ev.max_tokens),
                             done=(), desc=f"vectors: replies {ck}")
        replies[ck] = {u.key: t for u, t in res.done()}
    await asyncio.to_thread(run_vectors_sync, ctx, items, replies)


def _row_id(ck: str, trait_id: str, item_id: str) -> str:
    return f"projection:{trait_id}|{ck}|{item_id}"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except json.JSONDecodeError:
        return {}


def vector_results(store: Any, results: dict[str, Any], *, resamples: int = 1000, seed: int = 0,
                   not_applicable: dict[str, str] | None = None) -> dict[str, Any]:
    """results.json["vectors"]: per trait the vector's layer, held-out separation against random
    directions and the steering check; per checkpoint and trait the mean projection on the
    behaviour prompts, its paired shift against base and against `control` (when evaluated), and
    the correlation across (trait, checkpoint) cells between the shift against base and the other
    judge-free measures' paired change against base."""
    from traitforge.evaluate.common import eval_path, load_results

    summary = _read_json(store.root / "vectors" / "summary.json")
    out: dict[str, Any] = {"available": bool(summary.get("available")), "reason": summary.get("reason", ""),
                           "not_applicable": dict(not_applicable or {})}
    if not out["available"]:
        out["reason"] = out["reason"] or "trait vectors were not built"
        return out
    traits_meta = summary.get("traits", {})
    steering = summary.get("steering", {})
    out["traits"] = {tid: {"layer": m.get("layer"), "layers": m.get("layers"), "separation": m.get("separation"),
                           "random": m.get("random"), "vector_norm": m.get("vector_norm"),
                           "residual_norm": m.get("residual_norm"), "pairs_held_out": m.get("pairs_held_out"),
                           "steering": {k: v for k, v in steering.get(tid, {}).items() if k != "key"}}
                     for tid, m in traits_meta.items()}
    fps = {tid: m.get("fingerprint") for tid, m in traits_meta.items()}
    vals: dict[str, dict[str, dict[str, float]]] = {}
    for r in load_results(eval_path(store, "vectors")):
        if r.checkpoint in results.get("checkpoints", []) and r.value is not None and \
                fps.get(r.trait_id) == r.detail.get("vector"):
            vals.setdefault(r.checkpoint, {}).setdefault(r.trait_id, {})[r.item_id] = r.value
    proj: dict[str, dict[str, Any]] = {}
    vs_base: dict[str, dict[str, Any]] = {}
    vs_control: dict[str, dict[str, Any]] = {}
    for ck, per in vals.items():
        for tid, v in per.items():
            proj.setdefault(ck, {})[tid] = mean_ci(list(v.values()), resamples=resamples, seed=seed)
            if ck != "base" and tid in vals.get("base", {}):
                vs_base.setdefault(ck, {})[tid] = shift(v, vals["base"][tid], resamples=resamples, seed=seed)
            if ck not in ("base", "control") and tid in vals.get("control", {}):
                vs_control.setdefault(ck, {})[tid] = shift(v, vals["control"][tid], resamples=resamples, seed=seed)
    out.update(projection=proj, shift_vs_base=vs_base, shift_vs_control=vs_control)
    corr = {}
    for ev in ("contrastive", "knowledge_mc"):
        xs, ys = [], []
        for ck, per in vs_base.items():
            for tid, s in per.items():
                other = results.get("paired_vs_base", {}).get(ck, {}).get(tid, {}).get(ev)
                if s.get("value") is not None and other and other.get("diff") is not None:
                    xs.append(s["value"])
                    ys.append(other["diff"])
        corr[ev] = correlation(xs, ys)
    out["correlation"] = corr
    return out
