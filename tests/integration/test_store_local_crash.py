"""A write that dies half way leaves the old object intact and no temp file visible as a key."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mlopsctl.errors import StoreError
from mlopsctl.store.local import TEMP_PREFIX, LocalStore


def _temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(TEMP_PREFIX)]


class Boom(Exception):
    pass


@pytest.mark.parametrize("method", ["put", "put_if_absent_new", "compare_and_swap", "put_file"])
def test_failing_rename_keeps_old_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    store = LocalStore(tmp_path / "s")
    etag = store.put("models/m/aliases/prod.json", b"old")
    src = tmp_path / "new.bin"
    src.write_bytes(b"new" * 100_000)

    def fail(*args: object) -> None:
        raise Boom("crash during rename")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(Boom):
        if method == "put":
            store.put("models/m/aliases/prod.json", b"new")
        elif method == "put_if_absent_new":
            store.put_if_absent("models/m/aliases/other.json", b"new")
        elif method == "compare_and_swap":
            store.compare_and_swap("models/m/aliases/prod.json", b"new", etag)
        else:
            store.put_file("models/m/aliases/prod.json", src)
    monkeypatch.undo()
    assert store.get("models/m/aliases/prod.json") == b"old"
    assert list(store.list()) == ["models/m/aliases/prod.json"]
    assert _temp_files(store.root) == []


def test_failing_write_keeps_old_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalStore(tmp_path)
    store.put("k", b"old")
    real_write = os.write
    calls = {"n": 0}

    def flaky_write(fd: int, data: object) -> int:
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError(28, "No space left on device")
        return real_write(fd, memoryview(data)[:10])  # type: ignore[arg-type]

    monkeypatch.setattr(os, "write", flaky_write)
    with pytest.raises(StoreError) as info:
        store.put("k", b"x" * 1000)
    monkeypatch.undo()
    assert "no space left" in str(info.value)
    assert store.get("k") == b"old"
    assert _temp_files(tmp_path) == []


_KILLED_WRITER = textwrap.dedent(
    """
    import os, sys, time
    from mlopsctl.store.local import LocalStore

    def hang(fd):
        # The temp file is complete but not yet renamed: the worst moment to die.
        print("writing", flush=True)
        time.sleep(60)

    os.fsync = hang
    store = LocalStore(sys.argv[1])
    if sys.argv[2] == "file":
        store.put_file("runs/r1.json", sys.argv[3])
    else:
        store.put("runs/r1.json", b"new content that never lands" * 1000)
    """
)


@pytest.mark.parametrize("how", ["bytes", "file"])
def test_sigkill_mid_write_keeps_old_content(tmp_path: Path, how: str) -> None:
    root = tmp_path / "store"
    store = LocalStore(root)
    store.put("runs/r1.json", b"old")
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(3 << 20))
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(root), how, str(src)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "writing"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    assert store.get("runs/r1.json") == b"old"
    assert list(store.list()) == ["runs/r1.json"]
    assert list(store.list("runs/")) == ["runs/r1.json"]
    # The dead writer's temp file is still there, proving the crash happened mid-write; it is
    # simply never a key.
    assert len(_temp_files(root)) == 1
    store.put("runs/r1.json", b"after the crash")
    assert store.get("runs/r1.json") == b"after the crash"
