"""`${params.x}` / `${env.X}` interpolation and `-p a.b=value` overrides."""

from __future__ import annotations

import copy
import difflib
import os
import re
from collections.abc import Callable
from typing import Any

from mlopsctl.errors import UsageError
from mlopsctl.names import flatten  # run records and -p overrides name params alike

__all__ = [
    "InterpolationError",
    "UnsetVariable",
    "apply_overrides",
    "flatten",
    "interpolate",
    "lookup",
    "parse_override",
    "reference_value",
    "value_text",
]

_REF = re.compile(r"\$\{\s*(params|env)\.([A-Za-z0-9_.\-]+)\s*\}")
_MISSING = object()


class InterpolationError(Exception):
    """A reference that cannot be resolved; the caller attaches the spec position."""


class UnsetVariable(InterpolationError):
    """${env.X} names a variable that is not set."""


def lookup(params: dict[str, Any], dotted: str) -> Any:
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _suggest(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def parse_override(text: str) -> tuple[str, Any]:
    """'model.max_depth=6' -> ('model.max_depth', 6); the value is read as a YAML scalar."""
    import yaml

    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UsageError(
            f"bad -p value {text!r}", "write it as -p name=value, e.g. -p model.max_depth=6"
        )
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def apply_overrides(params: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """A deep copy of params with each override applied; an unknown key is a usage error so a
    typo never silently runs the default."""
    result = copy.deepcopy(params)
    known = sorted(set(flatten(params)) | _branches(params))
    for text in overrides:
        key, value = parse_override(text)
        parts = key.split(".")
        parent = lookup(result, ".".join(parts[:-1])) if len(parts) > 1 else result
        if not isinstance(parent, dict) or parts[-1] not in parent:
            raise UsageError(
                f"unknown parameter '{key}' in -p {text}{_suggest(key, known)}",
                f"parameters of this pipeline: {', '.join(sorted(flatten(params))) or 'none'}",
            )
        parent[parts[-1]] = value
    return result


def _branches(params: dict[str, Any], prefix: str = "") -> set[str]:
    names: set[str] = set()
    for key, value in params.items():
        if isinstance(value, dict):
            names.add(prefix + key)
            names |= _branches(value, f"{prefix}{key}.")
    return names


def interpolate(
    value: Any,
    params: dict[str, Any],
    on_error: Callable[[tuple, str], None],
    path: tuple = (),
    unset_env: set[str] | None = None,
) -> Any:
    """Resolve references in every string inside `value`. A string that is exactly one
    reference takes the referenced value itself (a dict stays a dict, 6 stays an int); a
    reference inside longer text is formatted into it. Problems go to on_error(path, msg).

    With `unset_env` (a static check, which runs without the run's environment), a ${env.X}
    whose variable is not set is no problem: its name is added to the set and the reference
    stays as written. `run:` commands are not rendered here (see plan.py and command.py)."""
    if isinstance(value, dict):
        return {
            k: interpolate(v, params, on_error, (*path, k), unset_env) for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            interpolate(v, params, on_error, (*path, i), unset_env) for i, v in enumerate(value)
        ]
    if not isinstance(value, str) or "${" not in value:
        return value

    def resolve(match: re.Match[str]) -> Any:
        try:
            return reference_value(match.group(1), match.group(2), params)
        except UnsetVariable:
            if unset_env is None:
                raise
            unset_env.add(match.group(2))
            return match.group(0)

    try:
        whole = _REF.fullmatch(value.strip())
        if whole:
            return resolve(whole)
        return _REF.sub(lambda m: value_text(resolve(m)), value)
    except InterpolationError as exc:
        on_error(path, str(exc))
        return value


def reference_value(kind: str, name: str, params: dict[str, Any]) -> Any:
    """The value of ${params.name} or ${env.name}, or InterpolationError saying why not."""
    if kind == "env":
        found = os.environ.get(name)
        if found is None:
            raise UnsetVariable(f"environment variable {name} is not set (in ${{env.{name}}})")
        return found
    value = lookup(params, name)
    if value is _MISSING:
        known = sorted(set(flatten(params)) | _branches(params))
        raise InterpolationError(
            f"unknown parameter '{name}' in ${{params.{name}}}{_suggest(name, known)}"
        )
    return value


def value_text(value: Any) -> str:
    """A value as it is written into text: true/false, a mapping or list as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        import json

        return json.dumps(value, sort_keys=True)
    return str(value)
