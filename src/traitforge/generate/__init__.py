"""Generation: the midtraining corpus (`documents.DocumentsRun`), SFT chats (`chats.ChatsRun`), the
generic mix and the controls' data; `run_generation` (run.py) is the stage's one entry point,
loaded on first use (traitforge.lazy)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from traitforge.lazy import entry_points

if TYPE_CHECKING:
    from traitforge.generate.run import run_generation, run_controls

__all__ = ["run_generation", "run_controls"]
__getattr__ = entry_points(__name__, "run", __all__)
