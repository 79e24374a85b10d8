"""Pipeline run records: ``runs/<run id>.json``, one per run, created once (put-if-absent) by
``mlopsctl.runs.save_run`` from the record the pipeline executor builds when the run ends
(succeeded, failed or interrupted). Tune trials share the prefix but are their own kind
(``trial``). Every field below ``RunRecord`` is always written except ``reason`` (runs a
trigger started), ``signal`` (a run a signal interrupted) and ``registered`` (only on a
returned record that was saved again). Runs in progress have a live record (``live_run``)."""

from __future__ import annotations

import re
from typing import Any, TypedDict, cast

from mlopsctl.records.codec import decode, encode
from mlopsctl.records.common import Actor, GitInfo, Host, SpecRef
from mlopsctl.records.step import StepRecord

KIND = "run"
KEY_PATTERN = "runs/<run id>.json"
# Trial ids end in -t<number>; those keys are trials, not runs.
KEY_RE = re.compile(r"runs/(?![^/]*-t[0-9]+\.json$)[^/]+\.json")
STATUSES = ("succeeded", "failed", "interrupted")


class RunEnvironment(TypedDict):
    mlopsctl: str
    python: str
    libraries: dict[str, str | None]


class Registered(TypedDict):
    model: str
    version: int
    new: bool


class _RunRequired(TypedDict):
    id: str
    kind: str  # always "pipeline"
    pipeline: str
    experiment: str
    status: str  # one of STATUSES
    spec: SpecRef
    params: dict[str, Any]
    overrides: list[str]
    started: str
    ended: str
    duration_s: float
    git: GitInfo
    user: Actor
    where: Host
    environment: RunEnvironment
    image: dict[str, Any] | None  # the container image the steps ran in, when they did
    store: str | None
    data: dict[str, str]  # "<step>.<param>" -> content digest or remote fingerprint
    order: list[str]  # step names in run order (the record's keys are sorted)
    steps: dict[str, StepRecord]
    metrics: dict[str, Any]


class RunRecord(_RunRequired, total=False):
    reason: dict[str, Any]  # why it ran: the trigger that started it
    signal: str  # the signal that interrupted it (SIGINT, SIGTERM)
    registered: Registered


def from_json(data: bytes) -> RunRecord:
    return cast(RunRecord, decode(data, KIND))


def to_json(record: RunRecord) -> bytes:
    return encode(record)
