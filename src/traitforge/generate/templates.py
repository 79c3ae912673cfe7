"""Prompt templates: .txt files in prompts/ beside this module, filled with string.Template
(`$name`), so literal braces in prompts need no escaping and a missing variable is an error.

A run spec may name a folder (generation.prompts_dir) whose `<name>.txt` files replace the
package templates of the same name; `Templates` is the set a run uses, overrides included."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from string import Template

from traitforge.errors import InputError
from traitforge.types import stable_hash

PROMPTS_DIR = Path(__file__).with_name("prompts")


@lru_cache(maxsize=None)
def template_text(name: str) -> str:
    """The package's own template `name`."""
    return (PROMPTS_DIR / f"{name}.txt").read_text(encoding="utf-8")


def package_names() -> set[str]:
    return {p.stem for p in PROMPTS_DIR.glob("*.txt")}


def _variables(text: str) -> set[str]:
    return set(Template(text).get_identifiers())


def _fill(text: str, variables: dict[str, object]) -> str:
    return Template(text).substitute({k: str(v) for k, v in variables.items()}).strip()


def _static_parts(text: str) -> list[str]:
    return [p for p in re.split(r"\$\{?\w+\}?", text) if p.strip()]


class Templates:
    """The templates of one run: the package's, with the files of `overrides_dir` in their place."""

    def __init__(self, overrides_dir: Path | None = None):
        self.overrides: dict[str, str] = {}
        if overrides_dir is None:
            return
        if not overrides_dir.is_dir():
            raise InputError(f"{overrides_dir}: generation.prompts_dir is not a folder")
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


PACKAGE = Templates()


def render(name: str, **variables: object) -> str:
    """The package template `name` filled (no overrides)."""
    return PACKAGE.render(name, **variables)


def static_parts(name: str) -> list[str]:
    return PACKAGE.static_parts(name)
