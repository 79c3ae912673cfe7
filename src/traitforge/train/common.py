"""What every training stage shares: model loading, LoRA config, TrainingArguments, the metrics
callback, resuming from the last Trainer checkpoint, and saving a plain (merged) HF checkpoint.

Works the same in one process and under `accelerate launch` (DDP/FSDP/DeepSpeed): the Trainer does
the distribution; only the main process writes files outside the Trainer's own output.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

from traitforge.train.settings import StageTrainSpec, TrainingSpec

log = logging.getLogger("traitforge.train")

Kind = Literal["midtrain", "sft", "joint", "dpo"]

# report_to name -> module that must be importable for it
_REPORTERS = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",), "trackio": ("trackio",)}


@dataclass
class StageJob:
    """One checkpoint to build: start from `init_path`, train `kind` with `stage`, save to `out_dir`."""

    name: str  # checkpoint name: midtrain, sft, midtrain_sft, sft_dpo, ...
    kind: Kind
    init_path: Path
    stage: StageTrainSpec
    train_dir: Path  # RUN/train/<name>: metrics.jsonl, trainer/ (resumable checkpoints), final/
    out_dir: Path  # RUN/checkpoints/<name>
    callbacks: list[Any] = field(default_factory=list)  # extra TrainerCallbacks (tests, tooling)
    seed: int = 0  # training seed (training.seeds makes one checkpoint per seed)
    fraction: float = 1.0  # share of the data trained on (training.fractions: data-scaling curves)
    cut: Any = None  # data.RatioCut: the documents-to-chats ratio's shares (training.docs_to_chats)
    # From the run context (train.run.build_checkpoint): what a job needs besides training's own settings.
    run_name: str = "run"  # the spec's name: the trainer's run name is "<run_name>-<name>"
    mix_path: Path | None = None  # the stage's mix file when it mixes one in (mix_file, "generic" resolved)
    # curation.template_traits: templated rows, kept whole when the documents-to-chats ratio cuts the data
    template_traits: list[str] = field(default_factory=lambda: TrainingSpec().template_traits)

    @property
    def trainer_dir(self) -> Path:
        return self.train_dir / "trainer"


@dataclass
class StageResult:
    path: Path
    counts: dict[str, Any]


# --- process / hardware -------------------------------------------------------------------


def on_cpu() -> bool:
    import torch

    return os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes") or not torch.cuda.is_available()


def process_state() -> Any:
    """accelerate's process state, set up as the Trainer will set it up (CPU runs need cpu=True to
    see a multi-process `torchrun` launch), so ranks agree on the main process before training starts."""
    from accelerate import PartialState

    return PartialState(cpu=on_cpu())


def is_main_process() -> bool:
    return process_state().is_main_process


def wait_for_everyone() -> None:
    process_state().wait_for_everyone()


def use_bf16(setting: bool | str) -> bool:
    import torch

    if setting == "auto":
        # bf16 on CPU is slower than fp32 here; only use it on a GPU that has it.
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return bool(setting)


def _installed(reporter: str) -> bool:
    return any(importlib.util.find_spec(m) is not None for m in _REPORTERS[reporter])


def report_targets(setting: str | Sequence[str]) -> list[str]:
    """TrainingArguments.report_to for training.report_to: metrics.jsonl is always written; these are extra.

    "auto" picks tensorboard and trackio when installed, and wandb only when installed AND configured
    (WANDB_API_KEY or WANDB_MODE), since an unconfigured wandb stops the run to ask for a login.
    A list is taken as given, minus what is not installed (with a warning); [] means none."""
    if setting == "auto":
        out = [r for r in ("tensorboard", "trackio") if _installed(r)]
        if _installed("wandb") and (os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE")):
            out.append("wandb")
        return out or ["none"]
    out = []
    for name in setting:
        if _installed(name):
            out.append(name)
        else:
            log.warning("report_to %s: package not installed, not reporting there", name)
    return out or ["none"]


# --- model --------------------------------------------------------------------------------


def load_tokenizer(path: Path) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(path: Path, cfg: TrainingSpec) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    # LoRA keeps the frozen base in bf16 on GPUs that have it (adapters stay fp32 via PEFT autocast);
    # full fine-tuning keeps fp32 master weights and lets the Trainer autocast.
    lora_bf16 = cfg.method == "lora" and use_bf16(cfg.bf16)
    dtype = torch.bfloat16 if lora_bf16 else torch.float32
    return AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)


def peft_config(cfg: TrainingSpec) -> Any:
    if cfg.method != "lora":
        return None
    from peft import LoraConfig

    t = cfg
    return LoraConfig(r=t.lora_r, lora_alpha=t.lora_alpha, lora_dropout=t.lora_dropout,
                      target_modules=t.lora_target_modules, bias="none", task_type="CAUSAL_LM")


def trainer_kwargs(cfg: TrainingSpec, job: StageJob) -> dict[str, Any]:
    """TrainingArguments shared by SFTConfig and DPOConfig (TRL's own defaults are overridden on purpose)."""
    t, s = cfg, job.stage
    return dict(
        output_dir=str(job.trainer_dir),
        learning_rate=s.learning_rate,
        num_train_epochs=s.epochs,
        max_steps=s.max_steps,
        per_device_train_batch_size=s.batch_size,
        gradient_accumulation_steps=s.grad_accum,
        lr_scheduler_type=s.lr_scheduler,
        warmup_steps=s.warmup_ratio,  # a float < 1 is a ratio of the total steps
        weight_decay=s.weight_decay,
        gradient_checkpointing=t.gradient_checkpointing,
        bf16=use_bf16(t.bf16),
        fp16=False,
        use_cpu=on_cpu(),
        seed=job.seed,
        data_seed=job.seed,
        logging_steps=t.logging_steps,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        report_to=report_targets(t.report_to),
        run_name=f"{job.run_name}-{job.name}",
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataloader_pin_memory=not on_cpu(),
        remove_unused_columns=True,
    )


# --- metrics ------------------------------------------------------------------------------


def _metrics_callback_cls() -> type:
    from transformers import TrainerCallback

    class MetricsCallback(TrainerCallback):
        """Append one JSON row per logging step to RUN/train/<name>/metrics.jsonl (main process only)."""

        def __init__(self, path: Path):
            self.path = path
            self.earlier: tuple[int, float | None] = (0, None)  # set on a resume: (its step, its losses' sum)
            self._t = time.perf_counter()
            self._tokens = 0

        def on_train_begin(self, args, state, control, **kw):
            self._t, self._tokens = time.perf_counter(), state.num_input_tokens_seen

        def on_log(self, args, state, control, logs=None, **kw):
            if not state.is_world_process_zero or not logs:
                return
            log.info("%s step %d: %s", self.path.parent.name, state.global_step, logs)  # RUN/run.log
            now, tokens = time.perf_counter(), state.num_input_tokens_seen
            row = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4)}
            if "loss" in logs:
                dt = max(now - self._t, 1e-9)
                row.update(loss=logs["loss"], lr=logs.get("learning_rate"), grad_norm=logs.get("grad_norm"),
                           tokens_seen=tokens, tokens_per_s=round((tokens - self._tokens) / dt, 2))
                self._t, self._tokens = now, tokens
            elif "train_runtime" in logs:
                loss = logs.get("train_loss")
                if loss is not None:
                    loss = whole_run_loss(float(loss), state.global_step, *self.earlier)
                row.update(summary=True, train_loss=loss, runtime_s=logs["train_runtime"],
                           steps_per_s=logs.get("train_steps_per_second"))
            else:
                row.update({k: v for k, v in logs.items() if isinstance(v, (int, float))})
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")

    return MetricsCallback


def quiet_metrics(trainer: Any) -> None:
    """The Trainer's own metric lines ({'loss': ...} printed per logging step) off the screen: the
    metrics callback writes them to metrics.jsonl and the run's log instead."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    for cb in trainer.callback_handler.callbacks:
        if isinstance(cb, ProgressCallback):  # with a progress bar: the bar stays, its metric lines go
            cb.on_log = lambda *a, **k: None


def whole_run_loss(trainer_loss: float, steps: int, start: int, before: float | None) -> float:
    """The Trainer's train_loss averages the steps this process ran; after a resume from step
    `start`, add the steps before it (`before`: the sum of their losses, resume.earlier_losses)."""
    if before is None or not 0 < start < steps:
        return trainer_loss
    return (before + trainer_loss * (steps - start)) / steps


def metrics_callback(job: StageJob) -> Any:
    return _metrics_callback_cls()(job.train_dir / "metrics.jsonl")


def read_metrics(path: Path) -> list[dict[str, Any]]:
    from traitforge.jsonl import iter_jsonl_dicts

    return list(iter_jsonl_dicts(path))


# --- fingerprint / resume -----------------------------------------------------------------


def prepare_train_dir(job: StageJob, fingerprint: str) -> None:
    """Keep Trainer checkpoints only if they were made with the same inputs and settings."""
    if is_main_process():
        marker = job.train_dir / "fingerprint.txt"
        if job.train_dir.exists() and (not marker.is_file() or marker.read_text().strip() != fingerprint):
            shutil.rmtree(job.train_dir)
        job.train_dir.mkdir(parents=True, exist_ok=True)
        marker.write_text(fingerprint + "\n")
    wait_for_everyone()


def last_checkpoint(job: StageJob) -> str | None:
    """The newest complete Trainer checkpoint to resume from (resume.py); incomplete newer ones are
    removed by the main process, which every process waits for."""
    from traitforge.train.resume import usable_checkpoint

    found = usable_checkpoint(job.trainer_dir, job.name, remove=is_main_process())
    wait_for_everyone()
    return str(found) if found else None


def train_and_save(trainer: Any, job: StageJob, cfg: TrainingSpec) -> dict[str, Any]:
    """Train (resuming from the last complete Trainer checkpoint if any), then write the merged checkpoint."""
    from traitforge.llm.identity import recorded
    from traitforge.train.resume import earlier_losses

    resume = last_checkpoint(job)
    if resume:
        log.info("%s: resuming from %s", job.name, resume)
    # Read before training: the checkpoint is deleted at the end unless kept.
    start, before = earlier_losses(Path(resume) if resume else None)
    for cb in trainer.callback_handler.callbacks:
        if hasattr(cb, "earlier"):  # MetricsCallback: its summary row's train_loss covers every step too
            cb.earlier = (start, before)
    quiet_metrics(trainer)
    result = trainer.train(resume_from_checkpoint=resume)
    final = job.train_dir / "final"
    trainer.save_model(str(final))  # gathers FSDP/DeepSpeed shards; LoRA: the adapter only
    wait_for_everyone()
    identity = None
    if is_main_process():
        identity = recorded(export_checkpoint(final, job, cfg))
        if not cfg.keep_trainer_checkpoints:
            # Only needed to resume; a full fine-tune's optimizer state is twice the model's size.
            for ckpt in job.trainer_dir.glob("checkpoint-*"):
                shutil.rmtree(ckpt, ignore_errors=True)
        if cfg.method == "full":
            shutil.rmtree(final, ignore_errors=True)  # a copy of the exported checkpoint
    wait_for_everyone()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    steps = trainer.state.global_step
    train_loss = whole_run_loss(float(result.training_loss), steps, start, before)
    return {"steps": steps, "world_size": trainer.args.world_size,  # processes that trained
            "train_loss": round(train_loss, 6),
            "final_loss": losses[-1] if losses else None, "resumed_from": Path(resume).name if resume else None,
            **({"identity": identity} if identity else {})}


def export_checkpoint(final: Path, job: StageJob, cfg: TrainingSpec) -> Path:
    """RUN/checkpoints/<name>/: model (LoRA merged) + the init model's tokenizer and chat template.

    Written to a temp folder and renamed, so a crash never leaves a half checkpoint behind."""
    from transformers import AutoModelForCausalLM

    tmp = job.out_dir.with_name(job.out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if cfg.method == "lora":
        from peft import PeftModel

        base = load_model(job.init_path, cfg)
        model = PeftModel.from_pretrained(base, str(final)).merge_and_unload()
    else:
        model = AutoModelForCausalLM.from_pretrained(str(final))
    model.save_pretrained(str(tmp))
    load_tokenizer(job.init_path).save_pretrained(str(tmp))
    # Its content identity, hashed once here (identity.json): evaluation rows name the version they scored.
    from traitforge.llm.identity import checkpoint_identity

    checkpoint_identity(tmp)
    shutil.rmtree(job.out_dir, ignore_errors=True)
    job.out_dir.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, job.out_dir)
    return job.out_dir
