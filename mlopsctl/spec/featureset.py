"""Checks of a FeatureSet spec that its schema cannot express: every column named once among
the entity keys, the timestamps and the features."""

from __future__ import annotations

from typing import Any

from mlopsctl.errors import Diagnostic
from mlopsctl.spec.loader import LoadedYaml


def featureset_problems(loaded: LoadedYaml, data: dict[str, Any]) -> list[Diagnostic]:
    """A column named twice (two features, a feature that is also a key or a timestamp)."""
    problems: list[Diagnostic] = []
    seen: dict[str, tuple[str, str]] = {}

    def claim(name: Any, path: tuple[Any, ...], what: str, shown: str) -> None:
        if not isinstance(name, str):
            return
        first = seen.get(name)
        if first is None:
            seen[name] = (what, shown)
            return
        line, column = loaded.position(path)
        if first[0] == what:
            message = f"{what} '{name}' is declared twice (first at {first[1]})"
        else:
            message = f"{what} '{name}' is also the {first[0]} ({first[1]}); a column has one role"
        problems.append(Diagnostic(loaded.display, line, column, message))

    for i, entity in enumerate(data.get("entities") or []):
        if isinstance(entity, dict):
            claim(entity.get("name"), ("entities", i), "entity key", f"entities[{i}]")
    claim(data.get("timestamp"), ("timestamp",), "timestamp", "timestamp")
    created = data.get("created_timestamp")
    claim(created, ("created_timestamp",), "created_timestamp", "created_timestamp")
    for i, feature in enumerate(data.get("features") or []):
        if isinstance(feature, dict):
            claim(feature.get("name"), ("features", i), "feature", f"features[{i}]")
    return problems
