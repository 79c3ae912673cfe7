"""The training stage: build each checkpoint listed in `spec.training.checkpoints` (besides base).

  midtrain          base + curated documents            (midtrain.py)
  sft               base + curated chats                (sft.py)
  midtrain_sft      midtrain checkpoint + curated chats (sft.py)
  control           base + trait-free chats (the negative control arm: the teacher's answers without
                    the trait system prompt, as many characters as the curated chats; sft.py)
  joint             base + curated documents and chats in one stage, shuffled together (sft.py with
                    the documents as extra rows; the alternative to midtrain then SFT)
  sft_dpo, midtrain_sft_dpo   that checkpoint + DPO pairs (dpo.py; skipped if no pairs file)

Variants (training.seeds, training.fractions) repeat every checkpoint with another seed
("<name>.s<k>") or on a share of its data ("<name>.f<x>"); a variant starts from its parent's
variant, so "midtrain_sft.f0.25" continues "midtrain.f0.25".

training.docs_to_chats sets how many characters of documents are trained per character of chats:
the larger side is cut (seeded, never repeated) in every checkpoint, and the control arm matches the
chats as cut; control-trait rows (the canary) are kept whole (data.RatioCut).

Each is a manifest stage "train.<name>" fingerprinted by its inputs and settings: a finished one is
skipped, an interrupted one resumes from its last Trainer checkpoint in RUN/train/<name>/trainer/.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from traitforge.train.settings import StageTrainSpec, TrainingSpec
from traitforge.errors import InputError
from traitforge.llm.embedded import resolve_model_path
from traitforge.llm.identity import file_sha256
from traitforge.runstore import RunStore, copy_tree
from traitforge.types import stable_hash
from traitforge.train import common, dpo, joint, midtrain, sft
from traitforge.train import data as train_data
from traitforge.train.common import StageJob, is_main_process
from traitforge.shared.variants import Variant, split_variant, variant_names, variants  # noqa: F401  (re-exported)

if TYPE_CHECKING:
    from traitforge.runcontext import Run

log = logging.getLogger("traitforge.train")

# checkpoint -> (kind, checkpoint it starts from; None = the base model)
RECIPES: dict[str, tuple[str, str | None]] = {
    "midtrain": ("midtrain", None),
    "sft": ("sft", None),
    "midtrain_sft": ("sft", "midtrain"),
    "control": ("sft", None),
    "joint": ("joint", None),
    "sft_dpo": ("dpo", "sft"),
    "midtrain_sft_dpo": ("dpo", "midtrain_sft"),
}


CONTROL_SOURCES = (("generated", "untraited.jsonl"), ("generated", "canary_untraited.jsonl"))


def stage_name(checkpoint: str) -> str:
    return f"train.{checkpoint}"


def plan(targets: list[str]) -> list[str]:
    """Targets plus the checkpoints they start from, parents first."""
    order: list[str] = []

    def visit(name: str) -> None:
        base, suffix = split_variant(name)
        if base not in RECIPES:
            raise InputError(f"training: unknown checkpoint '{base}' (use one of {', '.join(RECIPES)})")
        parent = RECIPES[base][1]
        if parent:
            visit(parent + suffix)
        if name not in order:
            order.append(name)

    for t in targets:
        visit(t)
    return order


def requested(cfg: TrainingSpec, stages: list[str] | None = None) -> list[str]:
    """The checkpoints asked for: `stages` as named, or the spec's training.checkpoints with their
    seed and fraction variants; base is not trained."""
    if stages is not None:
        return [c for c in stages if c != "base"]
    return variant_names(cfg, list(cfg.checkpoints))


def _model_identity(path: Path) -> dict[str, Any]:
    weights = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
    return {"path": str(path.resolve()), "weights": [f"{w.name}:{w.stat().st_size}:{int(w.stat().st_mtime)}"
                                                     for w in weights]}


def _file_id(path: Path | None) -> str | None:
    return file_sha256(path) if path is not None and path.is_file() else None


def _stage_spec(cfg: TrainingSpec, kind: str) -> StageTrainSpec:
    if kind == "dpo":
        return cfg.dpo or StageTrainSpec(learning_rate=5e-6)
    return getattr(cfg, kind)


def _variant_of(cfg: TrainingSpec, seed: int, name: str) -> Variant:
    suffix = split_variant(name)[1]
    for v in variants(cfg, seed):
        if v.suffix == suffix:
            return v
    raise InputError(f"training: checkpoint '{name}' is not one of this spec's seeds or fractions")


def control_data(store: RunStore, name: str, seed: int, cut: Any = None, template_traits: list[str] = ()) -> Path:
    """RUN/train/control_data/<name>.jsonl: trait-free chats (the teacher's untraited answers and the
    canary's prompts answered plainly) drawn until they hold as many characters as the curated chats
    (as SFT trains them: after the documents-to-chats cut when one is set; `template_traits`:
    curation.template_traits, whose rows the cut keeps whole)."""
    from traitforge.jsonl import read_jsonl, write_jsonl
    from traitforge.train.data import char_matched, chat_chars, take_share
    from traitforge.types import Chat

    pool = [c for parts in CONTROL_SOURCES for c in read_jsonl(store.root.joinpath(*parts), Chat)]
    curated = read_jsonl(store.root / "curated" / "chats.jsonl", Chat)
    if not pool:
        raise InputError(f"{store.root / 'generated' / 'untraited.jsonl'}: no trait-free chats for the control "
                         "checkpoint (run generation with 'control' in training.checkpoints)")
    if cut is not None and cut.ratio is not None:
        curated = take_share(curated, cut.chat_share, seed, chat_chars, list(template_traits))
    rows = char_matched(pool, sum(map(chat_chars, curated)), seed, chat_chars)
    path = store.path("train", "control_data", f"{name}.jsonl")
    write_jsonl(path, [r.model_copy(update={"id": f"{r.id}-{i}"}) for i, r in enumerate(rows)])
    return path


def _fingerprint(cfg: TrainingSpec, kind: str, stage: StageTrainSpec, init: dict[str, Any] | str,
                 data_files: list[Path | None], variant: Variant) -> str:
    t, v = cfg, variant
    return stable_hash({
        "kind": kind, "stage": stage.model_dump(), "seed": v.seed, "init": init,
        **({"fraction": v.fraction} if v.fraction < 1 else {}),
        **({"docs_to_chats": t.docs_to_chats} if t.docs_to_chats is not None else {}),
        "method": t.method, "lora": [t.lora_r, t.lora_alpha, t.lora_dropout, t.lora_target_modules],
        "bf16": common.use_bf16(t.bf16), "pack_chats": t.pack_chats if kind == "sft" else None,
        "dpo_beta": t.dpo_beta if kind == "dpo" else None,
        "data": [_file_id(p) for p in data_files],
    }, length=16)


def _main_only(cm: Any) -> Any:
    return cm if is_main_process() else contextlib.nullcontext({})


def _dataset_tokens(ds: Any) -> dict[str, int]:
    lengths = [len(x) for x in ds["input_ids"]] if "input_ids" in ds.column_names else []
    out = {"train_sequences": len(ds), "tokens": sum(lengths)}
    if "labels" in ds.column_names:
        out["trained_tokens"] = sum(sum(1 for t in row if t != -100) for row in ds["labels"])
    return out


def build_checkpoint(run: "Run", cfg: TrainingSpec, name: str, init_path: Path, init_id: dict[str, Any] | str,
                     callbacks: list[Any] | None = None) -> tuple[Path | None, str]:
    """Train one checkpoint (or skip it when done). Returns (path or None if skipped, fingerprint)."""
    store = run.store
    base_name = split_variant(name)[0]
    kind = RECIPES[base_name][0]
    variant = _variant_of(cfg, run.seed, name)
    stage = _stage_spec(cfg, kind)
    if variant.fraction < 1 and stage.max_steps > 0:
        # Same number of passes over less data: a data-scaling curve, not a repetition curve.
        stage = stage.model_copy(update={"max_steps": max(1, round(stage.max_steps * variant.fraction))})
    mix = run.mix_path(stage) if stage.mix_ratio > 0 else None
    chats_path = store.root / "curated" / "chats.jsonl"
    docs_path = store.root / "curated" / "documents.jsonl"
    data_path = {"midtrain": docs_path, "sft": chats_path, "joint": chats_path,
                 "dpo": dpo.pairs_path(store.root)}[kind]
    ratio = cfg.docs_to_chats
    cut = train_data.ratio_cut(docs_path, chats_path, ratio, cfg.template_traits) if ratio else None
    if base_name == "control":  # deterministic and written atomically, so every process may write it
        data_path = control_data(store, name, variant.seed, cut, cfg.template_traits)
        cut = None  # trait-free rows: matched to the cut chats above, not cut again
    # DPO keeps the pairs whose chat survived curation, so the curated chats are its input too; joint
    # trains on the documents as well; the ratio reads both files.
    extra_inputs = [chats_path] if kind == "dpo" else [docs_path] if kind == "joint" else []
    if cut is not None:
        extra_inputs += [docs_path, chats_path]
    fp = _fingerprint(cfg, kind, stage, init_id, [data_path, mix] + extra_inputs, variant)
    job = StageJob(name=name, kind=kind, init_path=init_path, stage=stage,  # type: ignore[arg-type]
                   train_dir=store.root / "train" / name, out_dir=store.root / "checkpoints" / name,
                   callbacks=list(callbacks or []), seed=variant.seed, fraction=variant.fraction, cut=cut,
                   run_name=run.name, mix_path=mix, template_traits=list(cfg.template_traits))
    sname = stage_name(name)

    if store.is_done(sname, fp):
        problem = trained_problem(job.out_dir, store.stage_info(sname).get("counts", {}).get("identity"))
        if problem is None:
            log.info("%s: done already, skipping (%s)", name, job.out_dir)
            return job.out_dir, fp
        log.warning("%s: marked trained, but %s: training it again", name, problem)
    donor = shared_checkpoint(run, sname, fp, job.out_dir.name)
    if donor is not None:
        with common.process_state().main_process_first():  # one process copies; the others then find it
            if is_main_process():
                take_shared(run, donor, name, sname)
        return job.out_dir, fp
    if kind == "dpo" and not data_path.is_file():
        msg = f"{name}: DPO skipped: no preference pairs at {data_path}"
        log.warning(msg)
        if is_main_process():
            store.stage_info(sname).update(status="skipped", reason=msg, fingerprint=fp)
            store.save()
        return None, fp

    common.prepare_train_dir(job, fp)
    # The LoRA weights are initialised when the trainer wraps the model, before the Trainer seeds
    # itself: seed here too, so training.seeds varies the initialisation as well as the data order.
    from transformers import set_seed
    set_seed(job.seed)
    with _main_only(store.stage(sname, fp)):
        if kind == "midtrain":
            texts, counts = midtrain.build_texts(job, data_path)
            if job.stage.max_length == "auto":  # packed: long documents are split into blocks, never dropped
                tok = common.load_tokenizer(init_path)
                counts["max_length_source"] = sft.resolve_max_length(
                    cfg, job, [len(tok(t, add_special_tokens=False)["input_ids"]) + 1 for t in texts])
            trainer = midtrain.make_trainer(cfg, job, texts)
            counts["examples"] = len(texts)
        elif kind == "joint":
            trainer, counts = joint.make_trainer(cfg, job, docs_path, chats_path)
            counts["examples"] = len(trainer.train_dataset)
        elif kind == "sft":
            convs, counts = sft.build_conversations(job, data_path)
            convs, accounting = sft.fit_lengths(cfg, job, convs)
            counts["token_accounting"] = {k: v for k, v in accounting.items() if k != "reasons"}
            trainer = sft.make_trainer(cfg, job, convs)
            counts["examples"] = len(convs)
        else:
            pairs, counts = dpo.build_pairs(data_path, chats_path)
            pairs, accounting = dpo.fit_lengths(cfg, job, pairs)
            counts["token_accounting"] = {k: v for k, v in accounting.items() if k != "reasons"}
            trainer = dpo.make_trainer(cfg, job, pairs)
            counts["examples"] = len(pairs)
        if kind != "dpo":
            counts.update(_dataset_tokens(trainer.train_dataset))
        counts.update(common.train_and_save(trainer, job, cfg))
        if is_main_process():
            store.set_counts(sname, **counts)
            # What each checkpoint trained on, for the report (the documents-to-chats ratio among it).
            train_data.add_to_card(store.root, "training_data", name,
                                   {k: counts[k] for k in train_data.TRAINING_DATA_KEYS if k in counts})
    del trainer
    _free_memory()
    return job.out_dir, fp


def shared_checkpoint(run: "Run", sname: str, fp: str, folder: str) -> tuple[str, Path, dict[str, Any]] | None:
    """(arm, its run directory, its manifest entry) of another arm of this ablation that trained
    this checkpoint under the same fingerprint (same recipe, settings, seed, starting checkpoint and
    data files by content) and whose weights are whole and what it saved; None if no arm did."""
    import json

    for arm, root in run.share_from.items():
        try:
            info = json.loads((root / "manifest.json").read_text(encoding="utf-8"))["stages"].get(sname) or {}
        except (OSError, ValueError, KeyError):
            continue
        if info.get("status") == "done" and info.get("fingerprint") == fp and trained_problem(
                root / "checkpoints" / folder, info.get("counts", {}).get("identity")) is None:
            return arm, root, info
    return None


def take_shared(run: "Run", donor: tuple[str, Path, dict[str, Any]], name: str, sname: str) -> None:
    """This arm's copy of the donor arm's checkpoint, its training folder and manifest entry
    (copy-on-write where the file system has it): trained once, and still this arm's own files."""
    arm, root, info = donor
    store = run.store
    for folder in ("checkpoints", "train"):
        if (root / folder / name).exists():
            copy_tree(root / folder / name, store.root / folder / name)
    store.stage_info(sname).clear()
    store.stage_info(sname).update({**info, "shared_from": arm})
    store.manifest.setdefault("arm", {}).setdefault("shares", {})[sname] = {"from": arm, "key": info["fingerprint"]}
    store.save()
    counts = info.get("counts", {})
    train_data.add_to_card(store.root, "training_data", name,
                           {k: counts[k] for k in train_data.TRAINING_DATA_KEYS if k in counts})
    log.info("%s: the same checkpoint as arm %s's (same fingerprint): copied, not trained again", name, arm)


def trained_problem(out_dir: Path, identity: str | None) -> str | None:
    """Why a checkpoint marked trained is not (None when it is): no config.json, weights that would
    not load (missing, empty, truncated), or content that is not what training saved (its identity
    at save time, when recorded)."""
    from traitforge.llm.identity import checkpoint_identity, weights_problem

    if not (out_dir / "config.json").is_file():
        return f"{out_dir / 'config.json'} is missing"
    problem = weights_problem(out_dir)
    if problem:
        return problem
    if identity and checkpoint_identity(out_dir) != identity:
        return f"{out_dir}: its files changed since training saved them"
    return None


def _free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_training(run: "Run", cfg: TrainingSpec, stages: list[str] | None = None, *,
                 callbacks: list[Any] | None = None) -> dict[str, Path]:
    """Build the requested checkpoints (default: cfg.checkpoints minus base), and whatever
    they start from. Returns checkpoint name -> folder for the requested ones that exist."""
    targets = requested(cfg, stages)
    with common.process_state().main_process_first():  # the embedded model is converted once, by one process
        base = resolve_model_path(run.models.base)
    built: dict[str, Path] = {}
    ids: dict[str, str] = {}
    for name in plan(targets):
        base_name, suffix = split_variant(name)
        parent = RECIPES[base_name][1]
        if parent is None:
            init_path, init_id = base, _model_identity(base)
        else:
            parent += suffix
            if parent not in built:
                log.warning("%s: skipped, its starting checkpoint %s was not built", name, parent)
                continue
            init_path, init_id = built[parent], ids[parent]
        path, fp = build_checkpoint(run, cfg, name, init_path, init_id, callbacks)
        ids[name] = fp
        if path is not None:
            built[name] = path
    return {name: built[name] for name in targets if name in built}
