"""Training sets built from serving logs: ``datasets/<name>/<hex of the table's digest>.json``,
one per distinct table, created once (put-if-absent) by ``mlopsctl.datasets.save_built``
(``datasets build``, and a trigger's dataset). The record describes a Parquet table stored as a
blob: the window of prediction time it covers, the logged and mixed-in rows it holds, and the
files it was built from. Every field is always there; ``labels_through`` is null when no
outcome carried a time, ``spec`` when it was built without a Dataset spec."""

from __future__ import annotations

import re
from typing import Any, TypedDict, cast

from mlopsctl.records.codec import decode, encode
from mlopsctl.records.common import Actor, Host, SpecRef

KIND = "dataset"
KEY_PATTERN = "datasets/<name>/<hex>.json"
KEY_RE = re.compile(r"datasets/[^/]+/[0-9a-f]{64}\.json")


class DatasetWindow(TypedDict):
    since: str
    until: str
    labels_until: str  # outcomes recorded up to this time were used


class LogFiles(TypedDict):
    prefix: str  # logs/<kind>/<model>/
    files: list[dict[str, Any]]  # key, digest, size of each file read


class DatasetSources(TypedDict):
    predictions: LogFiles
    feedback: LogFiles
    mix: list[dict[str, Any]]  # source, digest, rows of each table mixed in


class DatasetRecord(TypedDict):
    name: str
    digest: str  # the Parquet table's content digest (its blob)
    rows: int
    columns: list[str]
    target: str
    format: str  # "parquet"
    window: DatasetWindow
    labels_through: str | None  # the latest outcome time used
    from_logs: dict[str, Any]  # the spec's from_logs: model, window, until, version, ...
    counts: dict[str, int]  # logged, labelled, unlabelled, duplicate, mixed rows ...
    sources: DatasetSources
    spec: SpecRef | None
    built: str
    who: Actor
    where: Host


def from_json(data: bytes) -> DatasetRecord:
    return cast(DatasetRecord, decode(data, KIND))


def to_json(record: DatasetRecord) -> bytes:
    return encode(record)
