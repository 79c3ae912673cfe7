"""Training variants' names (training.seeds, training.fractions): "<checkpoint>.s<k>", "<checkpoint>.f<x>".
Training builds them; the run context lists the trained ones for the evaluation."""

from __future__ import annotations

from dataclasses import dataclass

from traitforge.train.settings import TrainingSpec


@dataclass(frozen=True)
class Variant:
    suffix: str  # "" for the main run
    seed: int
    fraction: float = 1.0


def variants(cfg: TrainingSpec, seed: int) -> list[Variant]:
    """The main run (the run's seed), then one per extra seed and one per data fraction."""
    out = [Variant("", seed)]
    out += [Variant(f".s{k}", seed + k) for k in range(1, cfg.seeds)]
    out += [Variant(f".f{f:g}", seed, f) for f in cfg.fractions]
    return out


def split_variant(name: str) -> tuple[str, str]:
    """"midtrain_sft.f0.25" -> ("midtrain_sft", ".f0.25")."""
    base, dot, rest = name.partition(".")
    return base, dot + rest


def variant_names(cfg: TrainingSpec, names: list[str]) -> list[str]:
    """Every (checkpoint, variant) name; base is not trained and has no variants."""
    return [n + v.suffix for v in variants(cfg, 0) for n in names if n != "base"]
