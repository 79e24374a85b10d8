"""The model registry, kept in the store with no server:

    models/<name>/versions/<n>.json          immutable version record with full provenance
    models/<name>/aliases/<alias>.json       current pointer, moved only by compare-and-swap
    models/<name>/alias-history/<alias>/<seq>.json   one record per move, never rewritten
    models/<name>/latest.json                a hint naming a recent version, so that finding
                                             the latest needs no listing of every version

Version numbers are allocated with put-if-absent (N concurrent registrations get N distinct
versions); the model blob is always stored before the record that points at it. Every alias move
is in the history: the winner of a move writes its entry, and whoever replaces a move makes sure
that move's entry exists first, so a mover killed between the two writes loses nothing.
"""

from __future__ import annotations

import json
import re
import secrets
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


def _latest_key(name: str) -> str:
    return f"{MODELS}{name}/latest.json"


def version_numbers(store: ObjectStore, name: str) -> list[int]:
    prefix = f"{MODELS}{name}/versions/"
    numbers = []
    for key in store.list(prefix):
        stem = key[len(prefix) :].removesuffix(".json")
        if stem.isdigit():
            numbers.append(int(stem))
    return sorted(numbers)


def latest_version(store: ObjectStore, name: str) -> int | None:
    """The highest version number of `name` (None: no versions) in a few requests, whatever
    the number of versions: start from the hint, which must name an existing version, and
    step past the versions registered after it (by racing or killed registrations that did not
    move it). Without a usable hint (a store from before hints), list the versions."""
    hint: int | None = None
    try:
        value = json.loads(store.get(_latest_key(name))).get("version")
        hint = value if isinstance(value, int) and value >= 1 else None
    except (NotFound, ValueError, AttributeError):
        hint = None
    if hint is None or not store.exists(_version_key(name, hint)):
        numbers = version_numbers(store, name)
        return numbers[-1] if numbers else None
    while store.exists(_version_key(name, hint + 1)):
        hint += 1
    return hint


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
    latest = latest_version(store, ref.name)
    if latest is None:
        raise NotFound(
            f"no model named '{ref.name}' in the store", "list models: mlopsctl models list"
        )
    return get_version(store, ref.name, latest)


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
            "created": _now(),
            "registration_id": registration,
        }
        try:
            store.put_if_absent(_version_key(name, version), canonical_json(full))
        except AlreadyExists:
            if _registered_as(store, name, version) != registration:
                # Taken by another registration. Jump to the current latest: stepping one by
                # one, a loser can fall ever further behind registrations that keep landing.
                version = max(version + 1, (latest_version(store, name) or 0) + 1)
                continue
            # Our own write, retried by the store after a lost response, was refused as a
            # duplicate: it landed, and registering again would make a second version.
        # Only a hint: a racing registration may leave it one behind, never ahead.
        store.put(_latest_key(name), canonical_json({"version": version}))
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


_MAX_MODEL_JSON = 64 << 20


def _registered_as(store: ObjectStore, name: str, version: int) -> str | None:
    try:
        return get_version(store, name, version).get("registration_id")
    except NotFound:
        return None


def model_facts(store: ObjectStore, digest: str) -> tuple[dict[str, Any], str]:
    """model.json of a stored model artifact (a folder blob), and its sha256.

    Folder blobs are tars with sorted names, so model.json is nearly always the first member:
    it is read from the head of the stream, and registering costs the same for a 1 MB and a
    10 GB model. Otherwise the whole blob is downloaded (verified) and searched. The blob's
    digest is checked whenever the model is downloaded or loaded, and the sha256 of model.json
    recorded here is checked then too."""
    import hashlib
    import tarfile
    import tempfile

    from mlopsctl.models.artifact import FORMAT
    from mlopsctl.store.blobs import get_blob_file

    not_a_model = "register the model output of a train or tune step (e.g. train.model)"
    raw = _head_model_json(store, digest)
    if raw is None:
        with tempfile.TemporaryDirectory(prefix="mlopsctl-model-") as tmp:
            archive = Path(tmp) / "model.tar"
            get_blob_file(store, digest, archive)
            try:
                with tarfile.open(archive) as tar:
                    try:
                        member = tar.extractfile("model.json")
                    except KeyError:
                        member = None
                    if member is None:
                        raise UsageError(f"artifact {digest} has no model.json", not_a_model)
                    raw = member.read()
            except tarfile.TarError:
                raise UsageError(f"artifact {digest} is not a model folder", not_a_model) from None
    try:
        facts = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        facts = None
    if not isinstance(facts, dict) or facts.get("format") != FORMAT:
        raise UsageError(f"artifact {digest} has no {FORMAT} model.json", not_a_model)
    return facts, "sha256:" + hashlib.sha256(raw).hexdigest()


def _head_model_json(store: ObjectStore, digest: str) -> bytes | None:
    """The bytes of model.json when it is the first member of the tar blob; None when it is
    not (or the blob is missing or not a tar), for the caller to take the slow path."""
    import tarfile

    from mlopsctl.store.blobs import blob_key

    try:
        chunks = store.iter_chunks(blob_key(digest), chunk_size=1 << 16)
    except NotFound:
        return None
    head = bytearray()
    end: int | None = None
    try:
        for chunk in chunks:
            head += chunk
            if end is None and len(head) >= tarfile.BLOCKSIZE:
                try:
                    info = tarfile.TarInfo.frombuf(
                        bytes(head[: tarfile.BLOCKSIZE]), "utf-8", "surrogateescape"
                    )
                except tarfile.TarError:
                    return None
                if info.name != "model.json" or not info.isreg() or info.size > _MAX_MODEL_JSON:
                    return None
                end = tarfile.BLOCKSIZE + info.size
            if end is not None and len(head) >= end:
                return bytes(head[tarfile.BLOCKSIZE : end])
        return None
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()  # stop the download: the rest of the blob is not needed


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
        # The host that trained it; `where` is the one registering, which can differ.
        "trained_on": run.get("where"),
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
    check_name(name)
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
    if current is not None:
        # The move being replaced may have died before writing its history entry.
        _keep_history(store, name, alias, current[0])
    seq = int(current[0].get("seq", 0)) + 1 if current else 1
    actor = who(Path.cwd())
    record = {
        "id": secrets.token_hex(8),
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
        # The store may have retried this very write after losing its response: then the
        # alias holds this move and it won.
        if now is None or now[0].get("id") != record["id"]:
            holder_now = now[0]["version"] if now else "(none)"
            raise Conflict(
                f"{name}@{alias} moved while this move was being made; it now points at "
                f"version {holder_now}",
                "re-read it and retry (use --expect to say which version you expect to replace)",
            ) from None
    # The move won. Its history entry may already be there, written by a mover that read the
    # new pointer first (same bytes); its audit event can only come from this process.
    _keep_history(store, name, alias, record)
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


def _history_key(name: str, alias: str, seq: int) -> str:
    return f"{_history_prefix(name, alias)}{int(seq):010d}.json"


def _keep_history(store: ObjectStore, name: str, alias: str, record: dict[str, Any]) -> None:
    try:
        store.put_if_absent(_history_key(name, alias, record.get("seq", 1)), canonical_json(record))
    except AlreadyExists:
        pass


def alias_history(store: ObjectStore, name: str, alias: str) -> list[dict[str, Any]]:
    """Every move of the alias, oldest first, the current one included even when its mover
    died before writing its history entry."""
    from concurrent.futures import ThreadPoolExecutor

    check_name(name)
    check_alias(alias)
    keys = sorted(store.list(_history_prefix(name, alias)))
    with ThreadPoolExecutor(max_workers=16) as pool:
        moves = list(pool.map(lambda k: dict(json.loads(store.get(k))), keys))
    current = get_alias(store, name, alias)
    if current is not None and all(m.get("seq") != current[0].get("seq") for m in moves):
        moves.append(current[0])
    return moves


def _rollback_target(moves: list[dict[str, Any]]) -> int | None:
    """The version a rollback returns to: replay the moves as a stack (a move pushes the
    version it replaced, a rollback pops), so rolling back twice goes two versions back
    rather than returning to the version the first rollback left."""
    stack: list[int] = []
    for move in moves:
        if move.get("action") == "rollback":
            if stack:
                stack.pop()
        elif move.get("previous") is not None and move["previous"] != move.get("version"):
            stack.append(int(move["previous"]))
    return stack[-1] if stack else None


def rollback(
    store: ObjectStore, name: str, alias: str, reason: str | None = None
) -> dict[str, Any]:
    """Move the alias back to the version it pointed at before the move that put the current
    version there (rollbacks undone in turn, like an undo stack)."""
    current = get_alias(store, name, alias)
    if current is None:
        raise NotFound(f"model '{name}' has no alias '{alias}'", "nothing to roll back")
    target = _rollback_target(alias_history(store, name, alias))
    if target is None:
        raise NotFound(
            f"{name}@{alias} has no earlier version to roll back to",
            "set it explicitly with: mlopsctl models alias set",
        )
    return set_alias(
        store,
        name,
        alias,
        target,
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

    record = resolve(store, ref)
    if dest.exists():
        raise AlreadyExists(f"{dest} already exists", "give a new folder; nothing was written")
    staging = dest.with_name(f".{dest.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        _fetch_verified(store, record, staging)
        _check_model_json(staging, record)
        staging.rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return record, dest


def _fetch_verified(store: ObjectStore, record: dict[str, Any], dest: Path) -> None:
    """Download and unpack a version's artifact; a blob that fails its digest is named by the
    version it belongs to."""
    from mlopsctl.pipeline.artifacts import fetch_artifact

    try:
        fetch_artifact(store, record["artifact"], dest)
    except IntegrityError as exc:
        raise IntegrityError(
            f"the artifact of {record['name']}:{record['version']} is damaged: {exc.message}",
            exc.hint,
        ) from None


def _check_model_json(folder: Path, record: dict[str, Any]) -> None:
    from mlopsctl.pipeline.hashing import sha256_file

    expected = record["artifact"].get("model_json")
    if not (folder / "model.json").is_file():
        raise IntegrityError(
            f"the artifact of {record['name']}:{record['version']} has no model.json",
            "it is not a model written by mlopsctl",
        )
    if expected and sha256_file(folder / "model.json") != expected:
        raise IntegrityError(
            f"model.json of {record['name']}:{record['version']} does not match its version record",
            "the artifact was altered; do not use it",
        )


def load_model(
    ref: str, *, store: ObjectStore | None = None, trust_pickle: bool = False
) -> LoadedModel:
    """Load a registered model ("name@production", "name:3"). Every byte is verified (blob
    digest, then each file against model.json) before it reaches a deserialiser.

    Unpacked artifacts are kept in a per-user cache keyed by digest; a cached copy that fails
    verification is thrown away and fetched again from the store, once."""
    from mlopsctl.models.artifact import load_model_dir

    if store is None:
        from mlopsctl.config import load_project, open_project_store

        with open_project_store(load_project()) as opened:
            return load_model(ref, store=opened, trust_pickle=trust_pickle)
    record = resolve(store, ref)
    folder = cached_model_dir(store, record)
    try:
        return load_model_dir(folder, trust_pickle=trust_pickle)
    except IntegrityError:
        # Raised before any deserialiser runs: a file of the cached copy was altered after it
        # was verified, so the store's copy (verified again) replaces it.
        _discard(folder)
    return load_model_dir(cached_model_dir(store, record), trust_pickle=trust_pickle)


def cached_model_dir(store: ObjectStore, record: dict[str, Any]) -> Path:
    """The verified, unpacked artifact of a version record in the per-user cache, fetched (and
    its digest checked) when missing or altered; nothing is deserialised. The serving process
    smoke-loads this folder in a separate process before loading it itself."""
    import hashlib
    import os

    digest = record["artifact"]["digest"]
    cache_root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlopsctl"
    folder = cache_root / "models" / hashlib.sha256(digest.encode()).hexdigest()[:32]
    if (folder / "model.json").is_file():
        try:
            _check_model_json(folder, record)
            return folder
        except IntegrityError:
            _discard(folder)
    _fetch_into_cache(store, record, folder)
    _check_model_json(folder, record)
    return folder


def _fetch_into_cache(store: ObjectStore, record: dict[str, Any], folder: Path) -> None:
    import shutil
    import tempfile

    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".model-", dir=folder.parent))
    shutil.rmtree(staging)
    try:
        _fetch_verified(store, record, staging)
        if folder.exists() and not (folder / "model.json").is_file():
            _discard(folder)  # an incomplete copy left behind; it would block the rename
        try:
            staging.rename(folder)
        except OSError:
            pass  # another process unpacked the same verified artifact first
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _discard(folder: Path) -> None:
    """Remove a cached copy: renamed aside first, so no reader sees it half deleted."""
    import shutil
    import uuid

    trash = folder.with_name(f".discard-{uuid.uuid4().hex}")
    try:
        folder.rename(trash)
    except OSError:
        return  # gone already, or replaced by another process
    shutil.rmtree(trash, ignore_errors=True)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
