"""Content-addressed artifacts: ``blobs/sha256/<2 hex>/<64 hex>``.

A blob's key is its digest, so storing is idempotent (an existing key already holds these
bytes) and every read is verified: a corrupt blob raises IntegrityError, never returns.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from mlopsctl.digest import ALGORITHM, format_digest, parse_digest, sha256_file
from mlopsctl.errors import AlreadyExists, IntegrityError, NotFound, StoreError
from mlopsctl.store.base import ObjectStore

PREFIX = f"blobs/{ALGORITHM}/"


def blob_key(digest: str) -> str:
    hex_digest = parse_digest(digest)
    return f"{PREFIX}{hex_digest[:2]}/{hex_digest}"


def _corrupt(store: ObjectStore, key: str, got: str, expected: str) -> IntegrityError:
    return IntegrityError(
        f"blob {key} in {store.url} is corrupt: its sha256 is {got}, expected {expected}",
        hint="delete it and store the artifact again",
    )


def _missing(store: ObjectStore, digest: str) -> NotFound:
    return NotFound(
        f"blob {digest} not found in {store.url}",
        hint="was it stored by a run that used another store?",
    )


def put_blob_file(store: ObjectStore, path: str | Path) -> str:
    """Store a file by content; returns its digest (``sha256:<hex>``)."""
    path = Path(path)
    try:
        before = os.stat(path)
        hex_digest = parse_digest(sha256_file(path))
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from None
    digest = format_digest(hex_digest)
    key = blob_key(digest)
    if store.exists(key):
        return digest
    try:
        store.put_file(key, path, if_absent=True)
    except AlreadyExists:
        return digest
    # A file rewritten between hashing and upload would sit under the wrong digest.
    try:
        after = os.stat(path)
        changed = (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns)
    except OSError:
        changed = True
    if changed:
        store.delete(key)
        raise StoreError(f"{path} changed while it was being stored", hint="store it again")
    return digest


def put_blob_bytes(store: ObjectStore, data: bytes) -> str:
    digest = format_digest(hashlib.sha256(data).hexdigest())
    try:
        store.put_if_absent(blob_key(digest), data)
    except AlreadyExists:
        pass
    return digest


def get_blob_bytes(store: ObjectStore, digest: str) -> bytes:
    key = blob_key(digest)
    try:
        data = store.get(key)
    except NotFound:
        raise _missing(store, digest) from None
    got = hashlib.sha256(data).hexdigest()
    if got != parse_digest(digest):
        raise _corrupt(store, key, got, parse_digest(digest))
    return data


def get_blob_file(store: ObjectStore, digest: str, dest: str | Path) -> Path:
    """Download a blob to ``dest``; the file appears only once its sha256 is verified."""
    key = blob_key(digest)
    dest = Path(dest)
    try:
        store.get_file(key, dest, expect_sha256=parse_digest(digest))
    except NotFound:
        raise _missing(store, digest) from None
    return dest
