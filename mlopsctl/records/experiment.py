"""Experiment summaries: ``experiments/<experiment>/<run id>.json``, a few fields of a run or
trial (``mlopsctl.runs.summary``) written beside it so that listing one experiment reads only
its own runs. Every field is always there; those a run does not have are null."""

from __future__ import annotations

import re
from typing import Any, TypedDict, cast

from mlopsctl.records.codec import decode, encode
from mlopsctl.records.common import Actor

KIND = "experiment"
KEY_PATTERN = "experiments/<experiment>/<run id>.json"
KEY_RE = re.compile(r"experiments/[^/]+/[^/]+\.json")


class ExperimentSummary(TypedDict):
    id: str
    experiment: str
    pipeline: str | None  # null for a trial
    status: str
    started: str
    duration_s: float
    metrics: dict[str, Any]
    user: Actor | None  # null for a trial
    parent: str | None  # the parent run of a trial


def from_json(data: bytes) -> ExperimentSummary:
    return cast(ExperimentSummary, decode(data, KIND))


def to_json(record: ExperimentSummary) -> bytes:
    return encode(record)
