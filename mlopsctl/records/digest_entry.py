"""The registry's artifact index: ``models/<name>/by-digest/<hex>.json``, which version holds an
artifact. Claimed put-if-absent before a version number is allocated (``after``, ``claimed``:
the claim), then overwritten with the version once it exists (``version``); entries made for
versions from before the index carry a null ``registration_id`` when the version had none."""

from __future__ import annotations

import re
from typing import TypedDict, cast

from mlopsctl.records.codec import decode, encode

KIND = "digest_entry"
KEY_PATTERN = "models/<name>/by-digest/<hex>.json"
KEY_RE = re.compile(r"models/[^/]+/by-digest/[0-9a-f]{64}\.json")


class _DigestEntryRequired(TypedDict):
    artifact: str
    registration_id: str | None


class DigestEntry(_DigestEntryRequired, total=False):
    version: int  # once the version exists
    after: int  # a claim: the latest version when claiming
    claimed: str


def from_json(data: bytes) -> DigestEntry:
    return cast(DigestEntry, decode(data, KIND))


def to_json(record: DigestEntry) -> bytes:
    return encode(record)
