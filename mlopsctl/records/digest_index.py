"""The marker ``models/<name>/by-digest.json``: the artifact index holds every version up to
``through`` (those from before the index were entered once, at ``filled``)."""

from __future__ import annotations

import re
from typing import TypedDict, cast

from mlopsctl.records.codec import decode, encode

KIND = "digest_index"
KEY_PATTERN = "models/<name>/by-digest.json"
KEY_RE = re.compile(r"models/[^/]+/by-digest\.json")


class DigestIndex(TypedDict):
    filled: str
    through: int  # 0: the index was there from the model's first version


def from_json(data: bytes) -> DigestIndex:
    return cast(DigestIndex, decode(data, KIND))


def to_json(record: DigestIndex) -> bytes:
    return encode(record)
