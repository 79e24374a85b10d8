"""Model versions: ``models/<name>/versions/<n>.json``, immutable, created once (put-if-absent)
by the registry when a version is registered. ``name``, ``version``, ``created``,
``registration_id`` and ``artifact`` are always there (the registry adds the first four to
whatever it registers); registering from a run, the only way the code registers, adds the run's
full provenance, all the optional fields below."""

from __future__ import annotations

import re
from typing import Any, TypedDict, cast

from mlopsctl.records.codec import decode, encode
from mlopsctl.records.common import Actor, Host

KIND = "version"
KEY_PATTERN = "models/<name>/versions/<n>.json"
KEY_RE = re.compile(r"models/[^/]+/versions/[0-9]+\.json")


class _ArtifactRequired(TypedDict):
    digest: str


class Artifact(_ArtifactRequired, total=False):
    kind: str  # "dir": a model folder
    size: int
    format: str | None  # model.json's format, mlopsctl-model/v1
    flavor: str | None
    model_json: str  # digest of model.json


class _VersionRequired(TypedDict):
    name: str
    version: int
    created: str
    registration_id: str
    artifact: Artifact


class VersionRecord(_VersionRequired, total=False):
    write_id: str  # which process wrote it (registrations racing for one artifact)
    # git, image, params, trained_* and environment are copied from the run record as it was
    # written (a version registered from an older run carries that run's shapes).
    signature: dict[str, Any]  # task, target, classes, features
    estimator: dict[str, Any]  # class, params
    run: dict[str, Any]  # id, experiment
    pipeline: dict[str, Any]  # name, spec, step
    git: dict[str, Any] | None
    image: dict[str, Any] | None
    data: dict[str, Any]  # training: {input: {digest, rows}}, sources: {step.param: digest}
    evaluation: dict[str, Any]  # step, data, outputs, metrics_output; {} without one
    params: dict[str, Any] | None
    metrics: dict[str, Any]
    who: Actor  # who registered it
    where: Host  # where it was registered
    trained_by: dict[str, Any] | None
    trained_at: str | None
    trained_on: dict[str, Any] | None
    environment: dict[str, Any]
    libraries: dict[str, Any] | None
    note: str | None


def from_json(data: bytes) -> VersionRecord:
    return cast(VersionRecord, decode(data, KIND))


def to_json(record: VersionRecord) -> bytes:
    return encode(record)
