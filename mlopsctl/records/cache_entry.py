"""Step-cache entries: ``cache/<first 2 hex>/<cache key>.json``, what a step that succeeded
produced, created once (put-if-absent) by ``mlopsctl.pipeline.cache.save``; the cache key is
the sha256 of everything that decides the step's outputs."""

from __future__ import annotations

import re
from typing import Any, TypedDict, cast

from mlopsctl.records.codec import decode, encode
from mlopsctl.records.common import OutputRef

KIND = "cache_entry"
KEY_PATTERN = "cache/<key[:2]>/<key>.json"
KEY_RE = re.compile(r"cache/[0-9a-f]{2}/[0-9a-f]+\.json")


class CacheEntry(TypedDict):
    outputs: dict[str, OutputRef]
    metrics: dict[str, Any]
    info: dict[str, Any]
    run_id: str  # the run that executed the step
    step: str
    created: str


def from_json(data: bytes) -> CacheEntry:
    return cast(CacheEntry, decode(data, KIND))


def to_json(record: CacheEntry) -> bytes:
    return encode(record)
