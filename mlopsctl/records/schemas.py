"""The JSON Schema (Draft 2020-12) of each record kind, in mlopsctl/spec/schemas/records/ beside
the spec schemas, and validation against it. Schemas require what every writer always writes
and leave additional properties allowed: records gain fields over time, and a reader of an
older release must not refuse a newer record. jsonschema is imported only to validate."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from mlopsctl.records.codec import RecordInvalid
from mlopsctl.records.kinds import KINDS, record_kind

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "spec" / "schemas" / "records"
COMMON_SCHEMA = "common.schema.json"


def schema_path(kind: str) -> Path:
    return SCHEMA_DIR / record_kind(kind).schema_file


@cache
def _load(file_name: str) -> dict[str, Any]:
    with open(SCHEMA_DIR / file_name, encoding="utf-8") as handle:
        return dict(json.load(handle))


def record_schema(kind: str) -> dict[str, Any]:
    """The JSON Schema of one kind of record (a shared copy: do not change it)."""
    return _load(record_kind(kind).schema_file)


@cache
def _validator(kind: str) -> Any:
    from jsonschema import Draft202012Validator
    from referencing import Registry
    from referencing.jsonschema import DRAFT202012

    # Schemas refer to each other by relative $ref (run -> step, most -> common).
    files = [COMMON_SCHEMA, *(k.schema_file for k in KINDS.values())]
    registry: Registry[Any] = Registry().with_resources(
        (_load(name)["$id"], DRAFT202012.create_resource(_load(name))) for name in files
    )
    return Draft202012Validator(record_schema(kind), registry=registry)


def _path(error: Any) -> str:
    parts = [f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path]
    return "".join(parts).lstrip(".")


def record_problems(kind: str, data: Any) -> list[str]:
    """Every way ``data`` breaks its kind's schema, as 'path: message' ('message' for the
    record as a whole), in path order; [] for a valid record."""
    errors = sorted(_validator(kind).iter_errors(data), key=lambda e: list(map(str, e.path)))
    return [f"{_path(e)}: {e.message}" if e.path else e.message for e in errors]


def validate_record(kind: str, data: Any, *, where: str | None = None) -> None:
    """RecordInvalid naming the first problem (and how many more) when ``data`` is not a valid
    record of ``kind``; ``where`` (a store key, a file) goes into the message."""
    problems = record_problems(kind, data)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise RecordInvalid(
            kind,
            f"{problems[0]}{more}",
            f"its schema is mlopsctl/spec/schemas/records/{record_kind(kind).schema_file}",
            where=where,
        )
