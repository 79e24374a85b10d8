"""A registry writer killed with SIGKILL halfway leaves a consistent registry, on the local
folder store and on a real SeaweedFS server:

- killed after the model blob is stored but before the version record: no version points at a
  missing blob, the next registration takes the next number, and `gc` removes the orphan;
- killed after winning an alias move but before writing its history entry: the move is still
  in the history, and the next move writes the missing entry;
- a write that landed but whose response was lost, so that the store's retry is refused as a
  duplicate (a fault injected in-process): the registration or move still happens exactly once.

The kill lands at a chosen point because the writer, a real process, stops there (its store
call is wrapped to announce itself and wait) and the test kills it while it waits.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
from typing import Any

import pytest

from mlopsctl.errors import AlreadyExists, Conflict
from mlopsctl.events import list_events
from mlopsctl.registry import (
    alias_history,
    get_alias,
    register_version,
    set_alias,
    version_numbers,
)
from mlopsctl.store.blobs import blob_key
from tests.integration import test_registry_concurrency as shared
from tests.integration.test_registry_concurrency import Registry, save_fake_run, store_fake_model

registry = shared.registry  # the same local + S3 fixture as the race tests

_KILLED_WRITER = """
import json, sys, time
from pathlib import Path
from mlopsctl.config import load_project, open_project_store
from mlopsctl.store.artifacts import store_output
from mlopsctl.registry import get_alias, register_version, set_alias

project, mode, arg = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
store = open_project_store(load_project(project))
real_put_if_absent = store.put_if_absent
stop_at = None


def put_if_absent(key, data):
    if key == stop_at:
        print(json.dumps({"stopped_before": key}), flush=True)
        time.sleep(300)  # killed here
    return real_put_if_absent(key, data)


store.put_if_absent = put_if_absent
if mode == "register":
    folder = Path(arg)
    artifact = store_output(store, folder, folder.parent)  # the model blob is in the store now
    stop_at = "models/crashy/versions/2.json"
    register_version(store, "crashy", {"artifact": artifact, "note": "never lands"})
else:
    seq = get_alias(store, "crashy", "production")[0]["seq"] + 1
    stop_at = f"models/crashy/alias-history/production/{seq:010d}.json"
    set_alias(store, "crashy", "production", int(arg), reason="killed mover")
sys.exit("the writer was not stopped")
"""


def kill_writer_at(registry: Registry, mode: str, arg: str) -> dict[str, Any]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(registry.project), mode, arg],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, f"the writer died before its stop: {proc.communicate(timeout=30)[1]}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return dict(json.loads(line))


def seed_one_version(registry: Registry) -> dict[str, Any]:
    artifact = store_fake_model(registry.store, registry.tmp, "first")
    save_fake_run(registry.store, artifact)
    return register_version(registry.store, "crashy", {"artifact": artifact})


def kill_mid_registration(registry: Registry) -> str:
    """Kill a registration between its blob and its version record; the orphan's digest."""
    orphan = store_fake_model(registry.store, registry.tmp / "staging", "orphan")
    # Only the folder is handed to the writer: it stores the blob itself before it dies.
    registry.store.delete(blob_key(orphan["digest"]))
    stopped = kill_writer_at(registry, "register", str(registry.tmp / "staging" / "model-orphan"))
    assert stopped == {"stopped_before": "models/crashy/versions/2.json"}
    assert registry.store.exists(blob_key(orphan["digest"])), "the blob should have landed"
    return str(orphan["digest"])


def test_killed_registration_leaves_no_version_without_its_blob(registry: Registry) -> None:
    store = registry.store
    first = seed_one_version(registry)
    orphan = kill_mid_registration(registry)

    listed = registry.cli("models", "list", "crashy", "--json")
    assert listed.returncode == 0, listed.stderr
    versions = json.loads(listed.stdout)
    assert [v["version"] for v in versions] == [1]
    for version in versions:
        assert store.exists(blob_key(version["artifact"]["digest"]))
    assert orphan != first["artifact"]["digest"]

    # The registry is not wedged: the next registration takes the number the dead one was after.
    artifact = store_fake_model(store, registry.tmp, "second")
    run_id = save_fake_run(store, artifact)
    again = registry.cli("models", "register", "crashy", "--run", run_id, "--output", "train.model")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "registered crashy:2"
    fetched = registry.cli("models", "download", "crashy:2", str(registry.tmp / "got"))
    assert fetched.returncode == 0, fetched.stderr
    assert (registry.tmp / "got" / "model.json").is_file()


def test_gc_removes_the_orphan_of_a_killed_registration(registry: Registry) -> None:
    store = registry.store
    first = seed_one_version(registry)
    orphan = kill_mid_registration(registry)

    collected = registry.cli("gc", "--grace", "0", "--json")
    assert collected.returncode == 0, collected.stderr
    report = json.loads(collected.stdout)
    assert blob_key(orphan) in report["blobs_deleted"]
    assert blob_key(first["artifact"]["digest"]) not in report["blobs_deleted"]
    assert not store.exists(blob_key(orphan))
    fetched = registry.cli("models", "download", "crashy:1", str(registry.tmp / "got"))
    assert fetched.returncode == 0, fetched.stderr


def test_alias_move_killed_before_its_history_entry_stays_in_the_history(
    registry: Registry,
) -> None:
    store = registry.store
    artifact = store_fake_model(store, registry.tmp, "shared")
    for _ in range(3):
        register_version(store, "crashy", {"artifact": artifact})
    set_alias(store, "crashy", "production", 1, reason="first")

    stopped = kill_writer_at(registry, "alias", "2")
    history_key = "models/crashy/alias-history/production/0000000002.json"
    assert stopped == {"stopped_before": history_key}
    current, _ = get_alias(store, "crashy", "production") or ({}, "")
    assert current["version"] == 2 and current["reason"] == "killed mover"  # the move won
    assert not store.exists(history_key)

    shown = registry.cli("models", "alias", "history", "crashy", "production", "--json")
    assert shown.returncode == 0, shown.stderr
    assert [m["reason"] for m in json.loads(shown.stdout)] == ["first", "killed mover"]

    moved = registry.cli(
        "models", "alias", "set", "crashy", "production", "3", "--expect", "2", "-m", "next"
    )
    assert moved.returncode == 0, moved.stderr
    assert store.exists(history_key), "the next move should have written the missing entry"
    history = alias_history(store, "crashy", "production")
    assert [(m["seq"], m["version"], m["reason"]) for m in history] == [
        (1, 1, "first"),
        (2, 2, "killed mover"),
        (3, 3, "next"),
    ]
    for before, after in itertools.pairwise(history):
        assert after["previous"] == before["version"]


def test_writes_retried_after_a_lost_response_happen_once(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = registry.store
    artifact = store_fake_model(store, registry.tmp, "flaky")
    real_put_if_absent, real_cas = store.put_if_absent, store.compare_and_swap

    def put_if_absent(key: str, data: bytes) -> str:
        real_put_if_absent(key, data)
        if "/versions/" in key:
            raise AlreadyExists(f"{key} already exists")  # the retry of a write that landed
        return ""

    def compare_and_swap(key: str, data: bytes, expected_etag: str | None) -> str:
        real_cas(key, data, expected_etag)
        raise Conflict(f"{key} changed since it was read")  # likewise

    monkeypatch.setattr(store, "put_if_absent", put_if_absent)
    monkeypatch.setattr(store, "compare_and_swap", compare_and_swap)
    first = register_version(store, "flaky", {"artifact": artifact})
    second = register_version(store, "flaky", {"artifact": artifact})
    assert (first["version"], second["version"]) == (1, 2)
    assert version_numbers(store, "flaky") == [1, 2]

    moved = set_alias(store, "flaky", "production", 2, reason="lost response")
    assert moved["version"] == 2
    assert [m["id"] for m in alias_history(store, "flaky", "production")] == [moved["id"]]
    assert [e["reason"] for e in list_events(store, model="flaky", kind="alias_move")] == [
        "lost response"
    ]

    def lost_race(key: str, data: bytes, expected_etag: str | None) -> str:
        raise Conflict(f"{key} changed since it was read")  # nothing written: a real loss

    monkeypatch.setattr(store, "compare_and_swap", lost_race)
    with pytest.raises(Conflict, match="moved while this move was being made; it now points at"):
        set_alias(store, "flaky", "production", 1)
    assert len(alias_history(store, "flaky", "production")) == 1
