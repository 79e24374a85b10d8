"""Stored records as types: one module per kind of record (run, trial, live_run, step,
experiment, cache_entry, version, alias_move, model_latest, digest_entry, digest_index, event,
trigger_state, trigger_firing, deployment, rollout, image, dataset), each with its TypedDict, its
``KIND`` name, the store key pattern it lives under and ``from_json``/``to_json``; every kind
has a JSON Schema checked by :func:`validate_record`. Part of the ground floor: no heavy
imports (jsonschema only to validate)."""

from mlopsctl.records import (
    alias_move,
    cache_entry,
    dataset,
    deployment,
    digest_entry,
    digest_index,
    event,
    experiment,
    image,
    live_run,
    model_latest,
    rollout,
    run,
    step,
    trial,
    trigger_firing,
    trigger_state,
    version,
)
from mlopsctl.records.alias_move import AliasMove
from mlopsctl.records.cache_entry import CacheEntry
from mlopsctl.records.codec import RecordInvalid, decode, encode
from mlopsctl.records.common import Actor, GitInfo, Host, OutputRef, SpecRef
from mlopsctl.records.dataset import DatasetRecord
from mlopsctl.records.deployment import DeploymentRecord
from mlopsctl.records.digest_entry import DigestEntry
from mlopsctl.records.digest_index import DigestIndex
from mlopsctl.records.event import Event
from mlopsctl.records.experiment import ExperimentSummary
from mlopsctl.records.image import ImageRecord
from mlopsctl.records.kinds import KINDS, RecordKind, decode_stored, kind_of_key, record_kind
from mlopsctl.records.live_run import LiveRun
from mlopsctl.records.model_latest import LatestHint
from mlopsctl.records.rollout import RolloutState
from mlopsctl.records.run import RunRecord
from mlopsctl.records.schemas import (
    SCHEMA_DIR,
    record_problems,
    record_schema,
    schema_path,
    validate_record,
)
from mlopsctl.records.step import StepRecord
from mlopsctl.records.trial import TrialRecord
from mlopsctl.records.trigger_firing import TriggerFiring
from mlopsctl.records.trigger_state import TriggerState
from mlopsctl.records.version import VersionRecord

__all__ = [
    "KINDS",
    "SCHEMA_DIR",
    "Actor",
    "AliasMove",
    "CacheEntry",
    "DatasetRecord",
    "DeploymentRecord",
    "DigestEntry",
    "DigestIndex",
    "Event",
    "ExperimentSummary",
    "GitInfo",
    "Host",
    "ImageRecord",
    "LatestHint",
    "LiveRun",
    "OutputRef",
    "RecordInvalid",
    "RecordKind",
    "RolloutState",
    "RunRecord",
    "SpecRef",
    "StepRecord",
    "TrialRecord",
    "TriggerFiring",
    "TriggerState",
    "VersionRecord",
    "alias_move",
    "cache_entry",
    "dataset",
    "decode",
    "decode_stored",
    "deployment",
    "digest_entry",
    "digest_index",
    "encode",
    "event",
    "experiment",
    "image",
    "kind_of_key",
    "live_run",
    "model_latest",
    "record_kind",
    "record_problems",
    "record_schema",
    "rollout",
    "run",
    "schema_path",
    "step",
    "trial",
    "trigger_firing",
    "trigger_state",
    "validate_record",
    "version",
]
