"""One step of a run, as kept in the run record under ``steps.<name>`` (never stored under a key
of its own). A skipped step is ``{"status": "skipped"}`` alone. A step that ran or came from the
cache has ``outputs`` and ``metrics`` (what the registry, lineage and gc read; the schema
requires them), and the executor writes what ran besides; a failed one has ``error``, the tail
of its log."""

from __future__ import annotations

from typing import Any, TypedDict, cast

from mlopsctl.records.codec import decode, encode
from mlopsctl.records.common import OutputRef

KIND = "step"
KEY_PATTERN = None  # embedded in runs/<run id>.json under steps.<name>
KEY_RE = None
STATUSES = ("executed", "cached", "failed", "interrupted", "skipped")


class _StepRequired(TypedDict):
    status: str  # one of STATUSES


class StepRecord(_StepRequired, total=False):
    kind: str  # component, python or run
    target: str
    cache_key: str  # 64 hex, the name of its cache entry
    params: dict[str, Any]
    inputs: dict[str, str]  # input name -> digest
    data: dict[str, str]  # file parameter -> content digest or remote fingerprint
    code: str
    seconds: float
    outputs: dict[str, OutputRef]
    metrics: dict[str, Any]
    info: dict[str, Any]
    cached_from: str | None  # the run that made the cache entry
    error: str
    workdir: str  # kept for a failed step


def from_json(data: bytes) -> StepRecord:
    return cast(StepRecord, decode(data, KIND))


def to_json(record: StepRecord) -> bytes:
    return encode(record)
