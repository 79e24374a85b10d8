"""Audit events: ``events/<yyyy>/<mm>/<stamp>-<id>.json``, created once (put-if-absent) by
``mlopsctl.events.record_event`` and never changed. Every event has ``id``, ``type``, ``time``,
``actor`` and ``host``; the rest depends on the type, and the schema requires, per known type,
the fields its readers (audit, release checks, ct) rely on. Unknown types are allowed."""

from __future__ import annotations

import re
from typing import Any, TypedDict, cast

from mlopsctl.records.codec import decode, encode
from mlopsctl.records.common import Actor

KIND = "event"
KEY_PATTERN = "events/<yyyy>/<mm>/<stamp>-<id>.json"
KEY_RE = re.compile(r"events/[0-9]{4}/[0-9]{2}/[^/]+\.json")
# Fields each known type always has (besides the five every event has); mirrored by the
# schema's if/then clauses, checked against each other by tests/unit/test_records.py.
TYPE_FIELDS: dict[str, tuple[str, ...]] = {
    "register": ("model", "version", "run", "artifact"),
    "alias_move": ("model", "alias", "version", "previous", "action"),
    "gate": ("model", "version", "release", "passed", "gates"),
    "approval": ("model", "version", "by"),
    "promotion": ("model", "version", "alias", "release", "check"),
    "rollout": ("model", "version", "release", "action"),
    "rollback": ("model", "version", "alias", "release"),
    "traffic": ("model", "deployment", "arms"),
    "deployment": ("model",),
    "trigger": ("trigger", "firing", "fired", "run", "status"),
    "drift": ("monitor", "drift"),
    "image.push": ("project", "pipeline", "image", "tags", "digest", "image_id"),
}


class _EventRequired(TypedDict):
    id: str
    type: str
    time: str
    actor: Actor | str  # who() unless the writer names someone
    host: str


class Event(_EventRequired, total=False):
    # Fields several types share, then those of one type (TYPE_FIELDS); writers add more.
    model: str | None
    version: int | None
    alias: str
    previous: Any
    reason: str | None
    release: str
    run: str | None
    artifact: str  # register
    action: str  # alias_move, rollout
    passed: bool  # gate
    gates: list[dict[str, Any]]  # gate
    champion: dict[str, Any]  # gate: the champion it compared with (alias, version)
    by: str  # approval: who approved
    check: str  # promotion: the gate event it acted on
    deployment: str  # traffic
    arms: list[dict[str, Any]]  # traffic
    trigger: str  # trigger
    firing: str  # trigger
    fired: list[str]  # trigger: the conditions that fired
    status: str | None  # trigger: how the run it started ended
    monitor: str  # drift
    drift: bool  # drift: whether the monitor found drift
    project: str  # image.push
    pipeline: str  # image.push
    image: str  # image.push
    tags: list[str]  # image.push
    digest: str  # image.push
    image_id: str  # image.push


def from_json(data: bytes) -> Event:
    return cast(Event, decode(data, KIND))


def to_json(record: Event) -> bytes:
    return encode(record)
