"""The contract every store backend honours; runs once per backend (``store`` fixture)."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from mlopsctl.errors import (
    AlreadyExists,
    Conflict,
    ExitCode,
    IntegrityError,
    NotFound,
    UsageError,
)
from mlopsctl.store import ObjectInfo, ObjectStore
from mlopsctl.store.blobs import (
    blob_key,
    get_blob_bytes,
    get_blob_file,
    put_blob_bytes,
    put_blob_file,
)

MiB = 1 << 20


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if "mlopsctl-tmp" in p.name)


# -- bytes ------------------------------------------------------------------------------------
def test_bytes_round_trip(store: ObjectStore) -> None:
    data = bytes(range(256)) * 3
    etag = store.put("runs/abc.json", data)
    assert isinstance(etag, str) and etag
    assert store.get("runs/abc.json") == data
    store.put("empty", b"")
    assert store.get("empty") == b""


def test_get_versioned_etag_matches_stat(store: ObjectStore) -> None:
    etag = store.put("k", b"one")
    data, version = store.get_versioned("k")
    assert data == b"one"
    assert version == etag
    assert store.stat("k") == ObjectInfo(key="k", size=3, etag=etag)


def test_put_overwrites_and_changes_etag(store: ObjectStore) -> None:
    first = store.put("k", b"one")
    second = store.put("k", b"two")
    assert first != second
    assert store.get_versioned("k") == (b"two", second)


def test_put_if_absent_twice(store: ObjectStore) -> None:
    store.put_if_absent("models/m/versions/1.json", b"first")
    with pytest.raises(AlreadyExists) as info:
        store.put_if_absent("models/m/versions/1.json", b"second")
    assert info.value.exit_code == ExitCode.CONFLICT
    assert "models/m/versions/1.json" in str(info.value)
    assert store.get("models/m/versions/1.json") == b"first"


def test_compare_and_swap(store: ObjectStore) -> None:
    key = "models/m/aliases/prod.json"
    created = store.compare_and_swap(key, b"v1", None)
    assert store.get_versioned(key) == (b"v1", created)
    with pytest.raises(Conflict) as info:
        store.compare_and_swap(key, b"v1-again", None)
    assert info.value.exit_code == ExitCode.CONFLICT

    moved = store.compare_and_swap(key, b"v2", created)
    assert store.get_versioned(key) == (b"v2", moved)
    with pytest.raises(Conflict):
        store.compare_and_swap(key, b"v3", created)
    assert store.get(key) == b"v2"

    # An etag for a key that does not exist (deleted since it was read) is a conflict too.
    with pytest.raises(Conflict):
        store.compare_and_swap("models/m/aliases/gone.json", b"x", moved)
    assert not store.exists("models/m/aliases/gone.json")


def test_missing_key_is_not_found(store: ObjectStore) -> None:
    for call in (store.get, store.get_versioned, store.stat, store.iter_chunks):
        with pytest.raises(NotFound) as info:
            call("no/such/key")
        assert info.value.exit_code == ExitCode.NOT_FOUND
        assert "\n" not in str(info.value)
    assert store.exists("no/such/key") is False


def test_exists_and_delete_idempotent(store: ObjectStore) -> None:
    store.delete("never/written")
    store.put("k", b"x")
    assert store.exists("k")
    store.delete("k")
    assert not store.exists("k")
    store.delete("k")
    with pytest.raises(NotFound):
        store.get("k")


def test_iter_chunks(store: ObjectStore) -> None:
    data = os.urandom(300_000)
    store.put("chunks", data)
    chunks = list(store.iter_chunks("chunks", chunk_size=64 * 1024))
    assert b"".join(chunks) == data
    assert len(chunks) >= 2


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "a/../b", "trailing/", "a/.mlopsctl-x"])
def test_invalid_keys_are_refused(store: ObjectStore, key: str) -> None:
    with pytest.raises(UsageError):
        store.put(key, b"x")


# -- files ------------------------------------------------------------------------------------
def test_put_file_get_file_small(store: ObjectStore, tmp_path: Path) -> None:
    data = os.urandom(12_345)
    src = _write(tmp_path / "src.bin", data)
    etag = store.put_file("files/small.bin", src)
    assert store.stat("files/small.bin") == ObjectInfo("files/small.bin", len(data), etag)
    dest = tmp_path / "out" / "small.bin"
    size = store.get_file("files/small.bin", dest, expect_sha256=hashlib.sha256(data).hexdigest())
    assert size == len(data)
    assert dest.read_bytes() == data
    assert _leftovers(dest.parent) == []


def test_put_file_get_file_empty(store: ObjectStore, tmp_path: Path) -> None:
    src = _write(tmp_path / "empty.bin", b"")
    store.put_file("files/empty.bin", src)
    dest = tmp_path / "empty.out"
    assert store.get_file("files/empty.bin", dest, expect_sha256=hashlib.sha256().hexdigest()) == 0
    assert dest.read_bytes() == b""


def test_put_file_get_file_multipart(store: ObjectStore, tmp_path: Path) -> None:
    data = os.urandom(20 * MiB + 12_345)
    digest = hashlib.sha256(data).hexdigest()
    src = _write(tmp_path / "big.bin", data)
    etag = store.put_file("files/big.bin", src, if_absent=True)
    info = store.stat("files/big.bin")
    assert info.size == len(data)
    assert info.etag == etag
    if store.scheme == "s3":
        # S3 multipart etags end in -<number of parts>: proof the upload really was multipart.
        assert etag.endswith("-5")
    with pytest.raises(AlreadyExists):
        store.put_file("files/big.bin", src, if_absent=True)

    dest = tmp_path / "dl" / "big.bin"
    assert store.get_file("files/big.bin", dest, expect_sha256=digest) == len(data)
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == digest
    assert _leftovers(dest.parent) == []


def test_get_file_wrong_sha256_leaves_dest_untouched(store: ObjectStore, tmp_path: Path) -> None:
    data = os.urandom(11 * MiB)  # several parts on S3
    store.put_file("files/x.bin", _write(tmp_path / "x.bin", data))
    dest = tmp_path / "dl" / "x.bin"
    with pytest.raises(IntegrityError) as info:
        store.get_file("files/x.bin", dest, expect_sha256="0" * 64)
    assert "files/x.bin" in str(info.value) and "corrupt" in str(info.value)
    assert not dest.exists()
    assert _leftovers(dest.parent) == []

    dest.write_bytes(b"previous content")
    with pytest.raises(IntegrityError):
        store.get_file("files/x.bin", dest, expect_sha256="0" * 64)
    assert dest.read_bytes() == b"previous content"


def test_get_file_missing_key(store: ObjectStore, tmp_path: Path) -> None:
    dest = tmp_path / "nothing.bin"
    with pytest.raises(NotFound):
        store.get_file("no/such.bin", dest)
    assert not dest.exists()
    assert _leftovers(tmp_path) == []


# -- listing ----------------------------------------------------------------------------------
def test_list_more_than_1000_keys(store: ObjectStore) -> None:
    keys = [f"events/2026/05/{i:05d}.json" for i in range(1100)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: store.put(k, b"{}"), keys))
    store.put("events-other", b"x")
    assert list(store.list("events/")) == keys
    assert list(store.list("events/2026/05/0105")) == [
        f"events/2026/05/{i:05d}.json" for i in range(1050, 1060)
    ]


def test_list_prefix_semantics_and_order(store: ObjectStore) -> None:
    keys = ["p/a!", "p/a-c", "p/a.x", "p/a/b", "p/a0", "p/ab", "pp", "q/x"]
    for key in reversed(keys):
        store.put(key, b"x")
    assert list(store.list()) == keys
    assert list(store.list("")) == keys
    assert list(store.list("p/")) == keys[:6]
    assert list(store.list("p/a")) == keys[:6]
    assert list(store.list("p/a/")) == ["p/a/b"]
    assert list(store.list("p")) == keys[:7]
    assert list(store.list("p/a/b")) == ["p/a/b"]
    assert list(store.list("nothing/")) == []
    assert list(store.list("q/x")) == ["q/x"]
    store.delete("p/a/b")
    assert list(store.list("p/a/")) == []


def test_probe(store: ObjectStore) -> None:
    store.probe()
    assert [k for k in store.list() if k.startswith("_probe/")] == []


# -- blobs ------------------------------------------------------------------------------------
def test_blob_bytes_round_trip(store: ObjectStore) -> None:
    data = b"model weights"
    digest = put_blob_bytes(store, data)
    assert digest == "sha256:" + hashlib.sha256(data).hexdigest()
    hex_digest = digest.split(":")[1]
    assert blob_key(digest) == f"blobs/sha256/{hex_digest[:2]}/{hex_digest}"
    assert store.exists(blob_key(digest))
    assert put_blob_bytes(store, data) == digest  # idempotent
    assert get_blob_bytes(store, digest) == data


def test_blob_file_round_trip(store: ObjectStore, tmp_path: Path) -> None:
    data = os.urandom(6 * MiB + 7)
    src = _write(tmp_path / "model.ubj", data)
    digest = put_blob_file(store, src)
    assert digest == "sha256:" + hashlib.sha256(data).hexdigest()
    assert put_blob_file(store, src) == digest
    dest = get_blob_file(store, digest, tmp_path / "restored" / "model.ubj")
    assert dest.read_bytes() == data


def test_missing_blob(store: ObjectStore, tmp_path: Path) -> None:
    digest = "sha256:" + "ab" * 32
    with pytest.raises(NotFound) as info:
        get_blob_bytes(store, digest)
    assert digest in str(info.value)
    with pytest.raises(NotFound):
        get_blob_file(store, digest, tmp_path / "x")


def test_corrupted_blob_is_detected(store: ObjectStore, tmp_path: Path) -> None:
    digest = put_blob_bytes(store, b"the real artifact")
    key = blob_key(digest)
    store.put(key, b"tampered bytes")
    with pytest.raises(IntegrityError) as info:
        get_blob_bytes(store, digest)
    assert key in str(info.value) and "corrupt" in str(info.value)
    assert info.value.exit_code == ExitCode.ERROR
    dest = tmp_path / "artifact"
    with pytest.raises(IntegrityError) as info:
        get_blob_file(store, digest, dest)
    assert key in str(info.value) and "corrupt" in str(info.value)
    assert not dest.exists()


# -- garbage collection helpers ------------------------------------------------------------
def test_list_info(store: ObjectStore) -> None:
    import time

    before = time.time() - 5
    store.put("g/b", b"12345")
    store.put("g/a", b"1")
    store.put("h", b"x")
    infos = list(store.list_info("g/"))
    assert [(i.key, i.size) for i in infos] == [("g/a", 1), ("g/b", 5)]
    for info in infos:
        assert info.modified is not None and before < info.modified < time.time() + 5
        assert info.etag in ("", store.stat(info.key).etag)


def _leave_stale_upload(store: ObjectStore) -> None:
    if store.scheme == "s3":
        s3: Any = store
        s3.bulk_client.create_multipart_upload(Bucket=s3.bucket, Key=s3.prefix + "blobs/dead")
    else:
        local: Any = store
        folder = local.root / "blobs"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ".mlopsctl-tmp-dead").write_bytes(b"half a blob")


def test_stale_uploads_are_listed_and_aborted(store: ObjectStore) -> None:
    assert list(store.stale_uploads(older_than_s=0)) == []
    _leave_stale_upload(store)
    assert list(store.stale_uploads(older_than_s=3600)) == []  # too young to be called stale
    (upload,) = store.stale_uploads(older_than_s=0)
    assert upload.startswith("blobs/")
    assert list(store.list()) == []
    store.abort_upload(upload)
    store.abort_upload(upload)  # already gone: fine
    assert list(store.stale_uploads(older_than_s=0)) == []
    with pytest.raises(UsageError):
        store.abort_upload("runs/not-an-upload.json")
