"""Canary rollouts end to end on the local backend: `mlopsctl serve m@production` follows the
deployment record; a bounded load generator on loopback drives traffic; `release rollout`,
called as cron would, reads what the server logged.

* A worse candidate (its predict raises for inputs above x = 1.5, about a quarter of the
  traffic: the server answers those with 500) passes the offline release check, whose rows
  stay below that, and is rolled back by the first judged step: exit 4, all traffic back on
  the champion, the alias unchanged, and the server answers every request again.
* A good candidate walks 50% -> 100%, the alias moves to it and the deployment returns to one
  arm, which the server follows.

The latency gate is measured here too: `release check` serves the candidate with `mlopsctl
serve` and fails an impossible bound, passes a loose one.

The models are pickles (served with --trust) of small classes defined below, so the server
process imports this module: PYTHONPATH names the repository."""

from __future__ import annotations

import hashlib
import http.client
import json
import pickle
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlopsctl.store.local import LocalStore
from tests.func.test_models_integrity import benign_pipeline

from .test_serving_server import ServerProcess, server_env, start_server

REPO = Path(__file__).resolve().parents[2]
MODEL = "benign"
RELEASE = """\
apiVersion: mlopsctl/v1
kind: Release
name: canary
model: benign
candidate: latest
champion: production
evaluation: {data: eval.csv, target: y}
gates:
  - type: threshold
    metric: accuracy
    min: 0.6
promote:
  strategy: canary
  steps: [50, 100]
  hold: {duration: 1s, min_requests: 60}
  analysis:
    - {type: error_rate, max_increase: 0.05, min_requests: 40}
    - {type: latency, percentile: 90, max_ratio: 5, min_requests: 40}
"""


class Faulty:
    """A fitted pipeline that raises for rows with x above ``limit`` and waits ``delay``
    seconds per call: a candidate that really is worse, in ways an offline check can miss."""

    def __init__(self, inner: Any, limit: float = float("inf"), delay: float = 0.0) -> None:
        self.inner = inner
        self.limit = limit
        self.delay = delay

    def _frame(self, X: Any) -> pd.DataFrame:
        values = np.asarray(X, dtype="float64").reshape(len(X), -1)
        if (values[:, 0] > self.limit).any():
            raise ValueError(f"this candidate cannot score x above {self.limit}")
        if self.delay:
            time.sleep(self.delay)
        return pd.DataFrame({"x": values[:, 0]})

    def predict(self, X: Any) -> Any:
        return self.inner.predict(self._frame(X))

    def predict_proba(self, X: Any) -> Any:
        return self.inner.predict_proba(self._frame(X))


def register(store: LocalStore, tmp: Path, obj: Any) -> None:
    """One more pickle-flavour version of MODEL (features: x; classes no/yes; target y)."""
    from mlopsctl.models.artifact import FORMAT
    from mlopsctl.registry import register_version
    from mlopsctl.store.artifacts import store_output

    payload = pickle.dumps(obj)
    folder = tmp / f"artifact-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    (folder / "model.pkl").write_bytes(payload)
    meta = {
        "format": FORMAT,
        "flavor": "pickle",
        "files": {"model.pkl": "sha256:" + hashlib.sha256(payload).hexdigest()},
        "task": "classification",
        "target": "y",
        "classes": ["no", "yes"],
        "features": [{"name": "x", "dtype": "float64", "kind": "numeric"}],
    }
    (folder / "model.json").write_text(json.dumps(meta))
    artifact = store_output(store, folder, tmp)
    artifact["model_json"] = (
        "sha256:" + hashlib.sha256((folder / "model.json").read_bytes()).hexdigest()
    )
    register_version(
        store,
        MODEL,
        {
            "artifact": {**artifact, "flavor": "pickle"},
            "signature": {"task": "classification", "target": "y", "classes": ["no", "yes"]},
        },
    )


def env(root: Path) -> dict[str, str]:
    return server_env(root, PYTHONPATH=str(REPO))


def mlopsctl(root: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlopsctl", *args],
        cwd=root,
        env=env(root),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "canary"
    root.mkdir()
    (root / "mlops.yaml").write_text("apiVersion: mlopsctl/v1\nkind: Project\nname: canary\n")
    (root / ".git").mkdir()
    x = np.linspace(-3, 1.0, 60)
    pd.DataFrame({"x": x, "y": np.where(x > 0.4, "yes", "no")}).to_csv(
        root / "eval.csv", index=False
    )
    (root / "release.yaml").write_text(RELEASE)
    pipeline, _ = benign_pipeline()
    with LocalStore(root / ".mlops") as store:
        register(store, tmp_path, pipeline)  # 1: the champion
        register(store, tmp_path, Faulty(pipeline, limit=1.5))  # 2: fails on x > 1.5
    assert mlopsctl(root, "models", "alias", "set", MODEL, "production", "1").returncode == 0
    return root


def drive(server: ServerProcess, requests: int, rate: float = 150.0) -> dict[int, int]:
    """A bounded load on loopback: ``requests`` single-row requests with x uniform in [-3, 3]
    and fresh request ids (so they spread over the arms), from 4 connections at about
    ``rate`` per second in all. Returns the count of each status."""
    rng = np.random.default_rng(int(time.time()))
    xs = rng.uniform(-3, 3, requests).tolist()
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    todo = list(enumerate(xs))

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        try:
            while True:
                with lock:
                    if not todo:
                        return
                    number, x = todo.pop()
                body = json.dumps({"dataframe_split": {"columns": ["x"], "data": [[x]]}})
                conn.request(
                    "POST",
                    "/invocations",
                    body=body,
                    headers={
                        "Content-Type": "application/json",
                        "X-Request-ID": f"r{number}-{uuid.uuid4().hex[:6]}",
                    },
                )
                answer = conn.getresponse()
                answer.read()
                with lock:
                    statuses[answer.status] = statuses.get(answer.status, 0) + 1
                time.sleep(4.0 / rate)
        finally:
            conn.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return statuses


def wait_for(server: ServerProcess, text: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(text in line for line in server.lines):
            return
        time.sleep(0.1)
    raise AssertionError(f"the server never said {text!r}:\n" + "\n".join(server.lines[-20:]))


def rollout(root: Path) -> subprocess.CompletedProcess[str]:
    return mlopsctl(root, "release", "rollout", "release.yaml")


def deployment(root: Path) -> list[tuple[str, float]]:
    record = json.loads((root / ".mlops" / "deployments" / MODEL / f"{MODEL}.json").read_text())
    return [(a["arm"], a["weight"]) for a in record["arms"]]


def alias(root: Path) -> int:
    record = json.loads(
        (root / ".mlops" / "models" / MODEL / "aliases" / "production.json").read_text()
    )
    return int(record["version"])


def test_a_worse_candidate_rolls_back_and_a_good_one_is_promoted(
    root: Path, tmp_path: Path
) -> None:
    check = mlopsctl(root, "release", "check", "release.yaml", "--trust")
    assert check.returncode == 0, check.stdout + check.stderr  # offline, the fault is not seen

    server = start_server(
        root,
        f"{MODEL}@production",
        "--trust",
        "--log-interval",
        "0.5",
        "--poll",
        "0.3",
        env=env(root),
    )
    try:
        started = rollout(root)
        assert started.returncode == 0, started.stderr
        assert deployment(root) == [("production", 50.0), ("2", 50.0)]
        wait_for(server, "traffic for benign: production=50, 2=50")
        statuses = drive(server, 300)
        assert statuses.get(500, 0) > 10, statuses  # the candidate's faults, served
        time.sleep(2.0)  # the log flushes every 0.5 s
        failed = rollout(root)
        assert failed.returncode == 4, failed.stdout + failed.stderr
        assert "error_rate failed" in failed.stderr and len(failed.stderr.strip().splitlines()) == 1
        assert deployment(root) == [("production", 100.0)] and alias(root) == 1
        wait_for(server, "traffic for benign: production=100")
        time.sleep(0.5)
        assert drive(server, 100) == {200: 100}  # all on the champion again

        # A good candidate: version 3, checked, then walked to 100% and promoted.
        better, _ = benign_pipeline()
        with LocalStore(root / ".mlops") as store:
            register(store, tmp_path, better)
        assert mlopsctl(root, "release", "check", "release.yaml", "--trust").returncode == 0
        assert rollout(root).returncode == 0
        assert deployment(root) == [("production", 50.0), ("3", 50.0)]
        wait_for(server, "traffic for benign: production=50, 3=50")
        assert drive(server, 200) == {200: 200}
        time.sleep(2.0)
        advanced = rollout(root)
        assert advanced.returncode == 0 and "step 2 of 2: 100%" in advanced.stdout, advanced.stdout
        assert deployment(root) == [("3", 100.0)]
        wait_for(server, "traffic for benign: 3=100")
        assert drive(server, 150) == {200: 150}
        time.sleep(2.0)
        promoted = rollout(root)
        assert promoted.returncode == 0, promoted.stdout + promoted.stderr
        assert "benign@production: 1 -> 3" in promoted.stdout
        assert alias(root) == 3 and deployment(root) == [("production", 100.0)]
        wait_for(server, "benign@production moved: now serving version 3")
    finally:
        assert server.stop() == 0


def test_the_latency_gate_fails_an_impossible_bound_and_passes_a_loose_one(root: Path) -> None:
    def check(max_ms: float) -> tuple[int, dict[str, Any]]:
        spec = RELEASE.replace(
            "    min: 0.6\n",
            f"    min: 0.6\n  - type: latency\n    max_ms: {max_ms}\n    percentile: 95\n"
            "    requests: 60\n    warmup: 5\n    concurrency: [1, 2]\n",
        )
        (root / "latency.yaml").write_text(spec)
        proc = mlopsctl(
            root, "release", "check", "latency.yaml", "--trust", "--candidate", "1", "--json"
        )
        assert proc.stdout, proc.stderr
        return proc.returncode, json.loads(proc.stdout)

    code, impossible = check(0.0001)
    gate = next(g for g in impossible["gates"] if g["type"] == "latency")
    assert code == 4 and gate["verdict"] == "fail" and gate["ci"][0] > 0.0001
    assert [(r["host"], r["concurrency"]) for r in gate["details"]] == [("local", 1), ("local", 2)]
    assert all(r["requests"] == 60 and r["throughput"] > 0 for r in gate["details"])
    code, loose = check(5000)
    gate = next(g for g in loose["gates"] if g["type"] == "latency")
    assert code == 0 and gate["verdict"] == "pass", gate
    table = mlopsctl(root, "release", "check", "latency.yaml", "--trust", "--candidate", "1")
    assert "latency: hardware" in table.stdout and "p99 ms" in table.stdout
    events = mlopsctl(root, "audit", "--json")
    latency = [e for e in json.loads(events.stdout) if e["type"] == "latency"]
    assert latency and latency[-1]["host"] == "local" and latency[-1]["version"] == 1
    assert latency[-1]["image"].startswith("mlopsctl serve")
