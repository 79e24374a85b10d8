"""Alias moves. One record shape under two keys, both written by the registry's alias move:

- ``models/<name>/aliases/<alias>.json``, the alias itself: the latest move, replaced only by
  compare-and-swap;
- ``models/<name>/alias-history/<alias>/<seq, 10 digits>.json``, every move, created once
  (put-if-absent) and never rewritten.

Every field is always there; ``previous`` is null on an alias's first move."""

from __future__ import annotations

import re
from typing import TypedDict, cast

from mlopsctl.records.codec import decode, encode
from mlopsctl.records.common import Actor

KIND = "alias_move"
KEY_PATTERN = "models/<name>/aliases/<alias>.json | models/<name>/alias-history/<alias>/<seq>.json"
KEY_RE = re.compile(r"models/[^/]+/(aliases/[^/]+|alias-history/[^/]+/[0-9]+)\.json")


class AliasMove(TypedDict):
    id: str  # this move's id (how a mover recognises its own write)
    model: str
    alias: str
    version: int
    previous: int | None
    seq: int  # 1 for the alias's first move
    time: str
    by: Actor
    reason: str | None
    action: str  # set, rollback, ...
    artifact: str  # the version's artifact digest


def from_json(data: bytes) -> AliasMove:
    return cast(AliasMove, decode(data, KIND))


def to_json(record: AliasMove) -> bytes:
    return encode(record)
