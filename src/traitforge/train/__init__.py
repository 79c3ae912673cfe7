"""Training stage: midtraining, SFT and optional DPO with TRL + PEFT + accelerate (see run.py)."""

from traitforge.train.run import run_training

__all__ = ["run_training"]
