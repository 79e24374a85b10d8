"""The local store writes only inside its own folder: a symbolic link anywhere between the store
root and a key (a linked `events/`, a linked blob folder, a linked object or lock file) makes
the write fail in one line naming the link, and nothing is written where it points."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from mlopsctl.digest import sha256_bytes
from mlopsctl.errors import ExitCode, StoreError
from mlopsctl.events import list_events, record_event
from mlopsctl.store.blobs import blob_key, get_blob_bytes, put_blob_bytes, put_blob_file
from mlopsctl.store.local import LOCK_NAME, LocalStore


def _everything(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "keep.txt").write_text("not the store's\n")
    return folder


def test_a_linked_events_folder_is_refused(tmp_path: Path, outside: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.put("runs/r1.json", b"{}")  # the store exists and works
    (store.root / "events").symlink_to(outside, target_is_directory=True)
    before = _everything(outside)

    with pytest.raises(StoreError) as caught:
        record_event(store, "approval", model="m", version=1, by="a@example.com")
    message = caught.value.one_line()
    assert caught.value.exit_code == ExitCode.ERROR
    assert f"{store.root}/events is a symbolic link" in message
    assert "replace the link with a real folder" in message
    assert "\n" not in message
    assert _everything(outside) == before  # no folder, no temp file, no event

    for write in (
        lambda: store.put("events/2025/01/x.json", b"{}"),
        lambda: store.put_if_absent("events/x.json", b"{}"),
        lambda: store.compare_and_swap("events/x.json", b"{}", None),
    ):
        with pytest.raises(StoreError, match="is a symbolic link"):
            write()
    with pytest.raises(StoreError, match="is a symbolic link"):
        store.delete("events/keep.txt")  # a delete through the link is a write outside
    assert _everything(outside) == before


def test_a_linked_blob_folder_is_refused(tmp_path: Path, outside: Path) -> None:
    store = LocalStore(tmp_path / "store")
    data = b"model bytes"
    key = blob_key(put_blob_bytes(store, b"something else"))
    wanted = blob_key(sha256_bytes(data))
    fan_out = store.root / Path(wanted).parent
    fan_out.parent.mkdir(parents=True, exist_ok=True)
    fan_out.symlink_to(outside, target_is_directory=True)
    before = _everything(outside)
    source = tmp_path / "model.bin"
    source.write_bytes(data)

    with pytest.raises(
        StoreError, match=re.escape(f"{Path(wanted).parent.as_posix()} is a symbolic link")
    ):
        put_blob_bytes(store, data)
    with pytest.raises(StoreError, match="is a symbolic link"):
        put_blob_file(store, source)
    assert _everything(outside) == before
    assert store.exists(key)  # the rest of the store is untouched

    # A link higher up (the whole blobs/ folder) is refused just the same.
    real = store.root / "blobs"
    moved = tmp_path / "blobs-elsewhere"
    real.rename(moved)
    real.symlink_to(moved, target_is_directory=True)
    with pytest.raises(StoreError, match=re.escape(f"{store.root}/blobs is a symbolic link")):
        put_blob_bytes(store, b"third")


def test_a_linked_object_and_lock_file_are_refused(tmp_path: Path, outside: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.put("models/m/latest.json", b"1")
    target = outside / "keep.txt"
    link = store.root / "models/m/latest.json"
    link.unlink()
    link.symlink_to(target)
    with pytest.raises(StoreError, match=r"latest\.json is a symbolic link"):
        store.put("models/m/latest.json", b"2")
    with pytest.raises(StoreError, match=r"latest\.json is a symbolic link"):
        store.compare_and_swap("models/m/latest.json", b"2", None)
    assert target.read_text() == "not the store's\n"
    assert link.is_symlink()

    link.unlink()
    lock = store.root / LOCK_NAME
    lock.unlink()
    lock.symlink_to(outside / "lock")
    with pytest.raises(StoreError, match=re.escape(f"{LOCK_NAME} is a symbolic link")):
        store.put("models/m/latest.json", b"3")
    assert not (outside / "lock").exists()


def test_reads_follow_links_and_a_linked_root_is_fine(tmp_path: Path, outside: Path) -> None:
    # The root itself may be a link (a store kept on another disk): only what is below it is
    # checked. Reads still follow links below the root (see the README's Security model).
    real = tmp_path / "disk/store"
    real.mkdir(parents=True)
    (tmp_path / "linked").symlink_to(real, target_is_directory=True)
    store = LocalStore(tmp_path / "linked")
    digest = put_blob_bytes(store, b"fine")
    record_event(store, "approval", model="m", version=1, by="a@example.com")
    assert get_blob_bytes(store, digest) == b"fine"
    assert [e["by"] for e in list_events(store)] == ["a@example.com"]

    (real / "shared").symlink_to(outside, target_is_directory=True)
    assert store.get("shared/keep.txt") == b"not the store's\n"


def test_the_check_costs_little_on_a_put(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    key = "events/2025/01/some-event.json"
    store.put(key, b"{}")
    rounds = 200
    started = time.perf_counter()
    for _ in range(rounds):
        store._check_write_path(key, create=True)
    check = (time.perf_counter() - started) / rounds
    started = time.perf_counter()
    for _ in range(rounds):
        store.put(key, b"{}")
    put = (time.perf_counter() - started) / rounds
    # A few lstat calls next to a temp file, an fsync and a rename: about 3% of a put on a
    # disk; the bound is loose so that a tmpfs (no real fsync) or a busy machine passes too.
    assert check < 0.5 * put, (check, put)
    assert os.path.isfile(store.root / key)
