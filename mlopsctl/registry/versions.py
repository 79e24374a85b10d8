"""Version records: registering (from a run, or a record built elsewhere), reading one, finding
the latest, listing versions and models.

Version numbers are allocated with put-if-absent (N concurrent registrations get N distinct
versions); the model blob is always stored before the record that points at it."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlopsctl import __version__
from mlopsctl.digest import canonical_json
from mlopsctl.errors import AlreadyExists, Conflict, NotFound, UsageError
from mlopsctl.events import record_event
from mlopsctl.names import is_name
from mlopsctl.provenance import where, who
from mlopsctl.registry.fetch import model_facts
from mlopsctl.registry.keys import MODELS, latest_key, version_key, versions_prefix
from mlopsctl.registry.refs import check_name
from mlopsctl.timeutil import stamp

if TYPE_CHECKING:
    from mlopsctl.store.base import ObjectStore

_MAX_ALLOCATION_TRIES = 200


# -- reading -----------------------------------------------------------------------------
def version_numbers(store: ObjectStore, name: str) -> list[int]:
    prefix = versions_prefix(name)
    numbers = []
    for key in store.list(prefix):
        stem = key[len(prefix) :].removesuffix(".json")
        if is_name("version", stem):
            numbers.append(int(stem))
    return sorted(numbers)


def latest_version(store: ObjectStore, name: str) -> int | None:
    """The highest version number of `name` (None: no versions) in a few requests, whatever
    the number of versions: start from the hint, which must name an existing version, and
    step past the versions registered after it (by racing or killed registrations that did not
    move it). Without a usable hint (a store from before hints), list the versions."""
    hint: int | None = None
    try:
        value = json.loads(store.get(latest_key(name))).get("version")
        hint = value if type(value) is int and is_name("version", str(value)) else None
    except (NotFound, ValueError, AttributeError):
        hint = None
    if hint is None or not store.exists(version_key(name, hint)):
        numbers = version_numbers(store, name)
        return numbers[-1] if numbers else None
    while store.exists(version_key(name, hint + 1)):
        hint += 1
    return hint


def get_version(store: ObjectStore, name: str, version: int) -> dict[str, Any]:
    try:
        return dict(json.loads(store.get(version_key(name, version))))
    except NotFound:
        raise NotFound(
            f"model '{name}' has no version {version}",
            f"list its versions with: mlopsctl models list {name}",
        ) from None


def list_versions(store: ObjectStore, name: str) -> list[dict[str, Any]]:
    from concurrent.futures import ThreadPoolExecutor

    numbers = version_numbers(store, name)
    if not numbers:
        raise NotFound(f"no model named '{name}' in the store", "list models: mlopsctl models list")
    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(lambda n: get_version(store, name, n), numbers))


def list_models(store: ObjectStore) -> list[dict[str, Any]]:
    """Every model with its latest version and aliases, from one listing of models/."""
    # Imported here: aliases.py builds on this module.
    from mlopsctl.registry.aliases import get_alias

    models: dict[str, dict[str, Any]] = {}
    for key in store.list(MODELS):
        parts = key[len(MODELS) :].split("/")
        if len(parts) != 3:
            continue
        name, kind, leaf = parts
        entry = models.setdefault(
            name, {"name": name, "versions": 0, "latest": None, "aliases": {}}
        )
        stem = leaf.removesuffix(".json")
        if kind == "versions" and is_name("version", stem):
            entry["versions"] += 1
            entry["latest"] = max(entry["latest"] or 0, int(stem))
        elif kind == "aliases":
            entry["aliases"][stem] = None
    for entry in models.values():
        for alias in entry["aliases"]:
            found = get_alias(store, entry["name"], alias)
            entry["aliases"][alias] = found[0]["version"] if found else None
    return [models[n] for n in sorted(models)]


# -- registering -------------------------------------------------------------------------
def register_version(store: ObjectStore, name: str, record: dict[str, Any]) -> dict[str, Any]:
    """Write `record` as the next version of `name`. The artifact blob must already be in the
    store (checked here), so no version can point at a missing blob."""
    from mlopsctl.store.blobs import blob_key

    check_name(name)
    digest = record["artifact"]["digest"]
    if not store.exists(blob_key(digest)):
        raise NotFound(
            f"model artifact {digest} is not in the store",
            "register from a run whose outputs are stored (mlopsctl runs show RUN)",
        )
    version = (latest_version(store, name) or 0) + 1
    record = {k: v for k, v in record.items() if k != "existing"}
    registration = secrets.token_hex(8)
    for _ in range(_MAX_ALLOCATION_TRIES):
        # Identity last: a record copied from another version must not carry its number over.
        full = {
            **record,
            "name": name,
            "version": version,
            "created": stamp(),
            "registration_id": registration,
        }
        try:
            store.put_if_absent(version_key(name, version), canonical_json(full))
        except AlreadyExists:
            if _registered_as(store, name, version) != registration:
                # Taken by another registration. Jump to the current latest: stepping one by
                # one, a loser can fall ever further behind registrations that keep landing.
                version = max(version + 1, (latest_version(store, name) or 0) + 1)
                continue
            # Our own write, retried by the store after a lost response, was refused as a
            # duplicate: it landed, and registering again would make a second version.
        # Only a hint: a racing registration may leave it one behind, never ahead.
        store.put(latest_key(name), canonical_json({"version": version}))
        record_event(
            store,
            "register",
            model=name,
            version=version,
            run=(record.get("run") or {}).get("id"),
            artifact=digest,
            actor=record.get("who"),
        )
        return full
    raise Conflict(
        f"could not allocate a version of '{name}' after {_MAX_ALLOCATION_TRIES} tries",
        "too many registrations at once; retry",
    )


def _registered_as(store: ObjectStore, name: str, version: int) -> str | None:
    try:
        return get_version(store, name, version).get("registration_id")
    except NotFound:
        return None


def version_record(
    run: dict[str, Any],
    step_name: str,
    artifact: dict[str, Any],
    model_json: dict[str, Any],
    model_json_digest: str,
    *,
    training_data: dict[str, Any],
    evaluation: dict[str, Any],
    metrics: dict[str, Any],
    note: str | None = None,
) -> dict[str, Any]:
    """The body of a version record: the model (`artifact`, the run's output reference, with
    what its model.json says) and its provenance from `run`, who registers it and where.
    register_version adds the identity (name, version, created, registration_id)."""
    return {
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
        "who": who(Path.cwd()),
        "where": where(),
        "trained_by": run.get("user"),
        "trained_at": run.get("started"),
        # The host that trained it; `where` is the one registering, which can differ.
        "trained_on": run.get("where"),
        "environment": {**(run.get("environment") or {}), "registered_with": __version__},
        "libraries": model_json.get("libraries"),
        "note": note,
    }


def register_from_run(
    store: ObjectStore,
    run: dict[str, Any],
    name: str,
    output: str,
    metrics: str | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """Register the model a run produced at `output` ("step.output"), with the run's
    provenance: pipeline, spec, commit, image, data digests and rows, params, metrics."""
    if run.get("status") != "succeeded":
        raise UsageError(
            f"run {run['id']} did not succeed ({run.get('status')})",
            "register models from succeeded runs only",
        )
    steps = run.get("steps") or {}
    known = [f"{s}.{o}" for s, r in steps.items() for o in r.get("outputs") or {}]
    for wanted in (output, metrics):
        if wanted and wanted not in known:
            raise NotFound(
                f"run {run['id']} has no output '{wanted}'", f"outputs: {', '.join(known)}"
            )
    step_name, out = _step_of(output)
    step = steps[step_name]
    artifact = dict(step["outputs"][out])
    if artifact.get("kind") != "dir":
        raise UsageError(
            f"output '{output}' of run {run['id']} is a file, not a model folder",
            "register the model output of a train or tune step (e.g. train.model)",
        )
    latest_number = latest_version(store, name)
    if latest_number is not None:
        latest = get_version(store, name, latest_number)
        if latest["artifact"]["digest"] == artifact["digest"]:
            # A re-run served from the cache made the very same model: no new version.
            return {**latest, "existing": True}
    model_json, model_json_digest = model_facts(store, artifact["digest"])

    def data_of(step_record: dict[str, Any], skip: str | None = None) -> dict[str, Any]:
        found = {}
        for input_name, digest in (step_record.get("inputs") or {}).items():
            if digest == skip:
                continue
            found[input_name] = {"digest": digest, "rows": _rows_for(steps, digest)}
        return found

    evaluation: dict[str, Any] = {}
    version_metrics: dict[str, Any] = dict(step.get("metrics") or {})
    if metrics:
        metrics_step_name, metrics_out = _step_of(metrics)
        metrics_step = steps.get(metrics_step_name) or {}
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
    return register_version(store, name, record)


def _step_of(ref: str) -> tuple[str, str]:
    step, _, output = ref.partition(".")
    return step, output


def _rows_for(steps: dict[str, Any], digest: str) -> int | None:
    """Row count of a dataset digest, from the info of the step that produced it."""
    for step in steps.values():
        for name, ref in (step.get("outputs") or {}).items():
            if ref.get("digest") == digest:
                info = step.get("info") or {}
                rows = info.get(f"{name}_rows", info.get("rows"))
                return int(rows) if isinstance(rows, (int, float)) else None
    return None
