"""Registering versions: from a run (register_from_run: `models register` and a pipeline's
`register:` block) or from a record built elsewhere (register_version). The model blob is
always in the store before a record points at it, and version numbers are allocated with
put-if-absent, so N concurrent registrations of N models get N distinct versions.

One artifact is one version. Versions are indexed by artifact digest: the entry
``models/<name>/by-digest/<hex>.json`` is claimed put-if-absent BEFORE a number is allocated,
and every registration of the artifact goes through it:

1. Claim: put-if-absent ``{"registration_id": R, "after": L}``, where L is the latest version
   when claiming. One registration wins the claim; every other one reads the winner's.
2. Allocate: the version record, carrying R, goes to the first number above L that is free.
   This step is not the winner's alone: whoever reads a claim without a version does it too.
   They cannot make two versions: each walks the numbers above L in order, passes a number only
   once it has read there a record of another registration (records are immutable), and stops
   at the first number that holds R or that it writes R into. So all of them stop at the same
   number, the lowest that ever holds R, and no other number can hold R. A walker that falls
   behind jumps ahead only after reading the records it jumps over.
3. Finish: the entry becomes ``{"version": N, "registration_id": R}``. Every participant
   writes the same bytes, so the order of these writes does not matter.

A registration killed anywhere leaves either no claim (nothing happened), a claim with no
version (the next registration of the artifact allocates it), or a claim whose version exists
(the next one finds it above L and finishes the entry): never a version that cannot be found
again, nor a second version of the artifact. Only the process whose own write created the
record (its ``write_id``, drawn afresh by each process, tells; the records of two processes can
otherwise be byte for byte the same) reports "registered" and records the register event; every
other one returns it with ``existing: True`` ("already registered as N").

Stores from before the index: on the first miss the existing versions are read once and
entered (put-if-absent, oldest first, so a version registered meanwhile keeps its claim), then
``models/<name>/by-digest.json`` marks the index filled. register_version still makes a new
version of an artifact that has one (a copy, e.g. to re-register with a note); the entry keeps
pointing at the first.
"""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from mlopsctl import __version__
from mlopsctl.digest import canonical_json
from mlopsctl.errors import AlreadyExists, Conflict, IntegrityError, NotFound, UsageError
from mlopsctl.events import record_event
from mlopsctl.provenance import where, who
from mlopsctl.records import RecordInvalid, digest_entry
from mlopsctl.registry.fetch import model_facts
from mlopsctl.registry.keys import digest_index_key, digest_key, latest_key, version_key
from mlopsctl.registry.refs import check_name
from mlopsctl.registry.versions import get_version, latest_version, version_numbers
from mlopsctl.timeutil import stamp

if TYPE_CHECKING:
    from mlopsctl.records.common import Actor, Host, OutputRef
    from mlopsctl.records.live_run import LiveRun
    from mlopsctl.records.run import RunRecord
    from mlopsctl.records.step import StepRecord
    from mlopsctl.records.trial import TrialRecord
    from mlopsctl.records.version import (
        DataRef,
        Evaluation,
        RegisteredVersion,
        VersionBody,
        VersionRecord,
    )
    from mlopsctl.store.base import ObjectStore

_MAX_ALLOCATION_TRIES = 200


# -- the public entry points -------------------------------------------------------------------
def register_version(store: ObjectStore, name: str, record: VersionBody) -> RegisteredVersion:
    """Write `record` as a new version of `name`. The artifact blob must already be in the
    store (checked here), so no version can point at a missing blob. The first version of an
    artifact is claimed in the digest index; a later one is a copy with a number of its own."""
    check_name(name)
    digest = _check_blob(store, record)
    if _entry(store, name, digest) is None:
        claim = _claim(store, name, digest)
        if claim.get("mine"):
            full, _ = _allocate_claimed(store, name, record, claim)
            return _returned(full)
    return _returned(_allocate_copy(store, name, record))


def register_from_run(
    store: ObjectStore,
    found: RunRecord | LiveRun | TrialRecord,
    name: str,
    output: str,
    metrics: str | None = None,
    note: str | None = None,
) -> RegisteredVersion:
    """Register the model a run produced at `output` ("step.output"), with the run's
    provenance: pipeline, spec, commit, image, data digests and rows, params, metrics. An
    artifact that already has a version of `name` is that version (``existing: True``)."""
    check_name(name)
    if found.get("status") != "succeeded":
        raise UsageError(
            f"run {found['id']} did not succeed ({found.get('status')})",
            "register models from succeeded runs only",
        )
    # A live record is never "succeeded"; a trial is, and has no outputs (refused below).
    run = cast("RunRecord", found)
    steps = run.get("steps") or {}
    known = [f"{s}.{o}" for s, r in steps.items() for o in r.get("outputs") or {}]
    for wanted in (output, metrics):
        if wanted and wanted not in known:
            raise NotFound(
                f"run {run['id']} has no output '{wanted}'", f"outputs: {', '.join(known)}"
            )
    step_name, out = _step_of(output)
    step = steps[step_name]
    artifact = cast("OutputRef", dict(step["outputs"][out]))
    if artifact.get("kind") != "dir":
        raise UsageError(
            f"output '{output}' of run {run['id']} is a file, not a model folder",
            "register the model output of a train or tune step (e.g. train.model)",
        )
    # A re-run served from the cache made the very same model: no new version, and no need to
    # read the model or write anything to know it.
    entry = _entry(store, name, artifact["digest"])
    if entry is not None and "version" in entry:
        return _returned(_indexed(store, name, artifact["digest"], entry), existing=True)
    model_json, model_json_digest = model_facts(store, artifact["digest"])

    def data_of(step_record: StepRecord, skip: str | None = None) -> dict[str, DataRef]:
        used: dict[str, DataRef] = {}
        for input_name, digest in (step_record.get("inputs") or {}).items():
            if digest == skip:
                continue
            used[input_name] = {"digest": digest, "rows": _rows_for(steps, digest)}
        return used

    evaluation: Evaluation = {}
    version_metrics: dict[str, Any] = dict(step.get("metrics") or {})
    if metrics:
        metrics_step_name, metrics_out = _step_of(metrics)
        metrics_step = steps[metrics_step_name]  # checked above: it has the output
        version_metrics = dict(metrics_step.get("metrics") or {})
        evaluation = {
            "step": metrics_step_name,
            "data": data_of(metrics_step, skip=artifact["digest"]),
            "outputs": metrics_step.get("outputs") or {},
            "metrics_output": metrics_out,
        }
    record = version_record(
        run,
        step_name,
        artifact,
        model_json,
        model_json_digest,
        training_data=data_of(step),
        evaluation=evaluation,
        metrics=version_metrics,
        note=note,
    )
    return _register_once(store, name, record)


def _feature_sets(run: RunRecord) -> list[dict[str, Any]]:
    """The feature sets (with their content digests) the run's steps joined (ingest's
    `features:`); [] when none did."""
    found: dict[str, Any] = {}
    for step in (run.get("steps") or {}).values():
        for item in (step.get("info") or {}).get("feature_sets") or []:
            found.setdefault(item["name"], item)
    return list(found.values())


def version_record(
    run: RunRecord,
    step_name: str,
    artifact: OutputRef,
    model_json: dict[str, Any],
    model_json_digest: str,
    *,
    training_data: dict[str, DataRef],
    evaluation: Evaluation,
    metrics: dict[str, Any],
    note: str | None = None,
) -> VersionBody:
    """The body of a version record: the model (`artifact`, the run's output reference, with
    what its model.json says) and its provenance from `run`, who registers it and where.
    Registering adds the identity (name, version, created, registration_id)."""
    body: VersionBody = {
        "artifact": {
            **artifact,
            "format": model_json.get("format"),
            "flavor": model_json.get("flavor"),
            "model_json": model_json_digest,
        },
        "signature": {
            "task": model_json.get("task"),
            "target": model_json.get("target"),
            "classes": model_json.get("classes"),
            "features": model_json.get("features"),
        },
        "estimator": {
            "class": model_json.get("estimator_class"),
            "params": model_json.get("params"),
        },
        "run": {"id": run["id"], "experiment": run.get("experiment")},
        "pipeline": {"name": run.get("pipeline"), "spec": run.get("spec"), "step": step_name},
        "git": run.get("git"),
        "image": run.get("image"),
        "data": {"training": training_data, "sources": run.get("data") or {}},
        "evaluation": evaluation,
        "params": run.get("params"),
        "metrics": metrics,
        # provenance builds these untyped; their shapes are records.common's Actor and Host.
        "who": cast("Actor", who(Path.cwd())),
        "where": cast("Host", where()),
        "trained_by": run.get("user"),
        "trained_at": run.get("started"),
        # The host that trained it; `where` is the one registering, which can differ.
        "trained_on": run.get("where"),
        "environment": {**(run.get("environment") or {}), "registered_with": __version__},
        "libraries": model_json.get("libraries"),
        "note": note,
    }
    feature_sets = _feature_sets(run)
    if feature_sets:
        body["feature_sets"] = feature_sets
    if run.get("reason"):
        # Why the run was started (a trigger's firing, the data it was given).
        body["reason"] = run["reason"]
    return body


# -- one artifact, one version -----------------------------------------------------------------
def _register_once(store: ObjectStore, name: str, record: VersionBody) -> RegisteredVersion:
    """The version of `name` holding record's artifact: found, finished, or made now."""
    digest = _check_blob(store, record)
    entry = _entry(store, name, digest)
    if entry is None and _fill_index(store, name):
        entry = _entry(store, name, digest)
    if entry is None:
        entry = _claim(store, name, digest)
    if "version" in entry:
        return _returned(_indexed(store, name, digest, entry), existing=True)
    full, wrote = _allocate_claimed(store, name, record, entry)
    return _returned(full, existing=not wrote)


def _entry(store: ObjectStore, name: str, digest: str) -> dict[str, Any] | None:
    """The index entry of an artifact: a finished one has "version", a claim "after"."""
    key = digest_key(name, digest)
    try:
        entry = digest_entry.from_json(store.get(key))
    except NotFound:
        return None
    except RecordInvalid:
        entry = None
    finished = isinstance(entry, dict) and type(entry.get("version")) is int
    claimed = (
        isinstance(entry, dict)
        and isinstance(entry.get("registration_id"), str)
        and type(entry.get("after")) is int
        and entry["after"] >= 0
    )
    if not (finished or claimed):
        raise IntegrityError(
            f"the registry index entry {key} is damaged",
            f"delete it and {digest_index_key(name)}: the next registration rebuilds the index",
        )
    assert isinstance(entry, dict)
    return dict(entry)


def _indexed(store: ObjectStore, name: str, digest: str, entry: dict[str, Any]) -> VersionRecord:
    """The version a finished entry names, checked to hold the artifact."""
    try:
        record = get_version(store, name, int(entry["version"]))
    except NotFound:
        record = None
    if record is None or (record.get("artifact") or {}).get("digest") != digest:
        raise IntegrityError(
            f"the registry index says {digest} is {name}:{entry['version']}, "
            "which holds another artifact or is missing",
            f"delete {digest_key(name, digest)} and {digest_index_key(name)}: "
            "the next registration rebuilds the index",
        )
    return record


def _claim(store: ObjectStore, name: str, digest: str) -> dict[str, Any]:
    """Claim the artifact's entry (step 1): our claim, marked "mine", or the entry that was
    there first."""
    after = latest_version(store, name) or 0
    claim = {
        "registration_id": secrets.token_hex(8),
        "after": after,
        "artifact": digest,
        "claimed": stamp(),
    }
    try:
        store.put_if_absent(digest_key(name, digest), canonical_json(claim))
    except AlreadyExists:
        entry = _entry(store, name, digest)
        if entry is None:
            raise Conflict(
                f"the registry index entry of {digest} in '{name}' changed while it was read",
                "retry",
            ) from None
        # The store may have retried this very write after losing its response.
        mine = entry.get("registration_id") == claim["registration_id"] and "version" not in entry
        return {**entry, "mine": mine}
    if after == 0:
        # The first version of a model: there is nothing from before the index to enter.
        store.put(digest_index_key(name), canonical_json({"filled": stamp(), "through": 0}))
    return {**claim, "mine": True}


def _allocate_claimed(
    store: ObjectStore, name: str, record: VersionBody, claim: dict[str, Any]
) -> tuple[VersionRecord, bool]:
    """Step 2 and 3 for a claim, ours or another's: the version holding the claim's
    registration id, and whether this call wrote it."""
    registration = str(claim["registration_id"])
    digest = record["artifact"]["digest"]
    body = _body(record)
    write_id = secrets.token_hex(8)
    version = int(claim["after"]) + 1
    for _ in range(_MAX_ALLOCATION_TRIES):
        latest = latest_version(store, name) or 0
        if latest >= version:
            # Numbers taken since the claim: read them before passing them by.
            held, version = _walk(store, name, registration, version, latest)
            if held is not None:
                _finish(store, name, digest, held)
                return held, False
        full = _identified(body, name, version, registration, write_id)
        try:
            store.put_if_absent(version_key(name, version), canonical_json(full))
        except AlreadyExists:
            found = _read_version(store, name, version)
            if found is None:
                continue  # listed as taken but not readable yet: read it again
            if found.get("registration_id") != registration:
                version += 1
                continue
            if found.get("write_id") != write_id:
                _finish(store, name, digest, found)  # written by another participant
                return found, False
            # Our own write, retried by the store after a lost response, was refused as a
            # duplicate: it landed.
        _registered(store, name, full)
        _finish(store, name, digest, full)
        return full, True
    raise Conflict(
        f"could not allocate a version of '{name}' after {_MAX_ALLOCATION_TRIES} tries",
        "too many registrations at once; retry",
    )


def _walk(
    store: ObjectStore, name: str, registration: str, start: int, latest: int
) -> tuple[VersionRecord | None, int]:
    """Read versions start..latest in order: (the one holding `registration`, its number), or
    (None, the first number to try: a missing one in the range, else latest + 1)."""
    numbers = list(range(start, latest + 1))
    with ThreadPoolExecutor(max_workers=16) as pool:
        found = list(pool.map(lambda n: _read_version(store, name, n), numbers))
    for number, held in zip(numbers, found, strict=True):
        if held is None:
            return None, number
        if held.get("registration_id") == registration:
            return held, number
    return None, latest + 1


def _finish(store: ObjectStore, name: str, digest: str, record: VersionRecord) -> None:
    """Step 3: the entry names the version. The same bytes from every participant."""
    entry = {
        "version": record["version"],
        "registration_id": record.get("registration_id"),
        "artifact": digest,
    }
    store.put(digest_key(name, digest), canonical_json(entry))


def _fill_index(store: ObjectStore, name: str) -> bool:
    """Enter the versions of a store from before the index, once; whether anything was read."""
    marker = digest_index_key(name)
    if store.exists(marker):
        return False
    numbers = version_numbers(store, name)
    if not numbers:
        return False
    with ThreadPoolExecutor(max_workers=16) as pool:
        records = list(pool.map(lambda n: _read_version(store, name, n), numbers))
    for number, record in zip(numbers, records, strict=True):
        artifact = record.get("artifact") if record is not None else None
        digest = artifact.get("digest") if isinstance(artifact, dict) else None
        if record is None or not isinstance(digest, str):
            continue
        entry = {
            "version": number,
            "registration_id": record.get("registration_id"),
            "artifact": digest,
        }
        try:
            store.put_if_absent(digest_key(name, digest), canonical_json(entry))
        except (AlreadyExists, UsageError):
            pass  # entered already (oldest first), or not a digest this index can name
    store.put(marker, canonical_json({"filled": stamp(), "through": numbers[-1]}))
    return True


# -- numbers for copies ------------------------------------------------------------------------
def _allocate_copy(store: ObjectStore, name: str, record: VersionBody) -> VersionRecord:
    """The next free number for a record whose artifact already has a version."""
    version = (latest_version(store, name) or 0) + 1
    body = _body(record)
    registration = secrets.token_hex(8)
    for _ in range(_MAX_ALLOCATION_TRIES):
        full = _identified(body, name, version, registration, registration)
        try:
            store.put_if_absent(version_key(name, version), canonical_json(full))
        except AlreadyExists:
            found = _read_version(store, name, version)
            if found is None or found.get("registration_id") != registration:
                # Taken by another registration. Jump to the current latest: stepping one by
                # one, a loser can fall ever further behind registrations that keep landing.
                version = max(version + 1, (latest_version(store, name) or 0) + 1)
                continue
            # Our own write, retried by the store after a lost response: it landed.
        _registered(store, name, full)
        return full
    raise Conflict(
        f"could not allocate a version of '{name}' after {_MAX_ALLOCATION_TRIES} tries",
        "too many registrations at once; retry",
    )


# -- helpers -----------------------------------------------------------------------------------
def _check_blob(store: ObjectStore, record: VersionBody) -> str:
    from mlopsctl.store.blobs import blob_key

    digest = str(record["artifact"]["digest"])
    if not store.exists(blob_key(digest)):
        raise NotFound(
            f"model artifact {digest} is not in the store",
            "register from a run whose outputs are stored (mlopsctl runs show RUN)",
        )
    return digest


def _body(record: VersionBody) -> VersionBody:
    """What a registration writes of `record`: all of it but ``existing`` (a record returned
    by an earlier registration, registered again as a copy)."""
    return cast("VersionBody", {k: v for k, v in record.items() if k != "existing"})


def _returned(full: VersionRecord, *, existing: bool = False) -> RegisteredVersion:
    """What registering returns: the record, marked ``existing`` when it was there already."""
    return {**full, "existing": True} if existing else {**full}


def _identified(
    body: VersionBody, name: str, version: int, registration: str, write_id: str
) -> VersionRecord:
    # Identity last: a record copied from another version must not carry its number over.
    return {
        **body,
        "name": name,
        "version": version,
        "created": stamp(),
        "registration_id": registration,
        "write_id": write_id,
    }


def _registered(store: ObjectStore, name: str, full: VersionRecord) -> None:
    """After this process wrote a version record: the latest hint and the audit event."""
    # Only a hint: a racing registration may leave it one behind, never ahead.
    store.put(latest_key(name), canonical_json({"version": full["version"]}))
    record_event(
        store,
        "register",
        model=name,
        version=full["version"],
        run=(full.get("run") or {}).get("id"),
        artifact=full["artifact"]["digest"],
        actor=full.get("who"),
    )


def _read_version(store: ObjectStore, name: str, version: int) -> VersionRecord | None:
    try:
        return get_version(store, name, version)
    except NotFound:
        return None


def _step_of(ref: str) -> tuple[str, str]:
    step, _, output = ref.partition(".")
    return step, output


def _rows_for(steps: dict[str, StepRecord], digest: str) -> int | None:
    """Row count of a dataset digest, from the info of the step that produced it."""
    for step in steps.values():
        for name, ref in (step.get("outputs") or {}).items():
            if ref.get("digest") == digest:
                info = step.get("info") or {}
                rows = info.get(f"{name}_rows", info.get("rows"))
                return int(rows) if isinstance(rows, (int, float)) else None
    return None
