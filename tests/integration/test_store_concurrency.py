"""Racing writers: put_if_absent has exactly one winner, CAS loses no update.

Threads run on every backend; the local backend is also raced from separate processes, since
its lock must hold across processes (two CI jobs on one machine) as well as threads.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mlopsctl.errors import AlreadyExists, Conflict
from mlopsctl.store import ObjectStore

WORKERS = 8
ROUNDS = 5


def _increment(store: ObjectStore, key: str, times: int) -> int:
    conflicts = 0
    for _ in range(times):
        while True:
            data, etag = store.get_versioned(key)
            try:
                store.compare_and_swap(key, str(int(data) + 1).encode(), etag)
                break
            except Conflict:
                conflicts += 1
    return conflicts


def test_put_if_absent_race_threads(store: ObjectStore) -> None:
    barrier = threading.Barrier(WORKERS)

    def contender(worker: int) -> list[int]:
        won = []
        for round_ in range(ROUNDS):
            barrier.wait()
            try:
                store.put_if_absent(f"race/{round_}", f"worker-{worker}".encode())
                won.append(round_)
            except AlreadyExists:
                pass
        return won

    with ThreadPoolExecutor(WORKERS) as pool:
        results = list(pool.map(contender, range(WORKERS)))
    for round_ in range(ROUNDS):
        winners = [w for w, rounds in enumerate(results) if round_ in rounds]
        assert len(winners) == 1, f"round {round_}: winners {winners}"
        assert store.get(f"race/{round_}") == f"worker-{winners[0]}".encode()


def test_cas_counter_threads(store: ObjectStore) -> None:
    per_worker = 8
    store.put("counter", b"0")
    with ThreadPoolExecutor(WORKERS) as pool:
        conflicts = list(
            pool.map(lambda _: _increment(store, "counter", per_worker), range(WORKERS))
        )
    assert store.get("counter") == str(WORKERS * per_worker).encode()
    # Not required, but without any conflict the test would not have raced at all.
    assert sum(conflicts) > 0


_WORKER = textwrap.dedent(
    """
    import json, sys, time
    from mlopsctl.errors import AlreadyExists, Conflict
    from mlopsctl.store.local import LocalStore

    root, mode, worker, count, start_at = sys.argv[1:6]
    store = LocalStore(root)
    time.sleep(max(0.0, float(start_at) - time.time()))
    out = []
    if mode == "race":
        for round_ in range(int(count)):
            try:
                store.put_if_absent(f"race/{round_}", f"worker-{worker}".encode())
                out.append(round_)
            except AlreadyExists:
                pass
    else:
        for _ in range(int(count)):
            while True:
                data, etag = store.get_versioned("counter")
                try:
                    store.compare_and_swap("counter", str(int(data) + 1).encode(), etag)
                    break
                except Conflict:
                    pass
    print(json.dumps(out))
    """
)


def _run_processes(root: Path, mode: str, count: int) -> list[list[int]]:
    # Every process waits for the same instant, so they really overlap despite start-up time.
    start_at = time.time() + 2.0
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(root), mode, str(w), str(count), str(start_at)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(WORKERS)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    return results


def test_put_if_absent_race_processes(tmp_path: Path) -> None:
    from mlopsctl.store.local import LocalStore

    rounds = 20
    results = _run_processes(tmp_path, "race", rounds)
    store = LocalStore(tmp_path)
    for round_ in range(rounds):
        winners = [w for w, won in enumerate(results) if round_ in won]
        assert len(winners) == 1, f"round {round_}: winners {winners}"
        assert store.get(f"race/{round_}") == f"worker-{winners[0]}".encode()


def test_cas_counter_processes(tmp_path: Path) -> None:
    from mlopsctl.store.local import LocalStore

    store = LocalStore(tmp_path)
    store.put("counter", b"0")
    per_worker = 15
    _run_processes(tmp_path, "counter", per_worker)
    assert store.get("counter") == str(WORKERS * per_worker).encode()


@pytest.mark.parametrize("threads", [WORKERS])
def test_cas_counter_threads_fresh_instances(tmp_path: Path, threads: int) -> None:
    """One LocalStore per thread: the lock must not depend on sharing an instance."""
    from mlopsctl.store.local import LocalStore

    LocalStore(tmp_path).put("counter", b"0")
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda _: _increment(LocalStore(tmp_path), "counter", 8), range(threads)))
    assert LocalStore(tmp_path).get("counter") == str(threads * 8).encode()
