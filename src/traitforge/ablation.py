"""An ablation in one command: the base spec and each of its `variants` (config.RunSpec.variants) run
as arms, each in its own run directory (<output_dir>@NAME) with its own report, stage by stage.

What arms have in common is made once. A stage's key is the hash of every setting and input file it
reads (its section and those before it, and the inputs' sha256 from the manifest): an arm whose key
equals an arm that already made the stage gets that arm's output folders copied in (copy-on-write
where the file system has it: `cp --reflink=auto`) with its manifest entries, and does not run the
stage; a copied or moved arm then still touches only itself. Within a training stage that does run,
each checkpoint is matched alone, by the fingerprint the run store keeps for it (recipe, settings,
seed, starting checkpoint, data files by content): one another arm trained alike is copied, its
weights checked against the identity saved with them, not trained again (train/run.py,
`shared_checkpoint`). Every arm uses one LLM cache (the base's; config.load_spec), keyed for a local
checkpoint by its content identity, so a stage that does run makes no call another arm made, a
copied checkpoint's answers included. Evaluation items
are written once, by the first arm evaluated, against the union of the arms' training chats
(RUN/eval/arms_user_turns.jsonl, read by evaluate/items.py), and copied into the other arms.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Callable

from traitforge.jsonl import iter_jsonl_dicts, write_jsonl
from traitforge.runcontext import Run, open_run, resolve_spec_path
from traitforge.runstore import copy_tree

BASE = "base"
# The folders each shareable stage writes, and the sections (beyond those of the stages before it)
# whose settings its output depends on.
OUTPUTS = {"generate": ("generated",), "curate": ("curated", "curation"), "train": ("train", "checkpoints")}
NOT_SETTINGS = ("name", "output_dir", "cache_dir", "variants", "budget", "prices_file", "curation", "training",
                "evaluation")
ITEM_FILES = ("items_knowledge", "items_mc", "items_behaviour", "items_multiturn", "items_canary")
UNION_TURNS = "arms_user_turns.jsonl"


def open_arms(target: str | Path, preset: str | None = None, prepare: Callable[[Run], Run] | None = None
              ) -> dict[str, Run]:
    """The base arm and every variant's, opened (each takes its own lock; the base's lock, held for
    the whole run, covers the shared cache). `prepare`: applied to each (tests give scripted clients)."""
    prepare = prepare or (lambda r: r)
    base = prepare(open_run(target, preset))
    arms = {BASE: base}
    if base.spec.variants:
        spec_path = resolve_spec_path(base.store.root)  # the base's copy: its paths point into the base
        preset = base.store.manifest.get("preset")
        for name in base.spec.variants:
            arms[name] = prepare(open_run(spec_path, preset, variant=name))
        for name, r in arms.items():  # training takes a checkpoint another arm trained alike (train/run.py)
            r.share_from = {n: o.store.root for n, o in arms.items() if n != name}
        base.store.manifest["arms"] = {name: str(r.store.root.resolve()) for name, r in arms.items()}
        base.store.save()
        for name, r in arms.items():
            r.store.manifest.setdefault("arm", {}).update(name=name, base=str(base.store.root.resolve()))
            r.store.save()
    return arms


def stage_key(run: Run, stage: str) -> str:
    """What `stage`'s output depends on, hashed: the settings of it and the stages before it (not
    the run's name or directories) and the content of every input file."""
    data = run.spec.model_dump(mode="json")
    keep = {k: v for k, v in data.items() if k not in NOT_SETTINGS}
    keep["control_arm"] = "control" in data["training"]["checkpoints"]  # its untraited data is generated
    ev = data["evaluation"]
    if stage in ("curate", "train"):
        keep["curation"] = data["curation"]
        keep["evaluation.curation"] = [ev.get("bootstrap"), ev.get("vector_questions"), ev.get("vector_paraphrases")]
    if stage == "train":
        keep["training"] = data["training"]
    inputs = run.store.manifest.get("inputs", {})
    keep["inputs"] = {k: v.get("sha256") for k, v in sorted(inputs.items()) if k != "spec" and isinstance(v, dict)}
    return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _entries(run: Run, before: dict[str, Any]) -> list[str]:
    """The manifest stages a stage wrote: new ones and those that changed."""
    after = run.store.manifest["stages"]
    return [n for n, info in after.items() if before.get(n) != info]


def share(src: Run, src_name: str, dest: Run, stage: str, key: str, entries: list[str]) -> None:
    """Give `dest` what `src` made of `stage`: its output folders and manifest entries."""
    for folder in OUTPUTS[stage]:
        if (src.store.root / folder).exists():
            copy_tree(src.store.root / folder, dest.store.root / folder)
    stages = dest.store.manifest["stages"]
    for n in entries:
        if n in src.store.manifest["stages"]:
            stages[n] = {**json.loads(json.dumps(src.store.manifest["stages"][n])), "shared_from": src_name}
    dest.store.manifest.setdefault("arm", {}).setdefault("shares", {})[stage] = {"from": src_name, "key": key}
    dest.store.save()


def union_user_turns(arms: dict[str, Run]) -> list[dict[str, str]]:
    """Every user turn of every arm's training chats, once (evaluation items must be new to all)."""
    seen: dict[str, None] = {}
    for r in arms.values():
        for part in (("generated", "chats.jsonl"), ("curated", "chats.jsonl")):
            for row in iter_jsonl_dicts(r.store.root.joinpath(*part)):
                for m in row.get("messages") or []:
                    if isinstance(m, dict) and m.get("role") == "user" and isinstance(m.get("content"), str):
                        seen.setdefault(m["content"])
    return [{"content": c} for c in seen]


def run_arms(arms: dict[str, Run], until: str | None = None, log: Callable[[str], None] = print,
             stages: dict[str, Callable[[Run], Any]] | None = None) -> dict[str, Any]:
    """Every stage for every arm, in stage order, sharing what arms have in common. Returns arm ->
    its last stage's result (the report's path). `stages`: name -> function (default: pipeline's)."""
    from traitforge import pipeline

    fns = stages or {"generate": lambda r: pipeline.stage_generate(r), "curate": lambda r: pipeline.stage_curate(r),
                     "train": lambda r: pipeline.stage_train(r), "evaluate": lambda r: pipeline.stage_evaluate(r),
                     "report": lambda r: pipeline.stage_report(r)}
    made: dict[tuple[str, str], tuple[str, list[str]]] = {}  # (stage, key) -> (arm that made it, its entries)
    out: dict[str, Any] = {}
    for stage in pipeline.STAGES:
        for name, r in arms.items():
            if stage == "evaluate" and len(arms) > 1:
                _prepare_items(arms, name)
            shareable = stage in OUTPUTS and len(arms) > 1
            key = stage_key(r, stage) if shareable else ""
            if shareable and (stage, key) in made:
                src_name, entries = made[(stage, key)]
                shares = r.store.manifest.get("arm", {}).get("shares", {}).get(stage, {})
                if shares.get("key") != key:
                    share(arms[src_name], src_name, r, stage, key, entries)
                log(f"== {stage} [{name}]: shared with {src_name} (same settings and inputs)")
                continue
            log(f"== {stage}" + (f" [{name}]" if len(arms) > 1 else ""))
            before = json.loads(json.dumps(r.store.manifest["stages"]))
            out[name] = fns[stage](r)
            if shareable:
                r.store.manifest.setdefault("arm", {}).setdefault("shares", {}).pop(stage, None)
                kept = r.store.manifest.setdefault("arm", {}).setdefault("entries", {})
                kept[stage] = sorted(set(_entries(r, before)) | set(kept.get(stage, [])))
                r.store.save()
                made[(stage, key)] = (name, kept[stage])
        if stage == until:
            break
    return out


def _prepare_items(arms: dict[str, Run], name: str) -> None:
    """Before arm `name` is evaluated: the first arm gets the union of the arms' training turns to
    filter its items against; the others get the items the first one wrote."""
    first = next(iter(arms.values()))
    if arms[name] is first:
        write_jsonl(first.store.path("eval", UNION_TURNS), union_user_turns(arms))
        return
    for f in ITEM_FILES:
        src = first.store.root / "eval" / f"{f}.jsonl"
        if src.is_file():
            dest = arms[name].store.path("eval", f"{f}.jsonl")
            shutil.copyfile(src, dest)


def arms_lines(manifest: dict[str, Any]) -> list[str]:
    """`traitforge status`'s lines on arms: the base lists its arms; an arm says what it shares."""
    lines = []
    for name, root in (manifest.get("arms") or {}).items():
        try:
            shares = json.loads((Path(root) / "manifest.json").read_text(encoding="utf-8")).get("arm", {}).get("shares", {})
        except (OSError, ValueError):
            shares = {}
        what = ", ".join(f"{s} (from {v['from']})" for s, v in shares.items())
        lines.append(f"arm {name}: {root}" + (f"; shares {what}" if what else ""))
    arm = manifest.get("arm")
    if arm and arm.get("name") not in (None, BASE):
        shares = arm.get("shares", {})
        what = ", ".join(f"{s} (from {v['from']})" for s, v in shares.items()) or "nothing"
        lines.append(f"arm {arm['name']} of {arm.get('base')}: shares {what}")
    return lines
