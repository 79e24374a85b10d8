"""Rollouts and the latency gate on the Docker test bed (skipped, saying why, without it; CI has
it): the quickstart model's serving images run by `mlopsctl deploy`.

* Two deployments, stable (the champion) and canary (the candidate), each a container that
  logs to the project's store; in front of them a small router that does what a load balancer
  following the deployment record would: each request goes to the arm its request id falls in
  (mlopsctl.serving.arms, as `mlopsctl serve` assigns arms). `release rollout` reads only what
  the containers logged (a graceful restart flushes their logs). A worse candidate (a one-split
  stump whose scores are far from the champion's: prediction drift) is rolled back by itself;
  a good one (21 trees against 20) reaches 100% and the alias moves.
* The latency gate on two hosts (the test bed's engine and a second dockerd on TCP, each with a
  price per hour): one hardware table with the cost per 1,000 predictions."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlopsctl.testing.engines import SecondEngine
from tests.integration.conftest import remove_images, write_project
from tests.integration.test_containers_build import mlopsctl

pytestmark = pytest.mark.docker

SPEC = "pipelines/quickstart.yaml"
MODEL = "breast-cancer"
RELEASE = f"""\
apiVersion: mlopsctl/v1
kind: Release
name: canary
model: {MODEL}
candidate: latest
champion: production
gates:
  - type: threshold
    metric: roc_auc
    min: 0.5
promote:
  strategy: canary
  steps: [50, 100]
  hold: {{duration: 1s, min_requests: 60}}
  analysis:
    - {{type: error_rate, max_increase: 0.05, min_requests: 40}}
    - {{type: prediction_drift, max_psi: 0.2, min_rows: 100}}
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("0.0.0.0", 0))
        return int(probe.getsockname()[1])


def _train(root: Path, *params: str) -> int:
    args = [a for p in params for a in ("-p", p)]
    proc, _ = mlopsctl(root, "run", SPEC, *args, "--json", timeout=600)
    assert proc.returncode == 0, proc.stderr
    return int(json.loads(proc.stdout)["registered"]["version"])


def _client() -> Any:
    from mlopsctl.testing.engines import default_client

    return default_client()


def _remove(label: str) -> None:
    client = _client()
    try:
        for container in client.containers(all=True, filters={"label": label}):
            client.remove_container(container["Id"], force=True)
    finally:
        client.close()


@pytest.fixture(scope="module")
def project(docker_bed: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    root = write_project(tmp_path_factory.mktemp("rollout") / name, name)
    assert _train(root, "model.n_estimators=20") == 1
    assert _train(root, "model.n_estimators=1", "model.max_depth=1") == 2
    (root / "release.yaml").write_text(RELEASE)
    proc, _ = mlopsctl(root, "models", "alias", "set", MODEL, "production", "1")
    assert proc.returncode == 0, proc.stderr
    yield root
    _remove(f"io.mlopsctl.project={name}")
    remove_images(name)


def _deploy(root: Path, version: int, name: str, port: int) -> str:
    proc, _ = mlopsctl(
        root,
        "deploy",
        f"{MODEL}:{version}",
        "--port",
        str(port),
        "--name",
        name,
        "-q",
        "--json",
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    return str(json.loads(proc.stdout)["url"])


def _flush(name: str) -> None:
    """A graceful restart: the server writes its logs to the store on SIGTERM."""
    client = _client()
    try:
        for container in client.containers(filters={"label": f"dev.mlopsctl.deployment={name}"}):
            client.restart(container["Id"], timeout=60)
    finally:
        client.close()


def _ready(*urls: str, timeout: float = 180.0) -> None:
    """Wait until every URL answers /v2/health/ready again (after a restart)."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    for url in urls:
        while True:
            try:
                with urllib.request.urlopen(url + "/v2/health/ready", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            assert time.monotonic() < deadline, f"{url} not ready again"
            time.sleep(0.5)


def _rows() -> list[list[float]]:
    from sklearn.datasets import load_breast_cancer

    return load_breast_cancer().data.tolist()


def _route(root: Path, urls: dict[str, str], requests: int) -> dict[str, int]:
    """Send ``requests`` single-row requests, each to the arm of the deployment record its
    request id falls in (sticky, as `mlopsctl serve` assigns arms); count per arm."""
    import urllib.request

    from mlopsctl.serving.arms import assign, cumulative

    record = json.loads((root / ".mlops" / "deployments" / MODEL / f"{MODEL}.json").read_text())
    labels = [a["arm"] for a in record["arms"]]
    bounds = cumulative([float(a["weight"]) for a in record["arms"]])
    from sklearn.datasets import load_breast_cancer

    columns = list(load_breast_cancer().feature_names)
    rows = _rows()
    sent: dict[str, int] = {}
    lock = threading.Lock()
    todo = list(range(requests))

    def worker() -> None:
        while True:
            with lock:
                if not todo:
                    return
                number = todo.pop()
            request_id = f"r{number}-{uuid.uuid4().hex[:8]}"
            arm = labels[assign(request_id, bounds)]
            body = json.dumps(
                {"dataframe_split": {"columns": columns, "data": [rows[number % len(rows)]]}}
            ).encode()
            request = urllib.request.Request(
                urls[arm] + "/invocations",
                data=body,
                headers={"Content-Type": "application/json", "X-Request-ID": request_id},
            )
            with urllib.request.urlopen(request, timeout=30) as answer:
                assert answer.status == 200
            with lock:
                sent[arm] = sent.get(arm, 0) + 1

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    return sent


def _arms(root: Path) -> list[tuple[str, float]]:
    record = json.loads((root / ".mlops" / "deployments" / MODEL / f"{MODEL}.json").read_text())
    return [(a["arm"], a["weight"]) for a in record["arms"]]


def _alias(root: Path) -> int:
    path = root / ".mlops" / "models" / MODEL / "aliases" / "production.json"
    return int(json.loads(path.read_text())["version"])


def test_deployed_containers_roll_back_a_worse_candidate_and_promote_a_good_one(
    project: Path,
) -> None:
    stable = _deploy(project, 1, "stable", _free_port())
    canary_port = _free_port()
    proc, _ = mlopsctl(project, "release", "check", "release.yaml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    canary = _deploy(project, 2, "canary", canary_port)
    proc, _ = mlopsctl(project, "release", "rollout", "release.yaml")
    assert proc.returncode == 0, proc.stderr
    assert _arms(project) == [("production", 50.0), ("2", 50.0)]
    sent = _route(project, {"production": stable, "2": canary}, 400)
    assert sent.get("2", 0) > 100
    _flush("stable")
    _flush("canary")
    _ready(stable, canary)
    proc, _ = mlopsctl(project, "release", "rollout", "release.yaml")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "prediction_drift failed" in proc.stderr
    assert _arms(project) == [("production", 100.0)] and _alias(project) == 1

    # The good candidate replaces the canary container, then walks 50% -> 100%.
    assert _train(project, "model.n_estimators=21") == 3
    proc, _ = mlopsctl(project, "release", "check", "release.yaml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    canary = _deploy(project, 3, "canary", canary_port)
    urls = {"production": stable, "3": canary}
    proc, _ = mlopsctl(project, "release", "rollout", "release.yaml")
    assert proc.returncode == 0 and _arms(project) == [("production", 50.0), ("3", 50.0)]
    for expected in ("step 2 of 2: 100%", f"{MODEL}@production: 1 -> 3"):
        _route(project, urls, 600)
        _flush("stable")
        _flush("canary")
        _ready(stable, canary)
        proc, _ = mlopsctl(project, "release", "rollout", "release.yaml")
        assert proc.returncode == 0 and expected in proc.stdout, proc.stdout + proc.stderr
    assert _alias(project) == 3 and _arms(project) == [("production", 100.0)]


def test_the_latency_gate_compares_two_hosts_in_one_table(
    project: Path, second_engine: SecondEngine
) -> None:
    config = (project / "mlops.yaml").read_text()
    (project / "mlops.yaml").write_text(
        config
        + "docker:\n  hosts:\n"
        + "    near: {url: 'unix:///var/run/docker.sock', price_per_hour: 1.2}\n"
        + f"    far: {{url: '{second_engine.tcp_url}', price_per_hour: 0.3}}\n"
    )
    spec = RELEASE.replace(
        "    min: 0.5\n",
        "    min: 0.5\n  - type: latency\n    max_ms: 2000\n    percentile: 95\n"
        "    requests: 100\n    hosts: [near, far]\n",
    )
    (project / "latency.yaml").write_text(spec)
    proc, _ = mlopsctl(
        project, "release", "check", "latency.yaml", "--candidate", "1", "--json", timeout=900
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    gate = next(g for g in json.loads(proc.stdout)["gates"] if g["type"] == "latency")
    assert [r["host"] for r in gate["details"]] == ["near", "far"]
    for row in gate["details"]:
        assert row["verdict"] == "pass" and row["requests"] == 100
        assert row["digest"] and row["image"].startswith("127.0.0.1:5000/")
        assert row["cost_per_1000"] > 0
    table, _ = mlopsctl(
        project, "release", "check", "latency.yaml", "--candidate", "1", timeout=900
    )
    lines = [line for line in table.stdout.splitlines() if line.strip().startswith(("near", "far"))]
    assert len(lines) == 2
    # --hosts replaces the spec's list
    one, _ = mlopsctl(
        project,
        "release",
        "check",
        "latency.yaml",
        "--candidate",
        "1",
        "--hosts",
        "far",
        "--json",
        timeout=900,
    )
    gate = next(g for g in json.loads(one.stdout)["gates"] if g["type"] == "latency")
    assert [r["host"] for r in gate["details"]] == ["far"]
