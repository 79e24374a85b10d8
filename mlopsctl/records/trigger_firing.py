"""Trigger history: ``ct/<trigger>/history/<firing id>.json``, one record per firing acted
upon, created once (put-if-absent) once its run ended: the check's result (conditions, cooldown,
claim in progress, why) with the firing id and the run's outcome. Every field is always there;
``run.error`` only when the run failed, ``run.state_error`` when the state could not be
updated."""

from __future__ import annotations

import re
from typing import Any, TypedDict, cast

from mlopsctl.records.codec import decode, encode

KIND = "trigger_firing"
KEY_PATTERN = "ct/<trigger>/history/<firing id>.json"
KEY_RE = re.compile(r"ct/[^/]+/history/[^/]+\.json")


class _OutcomeRequired(TypedDict):
    id: str | None  # the run; null when it never started
    status: str
    registered: dict[str, Any] | None


class Outcome(_OutcomeRequired, total=False):
    error: str
    state_error: str
    signal: str  # the signal that interrupted the run
    then: dict[str, Any]  # what the trigger's then: chained after it


class TriggerFiring(TypedDict):
    trigger: str
    firing: str
    spec: str
    checked_at: str
    pipeline: str
    model: str | None  # name@alias of the champion
    champion: dict[str, Any] | None
    conditions: list[dict[str, Any]]  # {condition, fired, why, ...}
    fired: list[str]
    cooldown: dict[str, Any] | None
    running: dict[str, Any] | None
    due: bool
    why: str
    run: Outcome


def from_json(data: bytes) -> TriggerFiring:
    return cast(TriggerFiring, decode(data, KIND))


def to_json(record: TriggerFiring) -> bytes:
    return encode(record)
