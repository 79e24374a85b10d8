"""The SQLite online store and materialisation: latest value per entity, incremental by event
time (only newer rows are read), never older over newer, a changed layout starts afresh; and
the serving lookup's view of it (TTL, unknown entities, keys as numbers or text)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlopsctl.features.lookup import Lookup
from mlopsctl.features.materialize import materialize, to_us
from mlopsctl.features.offline import materialize_offline
from mlopsctl.features.online import SqliteOnline, online_url, open_online
from mlopsctl.features.spec import featureset_from_data, key_text
from mlopsctl.store.local import LocalStore

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)


def _set(tmp_path: Path, rows: pd.DataFrame, ttl: str = "0", **extra: object):
    rows.to_parquet(tmp_path / "src.parquet")
    return featureset_from_data(
        {
            "name": "cust",
            "entities": [{"name": "cid", "type": "int64"}],
            "timestamp": "ts",
            "source": {"path": "src.parquet"},
            "features": [
                {"name": "x", "type": "float64"},
                {"name": "n", "type": "int64"},
                {"name": "s", "type": "string"},
                {"name": "b", "type": "bool"},
            ],
            "ttl": ttl,
            **extra,
        }
    )


def _rows(cids: list[int], hours: list[int], xs: list[float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "cid": cids,
            "ts": [T0 + timedelta(hours=h) for h in hours],
            "x": xs,
            "n": [int(v) for v in xs],
            "s": [f"v{v}" for v in xs],
            "b": [v > 1 for v in xs],
        }
    )


def test_materialize_latest_then_incremental(tmp_path: Path) -> None:
    store = LocalStore(str(tmp_path / "store"))
    online = SqliteOnline(tmp_path / "online.sqlite")
    fs = _set(tmp_path, _rows([1, 1, 2, 3], [0, 5, 1, 30], [1.0, 2.0, 3.0, 9.0]))
    materialize_offline(store, fs, tmp_path)
    first = materialize(store, fs, online, until=T0 + timedelta(hours=24))
    assert first["rows"] == 2 and first["full"]  # cid 3's row is after `until`
    assert online.read(fs, ["1", "2", "3", None]) == [
        (to_us(T0 + timedelta(hours=5)), 2.0, 2, "v2.0", 1),
        (to_us(T0 + timedelta(hours=1)), 3.0, 3, "v3.0", 1),
        None,
        None,
    ]
    # New rows: one newer for cid 1, one older than the watermark (a late row: not loaded by an
    # incremental run), and cid 3 once `until` passes it.
    fs = _set(
        tmp_path,
        _rows([1, 1, 1, 2, 2, 3], [0, 5, 10, 1, 2, 30], [1.0, 2.0, 4.0, 3.0, 7.0, 9.0]),
    )
    materialize_offline(store, fs, tmp_path)
    second = materialize(store, fs, online, until=T0 + timedelta(hours=48))
    assert not second["full"] and second["rows"] == 2
    assert online.read(fs, ["1"])[0][1] == 4.0
    assert online.read(fs, ["2"])[0][1] == 3.0  # the late row (hour 2 < watermark 5) waits
    assert online.read(fs, ["3"])[0][1] == 9.0
    third = materialize(store, fs, online, until=T0 + timedelta(hours=48), full=True)
    assert third["full"] and third["rows"] == 3
    assert online.read(fs, ["2"])[0][1] == 7.0
    assert online.meta("cust")["watermark_us"] == to_us(T0 + timedelta(hours=30))


def test_an_older_value_never_replaces_a_newer_one(tmp_path: Path) -> None:
    online = SqliteOnline(tmp_path / "o.sqlite")
    fs = _set(tmp_path, _rows([1], [0], [1.0]))
    online.reset(fs)
    online.write(fs, [("1", 200, [2.0, 2, "b", 1])])
    online.write(fs, [("1", 100, [1.0, 1, "a", 0])])
    assert online.read(fs, ["1"])[0][:2] == (200, 2.0)
    online.write(fs, [("1", 300, [3.0, 3, "c", 0])])
    assert online.read(fs, ["1"])[0][:2] == (300, 3.0)


def test_a_changed_layout_starts_afresh(tmp_path: Path) -> None:
    store = LocalStore(str(tmp_path / "store"))
    online = SqliteOnline(tmp_path / "o.sqlite")
    fs = _set(tmp_path, _rows([1], [0], [1.0]))
    materialize_offline(store, fs, tmp_path)
    materialize(store, fs, online, until=T0 + timedelta(days=1))
    data = {
        "name": "cust",
        "entities": [{"name": "cid"}],
        "timestamp": "ts",
        "source": {"path": "src.parquet"},
        "features": [{"name": "x", "type": "float64"}],
        "ttl": "0",
    }
    narrower = featureset_from_data(data)
    materialize_offline(store, narrower, tmp_path)
    result = materialize(store, narrower, online, until=T0 + timedelta(days=1))
    assert result["full"] and online.read(narrower, ["1"])[0] == (to_us(T0), 1.0)


def test_key_text() -> None:
    assert key_text([1001.0], ["int64"]) == "1001"
    assert key_text(["1001"], ["int64"]) == "1001"
    assert key_text([np.int64(7), "x"], ["int64", "string"]) == "7\x1fx"
    assert key_text([1.5], ["int64"]) is None
    assert key_text([None], ["string"]) is None
    assert key_text([float("nan")], ["int64"]) is None


class _FakePredictor:
    fast = True

    def __init__(self) -> None:
        self.seen: list[np.ndarray] = []

    def predict_matrix(self, matrix: np.ndarray) -> np.ndarray:
        self.seen.append(matrix)
        return matrix.sum(axis=1)


class _Inputs:
    def __init__(self, rows: int, matrix=None, columns=None) -> None:
        self.rows = rows
        self.matrix = matrix
        self.columns = columns
        self.categorical: frozenset[str] = frozenset()

    def frame(self, names: list[str]) -> pd.DataFrame:
        return pd.DataFrame({n: self.columns[n] for n in names})


def test_lookup_fills_the_request_and_honours_the_ttl(tmp_path: Path) -> None:
    import time

    online = SqliteOnline(tmp_path / "o.sqlite")
    fs = _set(tmp_path, _rows([1], [0], [1.0]), ttl="1h")
    online.reset(fs)
    now_us = time.time_ns() // 1000
    online.write(
        fs,
        [
            ("1", now_us - 60_000_000, [2.5, 2, "s1", 1]),  # a minute old
            ("2", now_us - 7_200_000_000, [9.0, 9, "s2", 0]),  # two hours old: expired
        ],
    )
    model = [("age", "numeric"), ("x", "numeric"), ("n", "numeric")]
    lookup = Lookup([fs], model, online)
    assert lookup.request_names == ["cid", "age"]
    assert lookup.log_names == ["cid", "age", "x", "n"]
    predictor = _FakePredictor()
    inputs = _Inputs(3, matrix=np.array([[1.0, 30.0], [2.0, 40.0], [3.0, 50.0]]))
    out = lookup.predict(predictor, inputs)
    assert inputs.matrix is None
    assert inputs.columns == {
        "cid": [1.0, 2.0, 3.0],
        "age": [30.0, 40.0, 50.0],
        "x": [2.5, None, None],
        "n": [2, None, None],
    }
    np.testing.assert_array_equal(
        predictor.seen[0],
        np.array([[30.0, 2.5, 2.0], [40.0, np.nan, np.nan], [50.0, np.nan, np.nan]]),
    )
    assert out[0] == 34.5


def test_online_url_defaults_to_sqlite_under_the_project(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("MLOPSCTL_ONLINE_STORE", raising=False)
    assert online_url(tmp_path) == f"sqlite:{tmp_path / '.mlops-online/features.sqlite'}"
    monkeypatch.setenv("MLOPSCTL_ONLINE_STORE", "redis://127.0.0.1:1/0")
    assert online_url(tmp_path) == "redis://127.0.0.1:1/0"
    assert online_url(tmp_path, "sqlite:x.db") == "sqlite:x.db"
    assert isinstance(open_online("sqlite:x.db", tmp_path), SqliteOnline)
    assert (tmp_path / "x.db").exists()
    from mlopsctl.errors import UsageError

    with pytest.raises(UsageError, match="unknown online store"):
        open_online("memcached://x", tmp_path)


def test_lookup_for_refuses_a_set_the_online_store_lacks(tmp_path: Path) -> None:
    from mlopsctl.errors import UsageError
    from mlopsctl.features.lookup import LookupUnavailable, lookup_for

    fs = _set(tmp_path, _rows([1], [0], [1.0]))
    record = {"feature_sets": [{**fs.describe(), "digest": "sha256:" + "0" * 64}]}
    url = f"sqlite:{tmp_path / 'o.sqlite'}"
    with pytest.raises(UsageError, match="features materialize"):
        lookup_for(record, [("x", "numeric")], project_root=tmp_path, url=url)
    online = SqliteOnline(tmp_path / "o.sqlite")
    online.reset(fs)
    lookup = lookup_for(record, [("x", "numeric")], project_root=tmp_path, url=url)
    assert lookup is not None and lookup.request_names == ["cid"]
    assert lookup_for({}, [("x", "numeric")], project_root=tmp_path, url=url) is None
    # A store that fails under a request is the server's problem (a 500), not the client's.
    with online._con() as con:
        con.execute('DROP TABLE "fs__cust"')
    with pytest.raises(LookupUnavailable, match="online store"):
        lookup.values({"cid": [1]}, 1)
