"""One prompt kit for every stage. Prompts are text files beside the code that uses them
(generate/prompts/, curate/prompts/, evaluate/prompts/; names are unique across stages), filled with
string.Template (`$name`), so literal braces in prompts need no escaping and a missing variable is an
error.

A run spec may name one folder (`prompts_dir`) whose `<name>.txt` files replace the package
templates of the same name, in any stage, judges included; `PromptKit` is the set a run uses,
overrides included. Generation passes its kit explicitly; curation and evaluation render through
the kit a stage made active (`with kit.active():`), the package's own when none is.
"""

from __future__ import annotations

import contextlib
import re
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from string import Template
from typing import Iterator

from traitforge.errors import InputError
from traitforge.types import stable_hash

PACKAGE_DIRS = tuple(Path(__file__).with_name(stage) / "prompts" for stage in ("generate", "curate", "evaluate"))


@lru_cache(maxsize=None)
def _package_files() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for folder in PACKAGE_DIRS:
        for path in sorted(folder.glob("*.txt")):
            if path.stem in out:  # an override file could not say which one it replaces
                raise RuntimeError(f"prompt template '{path.stem}' exists in {out[path.stem].parent} and {folder}")
            out[path.stem] = path
    return out


@lru_cache(maxsize=None)
def template_text(name: str) -> str:
    """The package's own template `name`."""
    files = _package_files()
    if name not in files:
        raise KeyError(f"no prompt template named '{name}'")
    return files[name].read_text(encoding="utf-8")


def package_names() -> set[str]:
    return set(_package_files())


def _variables(text: str) -> set[str]:
    return set(Template(text).get_identifiers())


def _fill(text: str, variables: dict[str, object]) -> str:
    return Template(text).substitute({k: str(v) for k, v in variables.items()}).strip()


def _static_parts(text: str) -> list[str]:
    return [p for p in re.split(r"\$\{?\w+\}?", text) if p.strip()]


class PromptKit:
    """The templates of one run: the package's, with the files of `overrides_dir` in their place."""

    def __init__(self, overrides_dir: Path | None = None):
        self.overrides: dict[str, str] = {}
        if overrides_dir is None:
            return
        if not overrides_dir.is_dir():
            raise InputError(f"{overrides_dir}: prompts_dir is not a folder")
        known = package_names()
        for path in sorted(overrides_dir.glob("*.txt")):
            if path.stem not in known:
                raise InputError(f"{path}: no prompt template named '{path.stem}' to override "
                                 f"(templates are: {', '.join(sorted(known))})")
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                raise InputError(f"{path}: prompt template is not UTF-8 text") from None
            template = Template(text)
            if not template.is_valid():
                raise InputError(f"{path}: invalid '$' in the template (write $$ for a literal dollar sign)")
            extra = _variables(text) - _variables(template_text(path.stem))
            if extra:  # the code would not fill them: fail now, not halfway through a paid run
                raise InputError(f"{path}: unknown variable(s) {', '.join('$' + v for v in sorted(extra))} "
                                 f"(this template can use: {', '.join(sorted(_variables(template_text(path.stem))))})")
            self.overrides[path.stem] = text

    def text(self, name: str) -> str:
        return self.overrides[name] if name in self.overrides else template_text(name)

    def has(self, name: str) -> bool:
        return name in self.overrides or name in _package_files()

    @contextlib.contextmanager
    def active(self) -> Iterator["PromptKit"]:
        """Make this the kit `render` and `lines` use, in this context and the tasks and threads
        (asyncio.to_thread) started from it."""
        token = _ACTIVE.set(self)
        try:
            yield self
        finally:
            _ACTIVE.reset(token)

    def render(self, name: str, **variables: object) -> str:
        """The template `name` with every `$var` filled; a missing one raises KeyError."""
        return _fill(self.text(name), variables)

    def render_given(self, name: str, **variables: str) -> str:
        """The template `name` with only its lines whose variables all have a non-empty value,
        filled ("" when no variable has one): for optional parts of a prompt."""
        if not any(variables.values()):
            return ""
        lines = [line for line in self.text(name).splitlines()
                 if all(variables.get(v) for v in _variables(line))]
        return _fill("\n".join(lines), variables)

    def hash(self, *names: str) -> str:
        """Changes when the text of any of these templates changes, by an edit or an override
        (part of a step's fingerprint, so a changed prompt is never mixed with old rows)."""
        return stable_hash({n: self.text(n) for n in names})

    def static_parts(self, name: str) -> list[str]:
        """The template's own wording, split at the variables: what must never leak into outputs."""
        return _static_parts(self.text(name))


PACKAGE = PromptKit()
_ACTIVE: ContextVar[PromptKit] = ContextVar("traitforge_prompts", default=PACKAGE)


def current() -> PromptKit:
    """The kit of the stage running in this context (the package's when none made one active)."""
    return _ACTIVE.get()


def render(name: str, **variables: object) -> str:
    """The template `name` of the active kit, filled."""
    return current().render(name, **variables)


def lines(name: str, **variables: object) -> list[str]:
    """The filled template's non-empty lines (a list prompt: one item per line)."""
    return [ln for ln in render(name, **variables).splitlines() if ln.strip()]


def static_parts(name: str) -> list[str]:
    return current().static_parts(name)
