"""The registry under racing CLI processes, on the local folder store and on a real SeaweedFS
server: N processes registering one model get N distinct versions, and N processes moving one
alias with --expect lose no move, every move landing in the history and the audit log.

One artifact is one version: N processes (or threads, each with its own store object)
registering the same run output make exactly one version, the others answering "already
registered as N"; a registration killed between any two of its writes leaves nothing that a
later one cannot find; a store from before the digest index still finds any earlier version.

Every racer is a real `mlopsctl` process. Registrations wait on a start line after their
imports, so that all of them are in the registry code at once rather than one after the other.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mlopsctl.events import list_events
from mlopsctl.models.artifact import FORMAT
from mlopsctl.registry import (
    alias_history,
    get_alias,
    register_from_run,
    register_version,
    set_alias,
    version_numbers,
)
from mlopsctl.runs import load_run, new_run_id, now_iso, save_run
from mlopsctl.store.artifacts import store_output
from mlopsctl.store.base import ObjectStore
from mlopsctl.store.blobs import blob_key
from tests.racing import release_together

RACERS = 8
# Moves each mover must win. Each S3 command builds a boto3 client (~0.1 s of CPU), and the
# test machine has two cores: one move per mover keeps the S3 race to a few seconds.
MOVES_EACH = {"local": 2, "s3": 1}
DEADLINE_S = 90.0

# The command runs in-process after the imports every registry command pays for, and only once
# the test writes the start line: the racers then really overlap instead of being spread out
# by interpreter start-up. It prints when it ran so the test can see the overlap.
_RACER = """
import sys, time
import boto3  # noqa: F401  (the S3 store imports it on first use: not part of the race)
from mlopsctl.cli.main import main
import mlopsctl.registry, mlopsctl.runs, mlopsctl.store.s3, mlopsctl.store.local  # noqa: F401
print("ready", flush=True)
sys.stdin.readline()
started = time.time()
try:
    main(sys.argv[1:])
finally:
    sys.stderr.write(f"\\nwindow {started} {time.time()}\\n")
"""


@dataclass
class Registry:
    """A store and a project folder whose mlops.yaml points at it, for CLI processes."""

    store: ObjectStore
    project: Path
    tmp: Path
    backend: str
    open_store: Callable[[], ObjectStore]  # another store object on the same store

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mlopsctl", *args],
            cwd=self.project,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def make_project(tmp: Path, store_url: str, endpoint: str | None) -> Path:
    project = tmp / "project"
    project.mkdir()
    s3 = f"  s3: {{endpoint_url: '{endpoint}'}}\n" if endpoint else ""
    (project / "mlops.yaml").write_text(
        f"apiVersion: mlopsctl/v1\nkind: Project\nname: racers\nstore:\n  url: {store_url}\n{s3}"
    )
    return project


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def registry(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Registry]:
    monkeypatch.delenv("MLOPSCTL_STORE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    if request.param == "local":
        from mlopsctl.store.local import LocalStore

        with LocalStore(tmp_path / "store") as local:
            project = make_project(tmp_path, str(tmp_path / "store"), None)
            yield Registry(
                local, project, tmp_path, "local", lambda: LocalStore(tmp_path / "store")
            )
    else:
        s3_url = request.getfixturevalue("s3_url")
        endpoint = request.getfixturevalue("s3_env").endpoint
        make = request.getfixturevalue("make_s3_store")
        project = make_project(tmp_path, s3_url, endpoint)
        yield Registry(make(), project, tmp_path, "s3", make)


# -- fabricated runs: what a training pipeline leaves in the store, without the training --------
def store_fake_model(store: ObjectStore, tmp: Path, tag: str) -> dict[str, Any]:
    """A model folder blob (model.json and one file, digests recorded) that is distinct per tag."""
    import hashlib

    folder = tmp / f"model-{tag}"
    folder.mkdir(parents=True)
    weights = f"weights of {tag}".encode()
    (folder / "model.skops").write_bytes(weights)
    meta = {
        "format": FORMAT,
        "flavor": "sklearn",
        "files": {"model.skops": "sha256:" + hashlib.sha256(weights).hexdigest()},
        "estimator_class": "sklearn.linear_model.LogisticRegression",
        "params": {"tag": tag},
        "task": "classification",
        "target": "y",
        "classes": [0, 1],
        "features": [{"name": "x", "dtype": "float64", "kind": "numeric"}],
    }
    (folder / "model.json").write_text(json.dumps(meta, sort_keys=True))
    return store_output(store, folder, tmp)


def save_fake_run(store: ObjectStore, artifact: dict[str, Any]) -> str:
    """A succeeded run record, complete as `mlopsctl run` writes one, whose train step made
    `artifact`."""
    import platform

    from mlopsctl import __version__
    from mlopsctl.digest import sha256_bytes

    run_id = new_run_id()
    now = now_iso()
    save_run(
        store,
        {
            "id": run_id,
            "kind": "pipeline",
            "pipeline": "racers",
            "experiment": "racers",
            "status": "succeeded",
            "spec": {"path": "pipelines/racers.yaml", "digest": sha256_bytes(b"racers")},
            "params": {"artifact": artifact["digest"]},
            "overrides": [],
            "started": now,
            "ended": now,
            "duration_s": 0.5,
            "git": {},
            "user": {"name": "ci", "source": "os"},
            "where": {
                "host": "ci-runner",
                "platform": platform.platform(),
                "python": platform.python_version(),
                "ci": True,
            },
            "environment": {
                "mlopsctl": __version__,
                "python": platform.python_version(),
                "libraries": {},
            },
            "image": None,
            "store": None,
            "data": {},
            "order": ["train"],
            "steps": {
                "train": {
                    "status": "executed",
                    "inputs": {},
                    "outputs": {"model": artifact},
                    "metrics": {"fit_seconds": 0.5},
                }
            },
            "metrics": {"fit_seconds": 0.5},
        },
    )
    return run_id


def most_at_once(windows: list[tuple[float, float]]) -> int:
    """The largest number of (start, end) windows open at one instant."""
    edges = sorted([(s, 1) for s, _ in windows] + [(e, -1) for _, e in windows])
    best = now = 0
    for _, step in edges:
        now += step
        best = max(best, now)
    return best


# -- registering -------------------------------------------------------------------------------
def test_racing_registrations_get_distinct_versions(registry: Registry) -> None:
    store = registry.store
    runs = {}
    for i in range(RACERS):
        artifact = store_fake_model(store, registry.tmp, f"racer-{i}")
        runs[save_fake_run(store, artifact)] = artifact["digest"]

    commands = [
        ["models", "register", "churn", "--run", run_id, "--output", "train.model", "--json"]
        for run_id in runs
    ]
    results = release_together(_RACER, commands, registry.project, timeout=DEADLINE_S)

    windows = []
    registered = {}
    for code, out, err in results:
        assert code == 0, err
        record = json.loads(out)
        registered[record["version"]] = record
        start, end = err.strip().splitlines()[-1].split()[1:]
        windows.append((float(start), float(end)))
    assert most_at_once(windows) >= 2, f"the registrations did not overlap: {windows}"

    assert sorted(registered) == list(range(1, RACERS + 1))
    for version, record in registered.items():
        assert runs[record["run"]["id"]] == record["artifact"]["digest"]
        stored = json.loads(store.get(f"models/churn/versions/{version}.json"))
        assert stored == record
        assert store.exists(blob_key(record["artifact"]["digest"]))
    events = list_events(store, model="churn", kind="register")
    assert sorted(e["version"] for e in events) == list(range(1, RACERS + 1))
    assert {e["run"] for e in events} == set(runs)

    listed = registry.cli("models", "list", "churn", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [v["version"] for v in json.loads(listed.stdout)] == list(range(1, RACERS + 1))
    latest = registry.cli("models", "show", "churn", "--json")
    assert latest.returncode == 0, latest.stderr
    assert json.loads(latest.stdout)["version"] == RACERS


# -- registering one artifact: one version ------------------------------------------------------
def racing_cli(registry: Registry, commands: list[list[str]]) -> list[tuple[int, str, str]]:
    """Run each command in its own `mlopsctl` process, all released at once; (code, out, err)
    of each, the error output without the timing line, after checking that they overlapped."""
    results = release_together(_RACER, commands, registry.project, timeout=DEADLINE_S)
    windows, answers = [], []
    for code, out, err in results:
        lines = err.strip().splitlines()
        start, end = lines[-1].split()[1:]
        windows.append((float(start), float(end)))
        answers.append((code, out, "\n".join(lines[:-1])))
    assert most_at_once(windows) >= 2, f"the commands did not overlap: {windows}"
    return answers


def test_racing_registrations_of_one_run_output_make_one_version(registry: Registry) -> None:
    store = registry.store
    artifact = store_fake_model(store, registry.tmp, "same")
    run_id = save_fake_run(store, artifact)
    register = ["models", "register", "churn", "--run", run_id, "--output", "train.model"]

    answers = racing_cli(registry, [register] * RACERS)
    said = []
    for code, out, err in answers:
        assert code == 0, err
        said.append(out.strip())
    assert sorted(said) == ["already registered as churn:1"] * (RACERS - 1) + ["registered churn:1"]
    assert version_numbers(store, "churn") == [1]
    assert [e["version"] for e in list_events(store, model="churn", kind="register")] == [1]
    again = registry.cli(*register)
    assert (again.returncode, again.stdout.strip()) == (0, "already registered as churn:1")


def test_racing_threads_with_their_own_stores_make_one_version(registry: Registry) -> None:
    """Threads, each with its own store object, some registering the output of another run
    that made the same model (a re-run served from the cache): still one version."""
    store = registry.store
    artifact = store_fake_model(store, registry.tmp, "same")
    runs = [load_run(store, save_fake_run(store, artifact)) for _ in range(2)]
    start = threading.Barrier(RACERS)

    def register(i: int) -> dict[str, Any]:
        own = registry.open_store()
        try:
            start.wait(timeout=30)
            return register_from_run(own, runs[i % 2], "churn", "train.model")
        finally:
            own.close()

    with ThreadPoolExecutor(max_workers=RACERS) as pool:
        records = list(pool.map(register, range(RACERS)))
    assert {r["version"] for r in records} == {1}
    assert sum(1 for r in records if not r.get("existing")) == 1
    assert version_numbers(store, "churn") == [1]
    stored = json.loads(store.get("models/churn/versions/1.json"))
    assert stored["artifact"]["digest"] == artifact["digest"]
    assert stored["run"]["id"] in {r["id"] for r in runs}
    assert len(list_events(store, model="churn", kind="register")) == 1


class Crash(BaseException):
    """Stands for SIGKILL: nothing in the registry catches it, so no clean-up code runs."""


def test_a_registration_killed_between_any_two_writes_leaves_one_findable_version(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = registry.store
    writes = {"put": store.put, "put_if_absent": store.put_if_absent}
    if hasattr(store, "compare_and_swap"):
        writes["compare_and_swap"] = store.compare_and_swap
    crashed_at: list[str] = []
    for dies_at in itertools.count():
        name = f"crashy-{dies_at}"
        artifact = store_fake_model(store, registry.tmp, name)
        run = load_run(store, save_fake_run(store, artifact))
        done = itertools.count()

        def dying(method: str) -> Callable[..., Any]:
            real = writes[method]

            def write(key: str, *args: Any) -> Any:
                if next(done) == dies_at:  # noqa: B023 (each model gets its own counter)
                    crashed_at.append(key)
                    raise Crash(key)
                return real(key, *args)

            return write

        for method in writes:
            monkeypatch.setattr(store, method, dying(method))
        try:
            register_from_run(store, run, name, "train.model")
            finished = True
        except Crash:
            finished = False
        finally:
            for method, real in writes.items():
                monkeypatch.setattr(store, method, real)
        first = register_from_run(store, run, name, "train.model")
        again = register_from_run(store, run, name, "train.model")
        assert version_numbers(store, name) == [1], (dies_at, crashed_at[-1:])
        assert first["version"] == again["version"] == 1
        assert again.get("existing") is True
        if finished:
            assert first.get("existing") is True
            break
    assert len(crashed_at) >= 3, crashed_at  # it died at each of its writes in turn


def test_a_store_from_before_the_index_finds_any_earlier_version(registry: Registry) -> None:
    store = registry.store
    first = load_run(store, save_fake_run(store, store_fake_model(store, registry.tmp, "a")))
    second = load_run(store, save_fake_run(store, store_fake_model(store, registry.tmp, "b")))
    assert register_from_run(store, first, "churn", "train.model")["version"] == 1
    assert register_from_run(store, second, "churn", "train.model")["version"] == 2
    for key in store.list("models/churn/"):
        if "by-digest" in key:
            store.delete(key)  # what a store registered to by an older mlopsctl looks like

    again = register_from_run(store, first, "churn", "train.model")
    assert (again["version"], again.get("existing")) == (1, True)  # not just the latest
    assert any("by-digest/" in key for key in store.list("models/churn/"))  # the index filled
    assert register_from_run(store, second, "churn", "train.model")["version"] == 2
    assert version_numbers(store, "churn") == [1, 2]


# -- moving an alias ---------------------------------------------------------------------------
# One mover process runs `mlopsctl models show` and `mlopsctl models alias set --expect` through
# the CLI entry point in a loop (retrying a lost compare-and-swap, as a CI job would), so the
# race is between eight processes without paying interpreter start-up on every attempt.
_MOVER = """
import contextlib, io, json, random, sys, time
import boto3  # noqa: F401
from mlopsctl.cli.main import main
import mlopsctl.registry, mlopsctl.store.s3, mlopsctl.store.local  # noqa: F401


def mlopsctl(*args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    return code, out.getvalue(), err.getvalue()


worker, moves, versions, deadline = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
rng = random.Random(worker)
print("ready", flush=True)
sys.stdin.readline()
won, conflicts = [], 0
while len(won) < moves:
    if time.time() > deadline:
        sys.exit(f"mover {worker}: out of time after {len(won)} moves, {conflicts} conflicts")
    code, out, err = mlopsctl("models", "show", "churn@production", "--json")
    if code:
        sys.exit(f"show exited {code}: {err}")
    current = json.loads(out)["version"]
    target = rng.choice([v for v in range(1, versions + 1) if v != current])
    reason = f"mover-{worker}-move-{len(won)}"
    code, out, err = mlopsctl(
        "models", "alias", "set", "churn", "production", str(target),
        "--expect", str(current), "--reason", reason,
    )
    if code == 7:
        if "churn@production" not in err:
            sys.exit(f"conflict without naming the alias: {err}")
        conflicts += 1
        time.sleep(rng.uniform(0, 0.02))
        continue
    if code:
        sys.exit(f"alias set exited {code}: {err}")
    won.append({"reason": reason, "expected": current, "target": target, "said": out.strip()})
print(json.dumps({"won": won, "conflicts": conflicts}))
"""


def test_racing_alias_moves_with_expect_lose_nothing(registry: Registry) -> None:
    store = registry.store
    artifact = store_fake_model(store, registry.tmp, "shared")
    for _ in range(RACERS):
        register_version(store, "churn", {"artifact": artifact})
    set_alias(store, "churn", "production", 1, reason="initial")
    moves = MOVES_EACH[registry.backend]

    deadline = time.time() + DEADLINE_S
    commands = [[str(w), str(moves), str(RACERS), str(deadline)] for w in range(RACERS)]
    results = release_together(_MOVER, commands, registry.project, timeout=DEADLINE_S + 10)

    moved: dict[str, tuple[int, int]] = {}  # reason -> (expected, target) of each move that won
    conflicts = 0
    for code, out, err in results:
        assert code == 0, err
        report = json.loads(out)
        conflicts += report["conflicts"]
        for move in report["won"]:
            assert move["said"] == f"churn@production: {move['expected']} -> {move['target']}"
            moved[move["reason"]] = (move["expected"], move["target"])
    assert len(moved) == RACERS * moves
    assert conflicts > 0, "no move ever lost a race: the movers did not overlap"

    history = alias_history(store, "churn", "production")
    assert [m["seq"] for m in history] == list(range(1, RACERS * moves + 2))
    assert history[0]["reason"] == "initial" and history[0]["previous"] is None
    for before, after in itertools.pairwise(history):
        # Each move replaced exactly the move before it: nothing was overwritten unseen.
        assert after["previous"] == before["version"], (before, after)
    assert {m["reason"]: (m["previous"], m["version"]) for m in history[1:]} == moved
    current, _ = get_alias(store, "churn", "production") or ({}, "")
    assert current == history[-1]

    events = list_events(store, model="churn", kind="alias_move")
    assert sorted(e["reason"] for e in events) == sorted(["initial", *moved])

    listed = registry.cli("models", "alias", "history", "churn", "production", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == history
