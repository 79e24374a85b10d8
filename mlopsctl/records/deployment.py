"""Deployments (traffic splits): ``deployments/<model>/<deployment>.json``, the weighted arms a
model's servers route requests to, replaced only by compare-and-swap (``traffic set``, or
``serve --arm``); servers poll it. Every field is always there; ``key`` is null when requests
are split by request id."""

from __future__ import annotations

import re
from typing import TypedDict, cast

from mlopsctl.records.codec import decode, encode
from mlopsctl.records.common import Actor

KIND = "deployment"
KEY_PATTERN = "deployments/<model>/<deployment>.json"
KEY_RE = re.compile(r"deployments/[^/]+/[^/]+\.json")


class Arm(TypedDict):
    arm: str  # an alias, or a version number written as text
    weight: float


class DeploymentRecord(TypedDict):
    model: str
    deployment: str
    arms: list[Arm]
    key: str | None  # the request column that keeps a caller on one arm
    seq: int
    updated: str
    by: Actor | str
    reason: str | None


def from_json(data: bytes) -> DeploymentRecord:
    return cast(DeploymentRecord, decode(data, KIND))


def to_json(record: DeploymentRecord) -> bytes:
    return encode(record)
