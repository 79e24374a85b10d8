"""Lazy re-exports for a package's ``__init__`` (PEP 562): importing one module of the package
(``mlopsctl.datasets.spec`` to validate a spec) does not import every other module its
``__init__`` names (the dataset builder, the store, the records)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(
    package: str, exports: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for `package`: `exports` maps each public name to the
    submodule that defines it; a name is imported on first use and then kept."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        namespace = importlib.import_module(package)
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(namespace, name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(importlib.import_module(package)), *exports})

    return __getattr__, __dir__
