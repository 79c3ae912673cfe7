"""Training stage: midtraining, SFT and optional DPO with TRL + PEFT + accelerate (see run.py, loaded
on first use: importing the package or its settings loads no torch)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from traitforge.lazy import entry_points

if TYPE_CHECKING:
    from traitforge.train.run import run_training

__all__ = ["run_training"]
__getattr__ = entry_points(__name__, "run", __all__)
