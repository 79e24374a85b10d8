"""Bytes to records and back, one rule for every kind: records are stored as canonical JSON
(sorted keys, compact, UTF-8; :func:`mlopsctl.digest.canonical_json`), which every writer uses
today, so ``encode(decode(b)) == b`` for any record the code wrote."""

from __future__ import annotations

import json
from typing import Any

from mlopsctl.digest import canonical_json
from mlopsctl.errors import MlopsError


class RecordInvalid(MlopsError):
    """Stored bytes that are not a record of the kind expected: not JSON, not a JSON object, or
    (from :func:`mlopsctl.records.validate_record`) not matching the kind's JSON Schema."""

    def __init__(
        self, kind: str, message: str, hint: str | None = None, *, where: str | None = None
    ) -> None:
        self.kind = kind
        self.where = where
        place = f" {where}" if where else ""
        super().__init__(f"{kind} record{place}: {message}", hint)


def decode(data: bytes, kind: str) -> dict[str, Any]:
    """The JSON object in ``data``; RecordInvalid when it is not one."""
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise RecordInvalid(
            kind, f"not JSON ({exc})", "the object was not written by mlopsctl"
        ) from None
    if not isinstance(value, dict):
        raise RecordInvalid(
            kind,
            f"a JSON {type(value).__name__} where an object was expected",
            "the object was not written by mlopsctl",
        )
    return value


def encode(record: Any) -> bytes:
    """The stored bytes of a record: canonical JSON."""
    return canonical_json(record)
