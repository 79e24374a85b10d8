"""The Redis online store against a real redis-server (Debian's, started here on a free
loopback port, no persistence, stopped with SIGTERM): the store's own behaviour (newer wins,
layout reset, one round trip for several sets, incremental materialisation), and `mlopsctl
serve` as a real process looking features up in it for requests that carry only the key.

scripts/test.sh installs redis-server when run as root. Without it this module skips, saying
why; under MLOPSCTL_REQUIRE_REDIS=1 (set by .ci/run) it fails instead."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from mlopsctl.features import featureset_from_data, materialize, materialize_offline
from mlopsctl.features.online import RedisOnline
from mlopsctl.store.local import LocalStore
from tests.func.test_features import NOW, _write_project
from tests.integration.test_serving_server import server_env, start_server

REQUIRE_ENV = "MLOPSCTL_REQUIRE_REDIS"


def _unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"redis-server unusable: {reason} ({REQUIRE_ENV}=1)", pytrace=False)
    pytest.skip(
        f"redis-server unusable: {reason}; install it (apt-get install redis-server; "
        "scripts/test.sh does as root)"
    )


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    try:
        import redis  # noqa: F401
    except ImportError:
        _unavailable("the redis client library is missing (pip install 'mlopsctl[redis]')")
    from mlopsctl.testing.redis import RedisUnavailable, start_redis, stop_redis

    try:
        proc, url = start_redis(tmp_path_factory.mktemp("redis"))
    except RedisUnavailable as exc:
        _unavailable(str(exc))
    yield url
    stop_redis(proc)


def _set(name: str = "cust", features: tuple[str, ...] = ("x", "s")):
    types = {"x": "float64", "s": "string", "n": "int64"}
    return featureset_from_data(
        {
            "name": name,
            "entities": [{"name": "cid", "type": "int64"}],
            "timestamp": "ts",
            "source": {"path": "src.parquet"},
            "features": [{"name": f, "type": types[f]} for f in features],
            "ttl": "0",
        }
    )


def test_redis_store_keeps_the_newest_and_reads_in_one_trip(redis_url: str) -> None:
    online = RedisOnline(redis_url)
    a, b = _set("a"), _set("b", ("n",))
    online.reset(a)
    online.reset(b)
    online.write(a, [("1", 200, [2.0, "two"]), ("2", 100, [1.0, None])])
    online.write(a, [("1", 150, [1.5, "older"])])  # older: ignored
    online.write(b, [("1", 100, [7])])
    assert online.read(a, ["1", "2", "3", None]) == [
        (200, 2.0, "two"),
        (100, 1.0, None),
        None,
        None,
    ]
    assert online.read_many([(a, ["1"]), (b, ["1", "9"])]) == [
        [(200, 2.0, "two")],
        [(100, 7), None],
    ]
    online.set_meta(a, 200, "abc")
    assert online.meta("a") == {
        "layout": online.meta("a")["layout"],
        "watermark_us": 200,
        "manifest": "abc",
    }
    online.reset(a)
    assert online.read(a, ["1"]) == [None] and online.meta("a")["watermark_us"] is None
    online.close()


def test_materialize_into_redis_incrementally(redis_url: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    store = LocalStore(tmp_path / "store")
    fs = _set("inc", ("x", "n"))
    t0 = NOW - timedelta(days=2)
    rows = pd.DataFrame(
        {
            "cid": [1, 1, 2],
            "ts": [t0, t0 + timedelta(hours=1), t0],
            "x": [1.0, 2.0, 3.0],
            "n": [1, 2, 3],
        }
    )
    rows.to_parquet(tmp_path / "src.parquet")
    materialize_offline(store, fs, tmp_path)
    online = RedisOnline(redis_url)
    first = materialize(store, fs, online)
    assert first["full"] and first["rows"] == 2
    newer = pd.DataFrame({"cid": [2], "ts": [t0 + timedelta(hours=5)], "x": [9.0], "n": [9]})
    pd.concat([rows, newer]).to_parquet(tmp_path / "src.parquet")
    materialize_offline(store, fs, tmp_path)
    second = materialize(store, fs, online)
    assert not second["full"] and second["rows"] == 1
    assert [r[1] for r in online.read(fs, ["1", "2"])] == [2.0, 9.0]
    online.close()


def _mlopsctl(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlopsctl", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_serve_looks_features_up_in_redis(redis_url: str, tmp_path: Path) -> None:
    from tests.conftest import git

    root = tmp_path / "demo"
    root.mkdir()
    assert git(root, "init", "-q").returncode == 0
    env = server_env(root, MLOPSCTL_ONLINE_STORE=redis_url)
    assert _mlopsctl(root, env, "init", str(root)).returncode == 0
    _write_project(root)
    for args in (
        ("features", "materialize-offline", "features/customer.yaml"),
        ("run", "pipeline.yaml"),
        ("features", "materialize", "features/customer.yaml"),
    ):
        done = _mlopsctl(root, env, *args)
        assert done.returncode == 0, done.stderr
    online = RedisOnline(redis_url)
    stored = online.read(_set("customer-stats"), ["7"])  # layout aside, the key exists
    assert stored[0] is not None
    online.close()
    server = start_server(root, "churn:1", "--log-interval", "60", env=env)
    try:
        status, answer = server.json(
            "POST",
            "/invocations",
            {
                "dataframe_records": [
                    {"customer_id": 7, "age": 40.0},
                    {"customer_id": 66, "age": 30.0},
                ]
            },
        )
        assert status == 200, answer
        assert len(answer["predictions"]) == 2
        status, answer = server.json(
            "POST",
            "/v2/models/churn/infer",
            {
                "inputs": [
                    {"name": "customer_id", "shape": [1], "datatype": "INT64", "data": [3]},
                    {"name": "age", "shape": [1], "datatype": "FP64", "data": [50.0]},
                ]
            },
        )
        assert status == 200, answer
    finally:
        assert server.stop() == 0, server.output()
    import pyarrow.parquet as pq

    files = sorted((root / ".mlops/logs/predictions/churn").rglob("*.parquet"))
    logs = pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)
    stats = pd.read_parquet(root / "data/customer_stats.parquet")
    latest = stats[stats.customer_id == 7].sort_values("event_timestamp").iloc[-1]
    row = logs[logs.customer_id == 7].iloc[0]
    assert row["trips"] == latest["trips"] and row["rating"] == latest["rating"]
    assert pd.isna(logs[logs.customer_id == 66].iloc[0]["trips"])
    skew = _mlopsctl(root, env, "features", "skew", "churn:1", "--json")
    assert skew.returncode == 0, skew.stderr + skew.stdout
    assert json.loads(skew.stdout)["rows"] == 3
