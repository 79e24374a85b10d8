"""Turn JSON Schema errors into sentences a person can act on, placed at file:line:column.

jsonschema's own messages print Python reprs ("Additional properties are not allowed ('stpes'
was unexpected)"); these name the key, the place and the likely fix instead. Schemas can tune a
message with two annotations that validators ignore:

- `x-messages`: keyword -> template, with {where}, {key} and {value} filled in;
- `x-name`: what an object is called ("step"), so messages say "step 'train'" rather than
  "steps.train".
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from mlopsctl.errors import Diagnostic
from mlopsctl.spec.loader import JsonPath, LoadedYaml

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError

_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "empty",
}
# Checks that only make sense once the type is right; a type error at the same place says it all.
_AFTER_TYPE = {"type", "required", "additionalProperties"}


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """'; did you mean 'x'?' for the closest choice, or '' when nothing is close."""
    options = [c for c in choices if isinstance(c, str)]
    lowered = {c.lower(): c for c in options}
    if word.lower() in lowered:
        return f"; did you mean '{lowered[word.lower()]}'?"
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def show_path(path: Sequence[Any]) -> str:
    """steps.train.resources, gates[0].metric: the spelling people use in docs."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def found(value: Any) -> str:
    """Describe a value for 'found ...' in a message."""
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"the string '{shown}'"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _expected(types: Any) -> str:
    names = [types] if isinstance(types, str) else list(types)
    words = [_TYPE_NAMES.get(n, n) for n in names]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _quoted_list(names: Sequence[Any]) -> str:
    shown = [f"'{n}'" for n in names]
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " or " + shown[-1]


class Explainer:
    """Maps the errors of one validation run over one loaded file."""

    def __init__(self, loaded: LoadedYaml, kind: str) -> None:
        self.loaded = loaded
        self.kind = kind
        self.done: set[tuple[JsonPath, str]] = set()
        self.unknown_keys: set[JsonPath] = set()

    def explain_all(self, errors: Iterable[ValidationError]) -> list[Diagnostic]:
        errors = list(errors)
        typed = {tuple(e.absolute_path) for e in errors if e.validator == "type"}
        out: list[Diagnostic] = []
        for error in errors:
            path = tuple(error.absolute_path)
            if self._spoiled(path):
                continue
            if path in typed and error.validator not in _AFTER_TYPE:
                continue
            out.extend(self.explain(error))
        return out

    def _spoiled(self, path: JsonPath) -> bool:
        # The loader already reported these values (duplicate key, refused tag).
        broken = self.loaded.broken
        return bool(broken) and any(path[:i] in broken for i in range(len(path) + 1))

    def where(self, path: JsonPath, schema: Any = None) -> str:
        name = schema.get("x-name") if isinstance(schema, dict) else None
        if name and path and isinstance(path[-1], str):
            return f"{name} '{path[-1]}'"
        return show_path(path) if path else self.kind.lower()

    def at_key(self, path: JsonPath, message: str) -> Diagnostic:
        line, column = self.loaded.position(path)
        return Diagnostic(self.loaded.display, line, column, message)

    def at_value(self, path: JsonPath, message: str) -> Diagnostic:
        line, column = self.loaded.value_position(path)
        return Diagnostic(self.loaded.display, line, column, message)

    def explain(self, error: ValidationError) -> list[Diagnostic]:
        path = tuple(error.absolute_path)
        schema = error.schema if isinstance(error.schema, dict) else {}
        keyword = str(error.validator)
        instance = error.instance

        if "propertyNames" in error.absolute_schema_path and isinstance(instance, str):
            # jsonschema checks a key as if it were a value at its mapping's path.
            return self.bad_key(path, instance, schema, keyword)

        template = (schema.get("x-messages") or {}).get(keyword)
        if template:
            message = template.format(
                where=self.where(path), key=path[-1] if path else "", value=instance
            )
            if keyword in ("not", "false"):
                return [self.at_key(path, message)]
            return [self.place(path, instance, message)]

        method = getattr(self, "on_" + keyword, None)
        if method is not None:
            result: list[Diagnostic] = method(error, path, schema, instance)
            return result
        return [self.place(path, instance, f"{self.where(path)}: {error.message}")]

    def found(self, path: JsonPath, instance: Any) -> str:
        surprise = self.loaded.surprises.get(path)
        if surprise is not None:
            return f"'{surprise.text}' (which YAML read as {found(instance)})"
        return found(instance)

    def place(self, path: JsonPath, instance: Any, message: str) -> Diagnostic:
        # A mapping, a list or an empty value is best pointed at by its key; a scalar by itself.
        if instance is None or isinstance(instance, (dict, list)):
            return self.at_key(path, message)
        return self.at_value(path, message)

    def bad_key(self, path: JsonPath, key: str, schema: dict[str, Any], keyword: str) -> list:
        template = (schema.get("x-messages") or {}).get(keyword)
        if template:
            message = template.format(where=self.where(path), key=key, value=key)
        else:
            message = f"'{key}' is not a valid key in {self.where(path)}"
        return [self.at_key((*path, key), message)]

    def on_additionalProperties(self, error, path, schema, instance) -> list[Diagnostic]:
        if not isinstance(instance, dict) or error.validator_value is not False:
            return [self.at_key(path, f"{self.where(path, schema)}: {error.message}")]
        known = list(schema.get("properties", {}))
        patterns = list(schema.get("patternProperties", {}))
        out = []
        for key in instance:
            if key in known or any(re.search(p, key) for p in patterns):
                continue
            if (path, "unknown " + key) in self.done:
                continue
            self.done.add((path, "unknown " + key))
            self.unknown_keys.add((*path, key))
            hint = did_you_mean(key, known)
            if not hint and known:
                hint = f"; known keys: {', '.join(known)}"
            where = self.where(path, schema)
            out.append(self.at_key((*path, key), f"unknown key '{key}' in {where}{hint}"))
        return out

    def on_required(self, error, path, schema, instance) -> list[Diagnostic]:
        out = []
        for key in error.validator_value:
            if not isinstance(instance, dict) or key in instance:
                continue
            if (path, "required " + key) in self.done:
                continue
            self.done.add((path, "required " + key))
            where = self.where(path, schema)
            out.append(self.at_key(path, f"missing required key '{key}' in {where}"))
        return out

    def on_type(self, error, path, schema, instance) -> list[Diagnostic]:
        types = error.validator_value
        wants_text = types == "string" or (isinstance(types, list) and "string" in types)
        surprise = self.loaded.surprises.get(path)
        if surprise is not None and wants_text:
            return [self.at_value(path, surprise.message())]
        where = self.where(path, schema)
        if instance is None:
            message = f"{where} must be {_expected(types)}, but it is empty"
        else:
            message = f"{where} must be {_expected(types)}, not {self.found(path, instance)}"
        if wants_text and isinstance(instance, (int, float)) and path in self.loaded.values:
            message += f'; quote it ("{instance}") to keep it as text'
        return [self.place(path, instance, message)]

    def on_enum(self, error, path, schema, instance) -> list[Diagnostic]:
        allowed = list(error.validator_value)
        surprise = self.loaded.surprises.get(path)
        if surprise is not None and surprise.text in allowed:
            return [self.at_value(path, surprise.message())]
        options = ", ".join(str(a) for a in allowed)
        hint = did_you_mean(str(instance), [str(a) for a in allowed])
        found_text = self.found(path, instance)
        message = f"{self.where(path)} must be one of {options}; found {found_text}{hint}"
        return [self.at_value(path, message)]

    def on_const(self, error, path, schema, instance) -> list[Diagnostic]:
        expected = error.validator_value
        message = f"{self.where(path)} must be {expected!r}, not {self.found(path, instance)}"
        return [self.at_value(path, message)]

    def on_pattern(self, error, path, schema, instance) -> list[Diagnostic]:
        message = f"{self.where(path)} '{instance}' does not match {error.validator_value}"
        return [self.at_value(path, message)]

    def _bound(self, error, path, instance, relation: str) -> list[Diagnostic]:
        message = f"{self.where(path)} must be {relation} {error.validator_value}, not {instance}"
        return [self.at_value(path, message)]

    def on_minimum(self, error, path, schema, instance) -> list[Diagnostic]:
        return self._bound(error, path, instance, "at least")

    def on_maximum(self, error, path, schema, instance) -> list[Diagnostic]:
        return self._bound(error, path, instance, "at most")

    def on_exclusiveMinimum(self, error, path, schema, instance) -> list[Diagnostic]:
        return self._bound(error, path, instance, "more than")

    def on_exclusiveMaximum(self, error, path, schema, instance) -> list[Diagnostic]:
        return self._bound(error, path, instance, "less than")

    def on_minLength(self, error, path, schema, instance) -> list[Diagnostic]:
        return [self.at_value(path, f"{self.where(path)} must not be empty")]

    def on_maxLength(self, error, path, schema, instance) -> list[Diagnostic]:
        limit = error.validator_value
        return [self.at_value(path, f"{self.where(path)} is longer than {limit} characters")]

    def on_minItems(self, error, path, schema, instance) -> list[Diagnostic]:
        return [self.at_key(path, self._at_least(path, error.validator_value, "item"))]

    def on_minProperties(self, error, path, schema, instance) -> list[Diagnostic]:
        return [self.at_key(path, self._at_least(path, error.validator_value, "entry"))]

    def _at_least(self, path: JsonPath, count: int, noun: str) -> str:
        if count == 1:
            return f"{self.where(path)} must not be empty"
        return f"{self.where(path)} needs at least {count} {noun}s"

    def on_uniqueItems(self, error, path, schema, instance) -> list[Diagnostic]:
        return [self.at_key(path, f"{self.where(path)} lists the same item more than once")]

    def on_oneOf(self, error, path, schema, instance) -> list[Diagnostic]:
        return self._choice(error, path, schema, instance, only_one=True)

    def on_anyOf(self, error, path, schema, instance) -> list[Diagnostic]:
        return self._choice(error, path, schema, instance, only_one=False)

    def _choice(self, error, path, schema, instance, only_one: bool) -> list[Diagnostic]:
        branches = error.validator_value
        names = [b["required"][0] for b in branches if _only_requires_one_key(b)]
        if len(names) == len(branches) and isinstance(instance, dict):
            # The "give exactly one of these keys" idiom: say so rather than quote branches.
            where = self.where(path, schema)
            present = [n for n in names if n in instance]
            if not present:
                if only_one:
                    lead = "either " if len(names) == 2 else "one of "
                else:
                    lead = "at least one of "
                return [self.at_key(path, f"{where} needs {lead}{_quoted_list(names)}")]
            both = " and ".join(f"'{n}'" for n in present)
            return [self.at_key(path, f"{where} has {both}; give only one of them")]
        if error.context:
            from jsonschema.exceptions import best_match

            return self.explain(best_match(error.context))
        return [self.place(path, instance, f"{self.where(path, schema)}: {error.message}")]

    def on_not(self, error, path, schema, instance) -> list[Diagnostic]:
        return [self.at_key(path, f"{self.where(path)} is not allowed here")]


def _only_requires_one_key(branch: Any) -> bool:
    return isinstance(branch, dict) and set(branch) == {"required"} and len(branch["required"]) == 1
