"""The model registry, kept in the store with no server:

    models/<name>/versions/<n>.json          immutable version record with full provenance
    models/<name>/aliases/<alias>.json       current pointer, moved only by compare-and-swap
    models/<name>/alias-history/<alias>/<seq>.json   one record per move, never rewritten

Version numbers are allocated with put-if-absent (N concurrent registrations get N distinct
versions); the model blob is always stored before the record that points at it.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlopsctl import __version__
from mlopsctl.errors import AlreadyExists, Conflict, IntegrityError, NotFound, UsageError
from mlopsctl.events import record_event
from mlopsctl.pipeline.hashing import canonical_json
from mlopsctl.provenance import where, who

if TYPE_CHECKING:
    from mlopsctl.models.artifact import LoadedModel
    from mlopsctl.store.base import ObjectStore

MODELS = "models/"
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
_ALIAS = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_MAX_ALLOCATION_TRIES = 200


@dataclass(frozen=True)
class Ref:
    name: str
    alias: str | None = None
    version: int | None = None

    def __str__(self) -> str:
        if self.alias:
            return f"{self.name}@{self.alias}"
        if self.version is not None:
            return f"{self.name}:{self.version}"
        return self.name


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise UsageError(
            f"invalid model name {name!r}",
            "use lowercase letters, digits, '.', '_' and '-' (start with a letter or digit)",
        )
    return name


def check_alias(alias: str) -> str:
    if not _ALIAS.match(alias):
        raise UsageError(
            f"invalid alias {alias!r}",
            "aliases are names, not numbers: lowercase letters, digits, '_' and '-', "
            "starting with a letter (e.g. production, staging)",
        )
    return alias


def parse_ref(text: str) -> Ref:
    """name, name@alias, name:version or name:latest."""
    if "@" in text:
        name, _, alias = text.partition("@")
        return Ref(check_name(name), alias=check_alias(alias))
    if ":" in text:
        name, _, version = text.partition(":")
        if version == "latest":
            return Ref(check_name(name))
        if not version.isdigit() or int(version) < 1:
            raise UsageError(f"invalid version in {text!r}", "versions are whole numbers from 1")
        return Ref(check_name(name), version=int(version))
    return Ref(check_name(text))


def _version_key(name: str, version: int) -> str:
    return f"{MODELS}{name}/versions/{version}.json"


def _alias_key(name: str, alias: str) -> str:
    return f"{MODELS}{name}/aliases/{alias}.json"


def _history_prefix(name: str, alias: str) -> str:
    return f"{MODELS}{name}/alias-history/{alias}/"


def version_numbers(store: ObjectStore, name: str) -> list[int]:
    prefix = f"{MODELS}{name}/versions/"
    numbers = []
    for key in store.list(prefix):
        stem = key[len(prefix) :].removesuffix(".json")
        if stem.isdigit():
            numbers.append(int(stem))
    return sorted(numbers)


def get_version(store: ObjectStore, name: str, version: int) -> dict[str, Any]:
    try:
        return dict(json.loads(store.get(_version_key(name, version))))
    except NotFound:
        raise NotFound(
            f"model '{name}' has no version {version}",
            f"list its versions with: mlopsctl models list {name}",
        ) from None


def get_alias(store: ObjectStore, name: str, alias: str) -> tuple[dict[str, Any], str] | None:
    try:
        data, etag = store.get_versioned(_alias_key(name, alias))
    except NotFound:
        return None
    return dict(json.loads(data)), etag


def resolve(store: ObjectStore, ref: Ref | str) -> dict[str, Any]:
    """The version record a reference points at."""
    ref = parse_ref(ref) if isinstance(ref, str) else ref
    if ref.alias:
        found = get_alias(store, ref.name, ref.alias)
        if found is None:
            raise NotFound(
                f"model '{ref.name}' has no alias '{ref.alias}'",
                f"set it with: mlopsctl models alias set {ref.name} {ref.alias} VERSION",
            )
        return get_version(store, ref.name, int(found[0]["version"]))
    if ref.version is not None:
        return get_version(store, ref.name, ref.version)
    numbers = version_numbers(store, ref.name)
    if not numbers:
        raise NotFound(
            f"no model named '{ref.name}' in the store", "list models: mlopsctl models list"
        )
    return get_version(store, ref.name, numbers[-1])


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
    numbers = version_numbers(store, name)
    version = (numbers[-1] if numbers else 0) + 1
    for _ in range(_MAX_ALLOCATION_TRIES):
        full = {"name": name, "version": version, "created": _now(), **record}
        try:
            store.put_if_absent(_version_key(name, version), canonical_json(full))
        except AlreadyExists:
            version += 1  # another registration took this number first; take the next
            continue
        record_event(
            store,
            "register",
            model=name,
            version=version,
            run=record.get("run", {}).get("id"),
            artifact=digest,
            actor=record.get("who"),
        )
        return full
    raise Conflict(
        f"could not allocate a version of '{name}' after {_MAX_ALLOCATION_TRIES} tries",
        "too many registrations at once; retry",
    )


def _model_facts(store: ObjectStore, digest: str) -> tuple[dict[str, Any], str]:
    """model.json of a stored model artifact (a folder blob), and its sha256, read from the
    verified blob without unpacking the rest."""
    import hashlib
    import tarfile
    import tempfile

    from mlopsctl.store.blobs import get_blob_file

    with tempfile.TemporaryDirectory(prefix="mlopsctl-model-") as tmp:
        archive = Path(tmp) / "model.tar"
        get_blob_file(store, digest, archive)
        with tarfile.open(archive) as tar:
            try:
                member = tar.extractfile("model.json")
            except KeyError:
                member = None
            if member is None:
                raise IntegrityError(
                    f"artifact {digest} has no model.json", "it is not a model written by mlopsctl"
                )
            raw = member.read()
    return dict(json.loads(raw)), "sha256:" + hashlib.sha256(raw).hexdigest()


def _step_of(ref: str) -> tuple[str, str]:
    step, _, output = ref.partition(".")
    return step, output


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
    step_name, out = _step_of(output)
    step = steps.get(step_name)
    if step is None or out not in (step.get("outputs") or {}):
        known = [f"{s}.{o}" for s, r in steps.items() for o in r.get("outputs") or {}]
        raise NotFound(f"run {run['id']} has no output '{output}'", f"outputs: {', '.join(known)}")
    artifact = dict(step["outputs"][out])
    numbers = version_numbers(store, name)
    if numbers:
        latest = get_version(store, name, numbers[-1])
        if latest["artifact"]["digest"] == artifact["digest"]:
            # A re-run served from the cache made the very same model: no new version.
            return {**latest, "existing": True}
    model_json, model_json_digest = _model_facts(store, artifact["digest"])
    artifact.update(
        format=model_json.get("format"),
        flavor=model_json.get("flavor"),
        model_json=model_json_digest,
    )

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
    record = {
        "artifact": artifact,
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
        "data": {"training": data_of(step), "sources": run.get("data") or {}},
        "evaluation": evaluation,
        "params": run.get("params"),
        "metrics": version_metrics,
        "who": who(Path.cwd()),
        "where": where(),
        "trained_by": run.get("user"),
        "trained_at": run.get("started"),
        "environment": {**(run.get("environment") or {}), "registered_with": __version__},
        "libraries": model_json.get("libraries"),
        "note": note,
    }
    return register_version(store, name, record)


def _rows_for(steps: dict[str, Any], digest: str) -> int | None:
    """Row count of a dataset digest, from the info of the step that produced it."""
    for step in steps.values():
        for name, ref in (step.get("outputs") or {}).items():
            if ref.get("digest") == digest:
                info = step.get("info") or {}
                rows = info.get(f"{name}_rows", info.get("rows"))
                return int(rows) if isinstance(rows, (int, float)) else None
    return None


# -- aliases -----------------------------------------------------------------------------
def set_alias(
    store: ObjectStore,
    name: str,
    alias: str,
    version: int,
    *,
    expect: int | None = None,
    reason: str | None = None,
    action: str = "set",
) -> dict[str, Any]:
    """Move `alias` to `version` by compare-and-swap. With `expect`, only if the alias still
    points at that version. A lost race raises Conflict naming the current holder."""
    check_alias(alias)
    target = get_version(store, name, version)  # the target must exist
    current = get_alias(store, name, alias)
    holder = int(current[0]["version"]) if current else None
    if expect is not None and holder != expect:
        raise Conflict(
            f"{name}@{alias} points at version {holder if holder is not None else '(none)'}, "
            f"not {expect}",
            "re-read it (mlopsctl models show) and retry with the right --expect",
        )
    seq = int(current[0].get("seq", 0)) + 1 if current else 1
    actor = who(Path.cwd())
    record = {
        "model": name,
        "alias": alias,
        "version": version,
        "previous": holder,
        "seq": seq,
        "time": _now(),
        "by": actor,
        "reason": reason,
        "action": action,
        "artifact": target["artifact"]["digest"],
    }
    try:
        store.compare_and_swap(
            _alias_key(name, alias), canonical_json(record), current[1] if current else None
        )
    except Conflict:
        now = get_alias(store, name, alias)
        holder_now = now[0]["version"] if now else "(none)"
        raise Conflict(
            f"{name}@{alias} moved while this move was being made; it now points at version "
            f"{holder_now}",
            "re-read it and retry (use --expect to say which version you expect to replace)",
        ) from None
    # The move won: its history entry and audit event can only be written by this process.
    store.put_if_absent(f"{_history_prefix(name, alias)}{seq:010d}.json", canonical_json(record))
    record_event(
        store,
        "alias_move",
        model=name,
        alias=alias,
        version=version,
        previous=holder,
        reason=reason,
        action=action,
        actor=actor,
    )
    return record


def alias_history(store: ObjectStore, name: str, alias: str) -> list[dict[str, Any]]:
    check_alias(alias)
    keys = sorted(store.list(_history_prefix(name, alias)))
    return [dict(json.loads(store.get(k))) for k in keys]


def rollback(
    store: ObjectStore, name: str, alias: str, reason: str | None = None
) -> dict[str, Any]:
    """Move the alias back to the version it pointed at before its latest move."""
    current = get_alias(store, name, alias)
    if current is None:
        raise NotFound(f"model '{name}' has no alias '{alias}'", "nothing to roll back")
    previous = current[0].get("previous")
    if previous is None:
        raise NotFound(
            f"{name}@{alias} has no earlier version to roll back to",
            "set it explicitly with: mlopsctl models alias set",
        )
    return set_alias(
        store,
        name,
        alias,
        int(previous),
        expect=int(current[0]["version"]),
        reason=reason or f"rollback from version {current[0]['version']}",
        action="rollback",
    )


# -- reading -----------------------------------------------------------------------------
def list_models(store: ObjectStore) -> list[dict[str, Any]]:
    """Every model with its latest version and aliases, from one listing of models/."""
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
        if kind == "versions" and stem.isdigit():
            entry["versions"] += 1
            entry["latest"] = max(entry["latest"] or 0, int(stem))
        elif kind == "aliases":
            entry["aliases"][stem] = None
    for entry in models.values():
        for alias in entry["aliases"]:
            found = get_alias(store, entry["name"], alias)
            entry["aliases"][alias] = found[0]["version"] if found else None
    return [models[n] for n in sorted(models)]


def list_versions(store: ObjectStore, name: str) -> list[dict[str, Any]]:
    from concurrent.futures import ThreadPoolExecutor

    numbers = version_numbers(store, name)
    if not numbers:
        raise NotFound(f"no model named '{name}' in the store", "list models: mlopsctl models list")
    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(lambda n: get_version(store, name, n), numbers))


def download(store: ObjectStore, ref: Ref | str, dest: Path) -> tuple[dict[str, Any], Path]:
    """Stream the model artifact into `dest` (a folder that must not exist yet). The blob is
    verified before it is unpacked, and `dest` appears only once complete."""
    import shutil

    from mlopsctl.pipeline.artifacts import fetch_artifact

    record = resolve(store, ref)
    if dest.exists():
        raise AlreadyExists(f"{dest} already exists", "give a new folder; nothing was written")
    staging = dest.with_name(f".{dest.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        fetch_artifact(store, record["artifact"], staging)
        _check_model_json(staging, record)
        staging.rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return record, dest


def _check_model_json(folder: Path, record: dict[str, Any]) -> None:
    from mlopsctl.pipeline.hashing import sha256_file

    expected = record["artifact"].get("model_json")
    if expected and sha256_file(folder / "model.json") != expected:
        raise IntegrityError(
            f"model.json of {record['name']}:{record['version']} does not match its version record",
            "the artifact was altered; do not use it",
        )


def load_model(
    ref: str, *, store: ObjectStore | None = None, trust_pickle: bool = False
) -> LoadedModel:
    """Load a registered model ("name@production", "name:3"). Every byte is verified (blob
    digest, then each file against model.json) before it reaches a deserialiser."""
    import hashlib
    import os
    import shutil
    import tempfile

    from mlopsctl.models.artifact import load_model_dir

    if store is None:
        from mlopsctl.config import load_project, open_project_store

        store = open_project_store(load_project())
    record = resolve(store, ref)
    digest = record["artifact"]["digest"]
    cache_root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlopsctl"
    folder = cache_root / "models" / hashlib.sha256(digest.encode()).hexdigest()[:32]
    if not (folder / "model.json").exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".model-", dir=folder.parent))
        shutil.rmtree(staging)
        from mlopsctl.pipeline.artifacts import fetch_artifact

        try:
            fetch_artifact(store, record["artifact"], staging)
            try:
                staging.rename(folder)
            except OSError:
                pass  # another process unpacked the same verified artifact first
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    _check_model_json(folder, record)
    return load_model_dir(folder, trust_pickle=trust_pickle)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
