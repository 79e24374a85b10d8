"""Canary and A/B rollouts: ``rollouts/<model>/<release>.json``, the state of one release's
rollout, replaced only by compare-and-swap, one transition per write (``release rollout``).
``ended`` is there once it ended (done, rolled_back, aborted); ``last`` once a look judged it."""

from __future__ import annotations

import re
from typing import Any, TypedDict, cast

from mlopsctl.records.codec import decode, encode

KIND = "rollout"
KEY_PATTERN = "rollouts/<model>/<release>.json"
KEY_RE = re.compile(r"rollouts/[^/]+/[^/]+\.json")
STATUSES = ("running", "promoting", "done", "rolled_back", "aborted")


class VersionRef(TypedDict):
    version: int


class _RolloutRequired(TypedDict):
    model: str
    release: str
    strategy: str
    deployment: str
    alias: str
    candidate: VersionRef
    champion: VersionRef
    check: Any  # the passed check it started from
    approvals: list[str]
    steps: list[float]  # the candidate's traffic share at each step, in percent
    step: int
    status: str  # one of STATUSES
    started: str
    step_started: str
    looks: int
    reason: str | None
    history: list[dict[str, Any]]  # {time, action, ...} per transition
    seq: int
    updated: str


class RolloutState(_RolloutRequired, total=False):
    ended: str
    last: dict[str, Any]


def from_json(data: bytes) -> RolloutState:
    return cast(RolloutState, decode(data, KIND))


def to_json(record: RolloutState) -> bytes:
    return encode(record)
