"""Tune trials: ``runs/<parent run id>-t<nnn>.json``, one child run per hyperparameter set a
tune step tried, created once (put-if-absent) by the tune component through
``mlopsctl.runs.save_run``. ``error`` is there only when the trial failed."""

from __future__ import annotations

import re
from typing import Any, TypedDict, cast

from mlopsctl.records.codec import decode, encode

KIND = "trial"
KEY_PATTERN = "runs/<parent run id>-t<nnn>.json"
KEY_RE = re.compile(r"runs/[^/]+-t[0-9]+\.json")
STATUSES = ("succeeded", "failed")


class _TrialRequired(TypedDict):
    id: str
    kind: str  # always "trial"
    parent: str
    step: str
    experiment: str
    params: dict[str, Any]
    status: str  # one of STATUSES
    metrics: dict[str, float]
    estimator_class: str
    started: str
    duration_s: float


class TrialRecord(_TrialRequired, total=False):
    error: str


def from_json(data: bytes) -> TrialRecord:
    return cast(TrialRecord, decode(data, KIND))


def to_json(record: TrialRecord) -> bytes:
    return encode(record)
