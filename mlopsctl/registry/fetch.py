"""Getting a version's model out of the store: its facts (model.json) read without unpacking,
a download into a new folder, and the per-user cache of verified, unpacked artifacts that
loading and serving use. Every byte is checked against the version record before use."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlopsctl.digest import sha256_bytes, sha256_file
from mlopsctl.errors import AlreadyExists, IntegrityError, NotFound, UsageError
from mlopsctl.registry.refs import Ref, resolve

if TYPE_CHECKING:
    from mlopsctl.models.artifact import LoadedModel
    from mlopsctl.records.version import VersionRecord
    from mlopsctl.store.base import ObjectStore

_MAX_MODEL_JSON = 64 << 20


def model_facts(store: ObjectStore, digest: str) -> tuple[dict[str, Any], str]:
    """model.json of a stored model artifact (a folder blob), and its sha256.

    Folder blobs are tars with sorted names, so model.json is nearly always the first member:
    it is read from the head of the stream, and registering costs the same for a 1 MB and a
    10 GB model. Otherwise the whole blob is downloaded (verified) and searched. The blob's
    digest is checked whenever the model is downloaded or loaded, and the sha256 of model.json
    recorded here is checked then too."""
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
    return facts, sha256_bytes(raw)


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


def download(store: ObjectStore, ref: Ref | str, dest: Path) -> tuple[VersionRecord, Path]:
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


def _fetch_verified(store: ObjectStore, record: VersionRecord, dest: Path) -> None:
    """Download and unpack a version's artifact; a blob that fails its digest is named by the
    version it belongs to."""
    from mlopsctl.store.artifacts import fetch_artifact

    try:
        fetch_artifact(store, record["artifact"], dest)
    except IntegrityError as exc:
        raise IntegrityError(
            f"the artifact of {record['name']}:{record['version']} is damaged: {exc.message}",
            exc.hint,
        ) from None


def _check_model_json(folder: Path, record: VersionRecord) -> None:
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


def cached_model_dir(store: ObjectStore, record: VersionRecord) -> Path:
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


def _fetch_into_cache(store: ObjectStore, record: VersionRecord, folder: Path) -> None:
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
