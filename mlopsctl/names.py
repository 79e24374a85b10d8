"""One grammar per kind of name that becomes part of a store key or a file name: models,
aliases, experiments, triggers, deployments (traffic arms), datasets, and version numbers.

Every grammar is ASCII only, bounded in length and matched over the whole text
(``re.fullmatch`` with ``re.ASCII``: no trailing newline slips past a ``$``, no Unicode digit
passes for a version). A name that fails is a UsageError (exit 2) stating the rule, raised
before anything is written. The JSON Schemas of the specs spell the same grammars for
``mlopsctl validate`` (their patterns end in ``$(?!\\n)``, which means the same in Python's and
ECMAScript's regular expressions); ``schema_pattern`` gives that form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mlopsctl.errors import UsageError


@dataclass(frozen=True)
class Grammar:
    what: str  # how the message names the thing
    body: str  # the regular expression, without anchors
    rule: str  # the rule, in words, for the message's hint

    def matches(self, value: object) -> bool:
        return isinstance(value, str) and re.fullmatch(self.body, value, re.ASCII) is not None


GRAMMARS: dict[str, Grammar] = {
    "model": Grammar(
        "model name",
        r"[a-z0-9][a-z0-9._-]{0,127}",
        "model names are 1 to 128 lowercase letters, digits, '.', '_' and '-', "
        "starting with a letter or digit",
    ),
    "alias": Grammar(
        "alias",
        r"[a-z][a-z0-9_-]{0,63}",
        "aliases are names, not numbers: 1 to 64 lowercase letters, digits, '_' and '-', "
        "starting with a letter (e.g. production, staging)",
    ),
    "experiment": Grammar(
        "experiment name",
        r"[a-z0-9][a-z0-9._-]{0,127}",
        "experiment names are 1 to 128 lowercase letters, digits, '.', '_' and '-', "
        "starting with a letter or digit",
    ),
    "trigger": Grammar(
        "trigger name",
        r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?",
        "trigger names are 1 to 63 lowercase letters, digits and '-', starting and ending "
        "with a letter or digit",
    ),
    "deployment": Grammar(
        "deployment name",
        r"[a-z0-9][a-z0-9._-]{0,127}",
        "deployment names are 1 to 128 lowercase letters, digits, '.', '_' and '-', "
        "starting with a letter or digit",
    ),
    "dataset": Grammar(
        "dataset name",
        r"[a-z0-9][a-z0-9._-]{0,127}",
        "dataset names are 1 to 128 lowercase letters, digits, '.', '_' and '-', "
        "starting with a letter or digit",
    ),
    "version": Grammar(
        "version",
        r"[1-9][0-9]{0,8}",
        "versions are whole numbers from 1 to 999999999, written with the digits 0-9 "
        "and no leading zero",
    ),
}

_SHOWN = 48  # characters of a rejected value that the message quotes


def check_name(kind: str, value: object) -> str:
    """`value` when it is a valid name of `kind` (a key of GRAMMARS); UsageError otherwise."""
    grammar = GRAMMARS[kind]
    if not grammar.matches(value):
        raise UsageError(f"invalid {grammar.what} {shown(value)}", grammar.rule)
    assert isinstance(value, str)
    return value


def is_name(kind: str, value: object) -> bool:
    return GRAMMARS[kind].matches(value)


def check_version(value: object) -> int:
    """A version number given as text (or an int): 1 to 999999999, ASCII digits only."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return int(check_name("version", value))


def schema_pattern(kind: str) -> str:
    """The grammar as a JSON Schema pattern (the same language in Python and ECMAScript)."""
    return f"^{GRAMMARS[kind].body}$(?!\\n)"


def shown(value: object) -> str:
    if not isinstance(value, str):
        return f"{value!r} (not text)"
    if len(value) > _SHOWN:
        return f"{value[:_SHOWN]!r}... ({len(value)} characters)"
    return repr(value)


# -- dotted parameter names -------------------------------------------------------------------
def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """{'model': {'depth': 4}} -> {'model.depth': 4}; lists and scalars are leaves. (Run
    comparison and pipeline parameter overrides name parameters by these dotted paths.)"""
    if isinstance(data, dict) and data:
        flat: dict[str, Any] = {}
        for key, value in data.items():
            flat.update(flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: data} if prefix else {}
