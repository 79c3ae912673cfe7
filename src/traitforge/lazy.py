"""A stage package's light `__init__`: its entry points load on first use (PEP 562), so importing the
package, or its settings module (which `traitforge.config` reads), runs none of the stage's code."""

from __future__ import annotations

import importlib
from typing import Any, Callable, Sequence


def entry_points(package: str, module: str, names: Sequence[str]) -> Callable[[str], Any]:
    """The package's module `__getattr__`: each of `names` taken from `package.module` when first asked
    for; any other name is an AttributeError (so `from package import submodule` still works)."""

    def __getattr__(name: str) -> Any:
        if name in names:
            return getattr(importlib.import_module(f"{package}.{module}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
