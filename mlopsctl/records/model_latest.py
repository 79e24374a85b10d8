"""The latest-version hint: ``models/<name>/latest.json``, overwritten (plain put) after each
registration so that finding a model's latest version needs no listing. Only a hint: readers
check that the version exists and look past it."""

from __future__ import annotations

import re
from typing import TypedDict, cast

from mlopsctl.records.codec import decode, encode

KIND = "model_latest"
KEY_PATTERN = "models/<name>/latest.json"
KEY_RE = re.compile(r"models/[^/]+/latest\.json")


class LatestHint(TypedDict):
    version: int


def from_json(data: bytes) -> LatestHint:
    return cast(LatestHint, decode(data, KIND))


def to_json(record: LatestHint) -> bytes:
    return encode(record)
