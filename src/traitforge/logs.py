"""Where messages go: the user's screen gets the stage lines and one progress bar per step; library
warnings (FutureWarning and the like), transformers' notices and traitforge's own INFO lines go to
the run's log, RUN/run.log, where they can still be read."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

LOG_FILE = "run.log"
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Loggers whose records belong in the run's log: ours, Python warnings, and the ML libraries.
_LOGGERS = ("traitforge", "py.warnings", "transformers", "trl", "peft", "accelerate", "datasets", "torch")
_handler: logging.FileHandler | None = None


def log_to_run(run_root: Path) -> Path:
    """Send the loggers above to RUN/run.log (appending; a resumed run adds to it). One run at a
    time per process: opening another run moves the log there."""
    global _handler
    path = Path(run_root) / LOG_FILE
    if _handler is not None and Path(_handler.baseFilename) == path.resolve():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    new = logging.FileHandler(path, encoding="utf-8")
    new.setFormatter(logging.Formatter(_FORMAT))
    new.setLevel(logging.INFO)
    for name in _LOGGERS:
        lg = logging.getLogger(name)
        if _handler is not None:
            lg.removeHandler(_handler)
        lg.addHandler(new)
    # Our INFO lines (timings, skips) too; the libraries keep their own levels (warnings and up),
    # so their debug chatter never reaches any handler.
    ours = logging.getLogger("traitforge")
    if ours.level == logging.NOTSET or ours.level > logging.INFO:
        ours.setLevel(logging.INFO)
    if _handler is not None:
        _handler.close()
    _handler = new
    return path


def quiet_screen() -> None:
    """For the command line: warnings and library notices go to the run's log only (see
    log_to_run), and the libraries' own progress bars (loading weights, writing shards) are off.
    traitforge's warnings still reach the screen."""
    logging.captureWarnings(True)  # warnings.warn -> the "py.warnings" logger -> the run's log
    warnings.simplefilter("default")  # each distinct warning once, not the interpreter's filters' silence
    logging.getLogger("py.warnings").propagate = False
    screen = logging.StreamHandler()
    screen.setLevel(logging.WARNING)
    screen.setFormatter(logging.Formatter("traitforge: %(levelname)s: %(message)s"))
    ours = logging.getLogger("traitforge")
    ours.addHandler(screen)
    ours.propagate = False
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.disable_default_handler()  # its records still reach the run's log (handler above)
    except ImportError:
        pass
    # datasets (TRL's tokenizing and truncating passes) reads this when it is imported: no import here.
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    try:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    except ImportError:
        pass
    for name in ("transformers", "trl", "peft", "accelerate", "datasets", "torch"):
        logging.getLogger(name).propagate = False
