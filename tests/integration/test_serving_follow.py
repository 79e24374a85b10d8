"""A running server follows the registry: an alias move is picked up without a restart, a
corrupt new version is refused while the old one keeps serving, arms split traffic stickily
and `mlopsctl traffic set` changes the split live; several workers share one port and one
/metrics; logs land in a SeaweedFS store too."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mlopsctl.serving.metrics import WRITE_EVERY_S
from mlopsctl.store.local import LocalStore
from tests.conftest import S3TestServer

from .test_serving_server import (
    MODEL,
    ServerProcess,
    read_logs,
    rows,
    server_env,
    split_body,
    start_server,
)


def register_copy(root: Path, tmp: Path, *, corrupt: bool = False) -> int:
    """Register a new version holding version 1's model; `corrupt` replaces the XGBoost file
    with junk whose digest model.json records, so only loading it can tell."""
    from mlopsctl.models.artifact import file_digest
    from mlopsctl.registry import cached_model_dir, get_version, register_version
    from mlopsctl.store.artifacts import store_output

    with LocalStore(root / ".mlops") as store:
        record = get_version(store, MODEL, 1)
        folder = tmp / f"copy-{time.monotonic_ns()}"
        shutil.copytree(cached_model_dir(store, record), folder)
        meta = json.loads((folder / "model.json").read_text())
        meta["note"] = f"copy {folder.name}"  # a distinct artifact digest
        if corrupt:
            (folder / "model.ubj").write_bytes(b"\x00not an xgboost model\xff" * 64)
            meta["files"]["model.ubj"] = file_digest(folder / "model.ubj")
        (folder / "model.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        artifact = store_output(store, folder, tmp)
        artifact.update(
            format=meta["format"],
            flavor=meta["flavor"],
            model_json=file_digest(folder / "model.json"),
        )
        fields = {
            k: v
            for k, v in record.items()
            if k not in ("name", "version", "created", "registration_id")
        }
        return int(register_version(store, MODEL, {**fields, "artifact": artifact})["version"])


def mlopsctl(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`mlopsctl ARGS` in `root` as a separate process, beside the running server."""
    return subprocess.run(
        [sys.executable, "-m", "mlopsctl", *args],
        cwd=root,
        env=server_env(root),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def set_alias(root: Path, alias: str, version: int) -> None:
    from mlopsctl.registry import set_alias as move

    with LocalStore(root / ".mlops") as store:
        move(store, MODEL, alias, version)


def events(root: Path, kind: str) -> list[dict[str, Any]]:
    from mlopsctl.events import list_events

    with LocalStore(root / ".mlops") as store:
        return list_events(store, kind=kind)


def wait_for(check: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def served_version(server: ServerProcess) -> str:
    status, headers, payload = server.request("POST", "/invocations", split_body(rows(1)))
    assert status == 200, payload
    return headers["x-model-version"]


@pytest.fixture
def cache_env(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A copy of the trained quickstart project, with this test's model cache."""
    from tests.func.test_models import quickstart_project

    root = tmp_path / "demo"
    quickstart_project(tmp_path_factory, root)
    monkeypatch.setenv("XDG_CACHE_HOME", str(root.parent / "cache"))
    return root


def test_alias_move_is_followed_and_a_corrupt_version_refused(
    cache_env: Path, tmp_path: Path
) -> None:
    root = cache_env
    set_alias(root, "production", 1)
    server = start_server(root, f"{MODEL}@production", "--poll", "0.3")
    try:
        assert served_version(server) == "1"
        good = register_copy(root, tmp_path)
        set_alias(root, "production", good)
        wait_for(lambda: served_version(server) == str(good), what="the alias move")
        assert server.metric("mlopsctl_model_swaps_total") == 1

        # The audit event is written just after the swap, by the follower's thread.
        def deployment_events(action: str) -> list[dict[str, Any]]:
            return [e for e in events(root, "deployment") if e.get("action") == action]

        wait_for(lambda: bool(deployment_events("swap")), what="the swap event")
        swap = deployment_events("swap")
        assert swap[-1]["version"] == good and swap[-1]["previous"] == 1

        bad = register_copy(root, tmp_path, corrupt=True)
        set_alias(root, "production", bad)
        wait_for(lambda: server.metric("mlopsctl_model_refused_total") == 1, what="the refusal")
        for _ in range(5):
            assert served_version(server) == str(good)
        wait_for(lambda: bool(deployment_events("refused")), what="the refusal event")
        refused = deployment_events("refused")
        assert refused[-1]["version"] == bad and refused[-1]["serving"] == good
        assert server.saw(f"refused {MODEL}:{bad}"), server.output()
        time.sleep(1.0)  # several polls: a refused version is not tried again
        assert server.metric("mlopsctl_model_refused_total") == 1

        # `models rollback` moves the alias back, and so what is served: the first undoes the
        # refused move (the good version is served already), the second returns to version 1.
        for _ in range(2):
            proc = mlopsctl(root, "models", "rollback", MODEL, "production")
            assert proc.returncode == 0, proc.stderr
        wait_for(lambda: served_version(server) == "1", what="the rollback")
        assert server.proc.poll() is None
    finally:
        assert server.stop() == 0


def _arm_of(server: ServerProcess, customer: str) -> str:
    record = {**rows(1).to_dict("records")[0], "customer": customer}
    status, headers, payload = server.request(
        "POST", "/invocations", {"dataframe_records": [record]}
    )
    assert status == 200, payload
    return headers["x-arm"]


def _arms_of(server: ServerProcess, customers: list[str]) -> list[str]:
    """The arm of each customer's request, over one keep-alive connection (10,000 requests in
    a few seconds)."""
    import http.client

    row = rows(1).to_dict("records")[0]
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    arms = []
    try:
        for customer in customers:
            body = json.dumps({"dataframe_records": [{**row, "customer": customer}]})
            conn.request(
                "POST", "/invocations", body=body, headers={"Content-Type": "application/json"}
            )
            response = conn.getresponse()
            payload = response.read()
            assert response.status == 200, payload
            arms.append(response.getheader("X-Arm") or "")
    finally:
        conn.close()
    return arms


def test_arms_are_sticky_and_traffic_set_applies_live(cache_env: Path, tmp_path: Path) -> None:
    from mlopsctl.serving.arms import assign, cumulative

    root = cache_env
    set_alias(root, "production", 1)
    set_alias(root, "candidate", register_copy(root, tmp_path))
    server = start_server(
        root,
        f"{MODEL}@production",
        "--arm",
        "production=70",
        "--arm",
        "candidate=30",
        "--key",
        "customer",
        "--poll",
        "0.3",
        "--log-interval",
        "60",
    )
    try:
        labels = ["production", "candidate"]
        bounds = cumulative([70, 30])
        keys = [f"customer-{i}" for i in range(10_000)]
        seen = dict(zip(keys, _arms_of(server, keys), strict=True))
        assert all(seen[key] == labels[assign(key, bounds)] for key in keys)
        share = sum(v == "candidate" for v in seen.values()) / len(seen)
        # 30 % within 4.5 sigma over 10,000 keys (sigma = 0.0046).
        assert abs(share - 0.30) < 4.5 * (0.3 * 0.7 / len(seen)) ** 0.5, share
        again = keys[:500]  # sticky: the same customer, the same arm
        assert _arms_of(server, again) == [seen[key] for key in again]
        _, version = server.json("GET", "/version")
        assert {a["arm"] for a in version["arms"]} == {"production", "candidate"}

        proc = mlopsctl(root, "traffic", "set", MODEL, "production=0", "candidate=100", "--json")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["arms"] == [
            {"arm": "production", "weight": 0.0},
            {"arm": "candidate", "weight": 100.0},
        ]
        wait_for(lambda: _arm_of(server, "customer-0") == "candidate", what="the new weights")
        assert all(_arm_of(server, f"customer-{i}") == "candidate" for i in range(30))
        assert events(root, "traffic")[-1]["arms"][1] == {"arm": "candidate", "weight": 100.0}

        proc = mlopsctl(root, "traffic", "show", MODEL, "--json")
        assert proc.returncode == 0 and json.loads(proc.stdout)["deployment"] == MODEL
    finally:
        assert server.stop() == 0
    table = read_logs(root / ".mlops")
    assert table is not None
    logged = dict(
        zip(table.column("request_id").to_pylist(), table.column("arm").to_pylist(), strict=True)
    )
    assert set(logged.values()) == {"production", "candidate"}
    # The sticky key is logged under its name on every row: the unit of `release ab`.
    assert set(table.column("customer").to_pylist()) == {f"customer-{i}" for i in range(10_000)}


def test_workers_share_the_port_and_metrics(cache_env: Path) -> None:
    root = cache_env
    server = start_server(root, f"{MODEL}:1", "--workers", "2", "--log-interval", "60")
    try:
        for i in range(40):  # a new connection each: the kernel spreads them over the workers
            status, _, _ = server.request(
                "POST", "/invocations", split_body(rows(2)), {"X-Request-ID": f"w-{i}"}
            )
            assert status == 200
        # A worker writes its counts for the others every WRITE_EVERY_S (0.1 s): soon after the
        # last answer, whichever worker answers a scrape counts every worker's requests (30 s
        # at most: a busy CI machine can hold a worker's writer thread off for seconds).
        deadline = time.monotonic() + 30.0
        while server.metric("mlopsctl_requests_total", version="1") < 40:
            assert time.monotonic() < deadline, "the workers' counts never added up to 40"
            time.sleep(WRITE_EVERY_S)
        for _ in range(4):
            assert server.metric("mlopsctl_requests_total", version="1") == 40
    finally:
        assert server.stop() == 0
    files = list((root / ".mlops/logs/predictions" / MODEL).rglob("*.parquet"))
    assert len({f.name.split("-")[1] for f in files}) == 2  # one writer per worker
    table = read_logs(root / ".mlops")
    assert table is not None and table.num_rows == 80


@pytest.mark.s3
def test_logs_land_in_a_seaweedfs_store(
    cache_env: Path, tmp_path: Path, s3_env: S3TestServer, s3_url: str, make_s3_store: Any
) -> None:
    import io

    import pyarrow.parquet as pq

    from mlopsctl.registry import download

    root = cache_env
    with LocalStore(root / ".mlops") as store:
        _, folder = download(store, f"{MODEL}:1", tmp_path / "model")
    env = server_env(
        root,
        MLOPSCTL_STORE=s3_url,
        AWS_ENDPOINT_URL=s3_env.endpoint,
        AWS_ACCESS_KEY_ID=s3_env.access_key,
        AWS_SECRET_ACCESS_KEY=s3_env.secret_key,
        AWS_DEFAULT_REGION=s3_env.region,
        AWS_EC2_METADATA_DISABLED="true",
    )
    server = start_server(
        root, f"{MODEL}:1", "--model-dir", str(folder), "--log-interval", "60", env=env
    )
    try:
        for i in range(12):
            assert (
                server.request(
                    "POST", "/invocations", split_body(rows(2)), {"X-Request-ID": f"s3-{i}"}
                )[0]
                == 200
            )
        status, _ = server.json("POST", "/feedback", {"request_id": "s3-0", "actual": 1})
        assert status == 202
    finally:
        assert server.stop() == 0, server.output()
    s3 = make_s3_store()
    keys = list(s3.list(f"logs/predictions/{MODEL}/"))
    assert keys and all("/date=" in k and k.endswith(".parquet") for k in keys)
    total = sum(pq.read_table(io.BytesIO(s3.get(k))).num_rows for k in keys)
    assert total == 24
    assert len(list(s3.list(f"logs/feedback/{MODEL}/"))) == 1


def test_a_store_error_while_loading_a_new_version_is_retried_not_refused(
    cache_env: Path, tmp_path: Path
) -> None:
    """The new version's record cannot be read for a while (as in a network blip): the follower
    keeps serving the old version, refuses nothing and records no refusal, and picks the move
    (and a deployment record naming that version) up once the store answers again."""
    from mlopsctl.registry import get_alias
    from mlopsctl.registry.keys import version_key
    from mlopsctl.serving.app import App, Arm, make_router
    from mlopsctl.serving.arms import parse_arm, set_traffic
    from mlopsctl.serving.follow import Follower, load_predictor
    from mlopsctl.serving.metrics import Metrics

    root = cache_env
    set_alias(root, "production", 1)
    good = register_copy(root, tmp_path)
    record = root / ".mlops" / version_key(MODEL, good)
    hidden = record.with_name("hidden.json")
    said: list[str] = []
    metrics = Metrics(tmp_path / "metrics", 0, MODEL)
    with LocalStore(root / ".mlops") as store:
        arm = Arm("production", "production", load_predictor(store, MODEL, 1, smoke=False))
        found = get_alias(store, MODEL, "production")
        assert found is not None
        arm.etag = found[1]
        app = App(MODEL, make_router([arm], [1.0]), metrics, tmp_path / "metrics")
        follower = Follower(
            app, store, MODEL, deployment=None, poll=60, metrics=metrics, say=said.append
        )
        try:
            set_alias(root, "production", good)
            set_traffic(store, MODEL, [parse_arm("production=50"), parse_arm(f"{good}=50")])
            record.rename(hidden)
            follower.check_once()
            follower.check_once()
            assert arm.predictor.version == 1 and arm.etag == found[1]
            assert follower.deployment_etag is None and len(app.router.arms) == 1
            assert metrics.get("refused") == 0
            assert len([s for s in said if "will retry" in s]) == 1  # rate-limited

            hidden.rename(record)  # the store answers again
            follower.check_once()
            assert arm.predictor.version == good and metrics.get("swaps") == 1
            assert follower.deployment_etag is not None
            assert [a.label for a in app.router.arms] == ["production", str(good)]
            assert metrics.get("refused") == 0
        finally:
            if hidden.exists():
                hidden.rename(record)
            metrics.close()
    assert not [e for e in events(root, "deployment") if e.get("action") == "refused"]
