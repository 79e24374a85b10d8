"""Model versions: ``models/<name>/versions/<n>.json``, immutable, created once (put-if-absent)
by the registry when a version is registered. ``name``, ``version``, ``created``,
``registration_id`` and ``artifact`` are always there (the registry adds the first four to
whatever it registers); registering from a run, the only way the code registers, adds the run's
full provenance, all the optional fields below."""

from __future__ import annotations

import re
from typing import Any, TypedDict, cast

from mlopsctl.records.codec import decode, encode
from mlopsctl.records.common import Actor, GitInfo, Host, SpecRef

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


class DataRef(TypedDict, total=False):
    """A dataset the model was trained or evaluated on: its digest and, when the step that
    produced it said, its row count."""

    digest: str
    rows: int | None


class Signature(TypedDict, total=False):
    """What model.json says the model takes and gives (any of them None in an old model)."""

    task: str | None
    target: str | None
    classes: list[Any] | None
    features: list[dict[str, Any]] | None  # name, dtype, kind


class VersionRun(TypedDict, total=False):
    id: str
    experiment: str | None


class VersionPipeline(TypedDict, total=False):
    name: str | None
    spec: SpecRef | None  # the run's spec
    step: str


class VersionData(TypedDict, total=False):
    training: dict[str, DataRef]  # input name -> data
    sources: dict[str, str]  # "<step>.<param>" -> digest


class Evaluation(TypedDict, total=False):
    """The step whose metrics the version carries; {} when they are the training step's."""

    step: str
    data: dict[str, DataRef]
    outputs: dict[str, Any]  # output name -> stored output reference
    metrics_output: str


class _BodyRequired(TypedDict):
    artifact: Artifact


class VersionBody(_BodyRequired, total=False):
    """What is registered: the artifact and, registering from a run, its provenance. The
    registry adds the identity (``VersionRecord``)."""

    # git, image, params, trained_* and environment are copied from the run record as it was
    # written (a version registered from an older run carries that run's shapes).
    signature: Signature
    estimator: dict[str, Any]  # class, params
    run: VersionRun
    pipeline: VersionPipeline
    git: GitInfo | None
    image: dict[str, Any] | None
    data: VersionData
    evaluation: Evaluation
    params: dict[str, Any] | None
    metrics: dict[str, Any]
    who: Actor  # who registered it
    where: Host  # where it was registered
    trained_by: Actor | None
    trained_at: str | None
    trained_on: Host | None
    environment: dict[str, Any]
    libraries: dict[str, Any] | None
    note: str | None
    feature_sets: list[dict[str, Any]]  # the feature sets its training data joined: name, digest
    reason: dict[str, Any]  # why the run that trained it was started (a trigger's firing)


class _Identity(VersionBody):
    name: str
    version: int
    created: str
    registration_id: str


class VersionRecord(_Identity, total=False):
    write_id: str  # which process wrote it (registrations racing for one artifact)


class RegisteredVersion(VersionRecord, total=False):
    """What registering returns: the stored record, and ``existing`` (never stored) when the
    artifact already had this version."""

    existing: bool


def from_json(data: bytes) -> VersionRecord:
    return cast(VersionRecord, decode(data, KIND))


def to_json(record: VersionRecord) -> bytes:
    return encode(record)
