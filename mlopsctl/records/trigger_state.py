"""Continuous-training trigger state: ``ct/<trigger>/state.json``, the last run the trigger
started, replaced only by compare-and-swap. A due ``ct check --run`` first claims the trigger
(``last_run`` with status ``running``), then merges the run's outcome into ``last_run``.
``abandoned`` is there when the claim took over a stale one; ``inputs`` when the pipeline has
data inputs; ``ended`` once the outcome is recorded."""

from __future__ import annotations

import re
from typing import TypedDict, cast

from mlopsctl.records.codec import decode, encode

KIND = "trigger_state"
KEY_PATTERN = "ct/<trigger>/state.json"
KEY_RE = re.compile(r"ct/[^/]+/state\.json")
STATUSES = ("running", "succeeded", "failed", "interrupted")


class _LastRunRequired(TypedDict):
    firing: str
    started: str
    status: str  # one of STATUSES
    run: str | None  # null until the run is recorded (or when it never started)
    fired: list[str]


class LastRun(_LastRunRequired, total=False):
    inputs: dict[str, str]  # data input -> digest, as the check or the run read it
    ended: str


class Abandoned(TypedDict):
    firing: str | None
    started: str


class _TriggerStateRequired(TypedDict):
    trigger: str
    last_run: LastRun
    firings: int  # how many times the trigger claimed a run


class TriggerState(_TriggerStateRequired, total=False):
    abandoned: Abandoned


def from_json(data: bytes) -> TriggerState:
    return cast(TriggerState, decode(data, KIND))


def to_json(record: TriggerState) -> bytes:
    return encode(record)
