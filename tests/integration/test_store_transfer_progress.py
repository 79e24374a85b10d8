"""Both stores report the bytes of file transfers to the transfer observer (what the CLI's
progress bars show): every byte once, per part of a multipart transfer on S3 (a real
SeaweedFS server), and nothing at all when no observer is installed."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mlopsctl.store import transfer
from mlopsctl.store.local import LocalStore

PART = 5 << 20


class _Seen:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.transfers: list[dict[str, Any]] = []

    def __call__(self, direction: str, key: str, total: int) -> Any:
        entry: dict[str, Any] = {"direction": direction, "key": key, "total": total}
        entry.update(advances=[], closed=0)
        self.transfers.append(entry)
        seen = self

        class Meter:
            def advance(self, n: int) -> None:
                with seen.lock:
                    entry["advances"].append(n)

            def close(self) -> None:
                entry["closed"] += 1

        return Meter()


@pytest.fixture
def seen() -> Iterator[_Seen]:
    observer = _Seen()
    previous = transfer.set_observer(observer)
    yield observer
    transfer.set_observer(previous)


def _roundtrip(store: Any, tmp_path: Path, size: int) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes((bytes(range(256)) * (size // 256 + 1))[:size])
    store.put_file("blobs/big", source)
    store.get_file("blobs/big", tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == source.read_bytes()


@pytest.mark.s3
def test_s3_reports_every_part(
    make_s3_store: Callable[..., Any], tmp_path: Path, seen: _Seen
) -> None:
    size = 3 * PART + 4096  # four parts each way
    _roundtrip(make_s3_store(part_size=PART), tmp_path, size)
    up, down = seen.transfers
    assert (up["direction"], down["direction"]) == ("upload", "download")
    for entry in (up, down):
        assert entry["key"] == "blobs/big" and entry["total"] == size
        assert sum(entry["advances"]) == size and len(entry["advances"]) == 4
        assert entry["closed"] == 1


def test_local_reports_chunks(tmp_path: Path, seen: _Seen) -> None:
    size = (3 << 20) + 100
    _roundtrip(LocalStore(tmp_path / "store"), tmp_path, size)
    up, down = seen.transfers
    assert sum(up["advances"]) == size == sum(down["advances"])
    assert up["closed"] == down["closed"] == 1


def test_a_failing_observer_never_fails_a_transfer(tmp_path: Path) -> None:
    def broken(direction: str, key: str, total: int) -> Any:
        raise RuntimeError("display gone")

    previous = transfer.set_observer(broken)
    try:
        _roundtrip(LocalStore(tmp_path / "store"), tmp_path, 1 << 20)
    finally:
        transfer.set_observer(previous)
