"""Built-in pipeline components, imported lazily by name."""

from __future__ import annotations

import importlib
from types import ModuleType

from mlopsctl.errors import NotFound

BUILTIN = ("ingest", "split", "train", "evaluate", "tune")


def get_component(name: str) -> ModuleType:
    if name not in BUILTIN:
        import difflib

        close = difflib.get_close_matches(name, BUILTIN, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"built-in: {', '.join(BUILTIN)}"
        raise NotFound(f"unknown component '{name}'", hint)
    return importlib.import_module(f"mlopsctl.components.{name}")
