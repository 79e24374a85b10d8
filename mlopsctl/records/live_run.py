"""Live records of runs in progress: ``runs/live/<run id>.json``, written when a run starts and
rewritten (plain put, by its owner only) with a fresh heartbeat until the run's final record is
saved, then deleted (``mlopsctl.runs.RunLease``). The lease guarantees the owner, the heartbeat
and ``status: running``; the rest is the executor's snapshot of the run so far (at least
``id``): its steps carry only their status (waiting, running, ...)."""

from __future__ import annotations

import re
from typing import Any, TypedDict, cast

from mlopsctl.records.codec import decode, encode
from mlopsctl.records.common import Actor, Host, SpecRef

KIND = "live_run"
KEY_PATTERN = "runs/live/<run id>.json"
KEY_RE = re.compile(r"runs/live/[^/]+\.json")


class _LiveRunRequired(TypedDict):
    id: str
    status: str  # "running"
    host: str
    pid: int
    pid_ns: str | None  # the owner's PID namespace (/proc/self/ns/pid)
    heartbeat: str
    heartbeat_s: float


class LiveRun(_LiveRunRequired, total=False):
    kind: str
    pipeline: str
    experiment: str
    spec: SpecRef
    params: dict[str, Any]
    overrides: list[str]
    started: str
    user: Actor
    where: Host
    order: list[str]
    steps: dict[str, dict[str, Any]]  # step -> {"status": ...}
    metrics: dict[str, Any]


def from_json(data: bytes) -> LiveRun:
    return cast(LiveRun, decode(data, KIND))


def to_json(record: LiveRun) -> bytes:
    return encode(record)
