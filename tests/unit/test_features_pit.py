"""Point-in-time joins against a brute-force oracle: for every label row, every feature row of
its entity is looked at in plain Python, the latest one at or before the label's time and not
older than the TTL wins (Feast's rule). Randomised, with the edges drawn on purpose: labels at
exactly a feature row's time, at exactly time + TTL (included) and one microsecond later
(excluded), entities with no rows, NULL keys, NULL values, and duplicate (key, time) rows that
the offline store must resolve by created time, then by source order."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlopsctl.features.offline import current_manifest, local_files, materialize_offline
from mlopsctl.features.pit import join_files, training_set
from mlopsctl.features.spec import featureset_from_data
from mlopsctl.store.local import LocalStore

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)


def _spec(name: str, ttl: str, *, path: str, created: bool = False, keys=("cid",)) -> dict:
    data = {
        "name": name,
        "entities": [{"name": k, "type": "int64"} for k in keys],
        "timestamp": "ts",
        "source": {"path": path},
        "features": [
            {"name": f"{name}_x", "type": "float64"},
            {"name": f"{name}_s", "type": "string"},
        ],
        "ttl": ttl,
    }
    if created:
        data["created_timestamp"] = "created"
    return data


def _feature_rows(rng: np.random.Generator, name: str, n: int, entities: int) -> pd.DataFrame:
    minutes = rng.integers(0, 3 * 24 * 60, n)
    frame = pd.DataFrame(
        {
            "cid": rng.integers(0, entities, n),
            "ts": [T0 + timedelta(minutes=int(m)) for m in minutes],
            "created": [T0 + timedelta(seconds=int(s)) for s in rng.integers(0, 50, n)],
            f"{name}_x": rng.normal(size=n).round(3),
            f"{name}_s": rng.choice(["a", "b", "c"], n),
        }
    )
    # Duplicates of (key, time) with other values, some with an equal created time.
    dup = frame.sample(n // 5, random_state=int(rng.integers(1 << 30))).copy()
    dup[f"{name}_x"] = rng.normal(size=len(dup)).round(3)
    dup.loc[dup.index[::3], "created"] = frame.loc[dup.index[::3], "created"]
    frame = pd.concat([frame, dup]).sample(frac=1.0, random_state=int(rng.integers(1 << 30)))
    frame.loc[frame.sample(frac=0.05, random_state=1).index, f"{name}_x"] = np.nan
    return frame.reset_index(drop=True)


def _dedup_oracle(frame: pd.DataFrame, created: bool) -> list[dict]:
    """The offline store's rule, by hand: per (key, time) the latest created, then the last in
    source order."""
    best: dict[tuple, tuple] = {}
    for pos, row in enumerate(frame.to_dict("records")):
        rank = (row["created"] if created else T0, pos)
        key = (row["cid"], row["ts"])
        if key not in best or rank > best[key][0]:
            best[key] = (rank, row)
    return [row for _, row in best.values()]


def _oracle(
    labels: pd.DataFrame, rows: list[dict], name: str, ttl: timedelta | None
) -> pd.DataFrame:
    by_key: dict[int, list[dict]] = {}
    for row in rows:
        by_key.setdefault(row["cid"], []).append(row)
    xs, ss = [], []
    for label in labels.to_dict("records"):
        t = label["event_timestamp"]
        chosen = None
        if label["cid"] is not None and not pd.isna(label["cid"]):
            for row in by_key.get(int(label["cid"]), []):
                fresh = row["ts"] <= t and (ttl is None or row["ts"] >= t - ttl)
                if fresh and (chosen is None or row["ts"] > chosen["ts"]):
                    chosen = row
        xs.append(np.nan if chosen is None else chosen[f"{name}_x"])
        ss.append(None if chosen is None else chosen[f"{name}_s"])
    return pd.DataFrame({f"{name}_x": xs, f"{name}_s": ss})


def _labels(
    rng: np.random.Generator, features: pd.DataFrame, ttl: timedelta, n: int
) -> pd.DataFrame:
    picks = features.sample(n, replace=True, random_state=int(rng.integers(1 << 30)))
    offsets = rng.choice(
        [
            timedelta(0),
            ttl,
            ttl + timedelta(microseconds=1),
            timedelta(minutes=7),
            -timedelta(minutes=3),
        ],
        n,
    )
    times = [t + o for t, o in zip(picks["ts"], offsets, strict=True)]
    keys = picks["cid"].to_numpy(dtype="float64", copy=True)
    keys[rng.random(n) < 0.05] = 999  # an entity with no feature rows
    keys[rng.random(n) < 0.03] = np.nan  # a label without a key
    return pd.DataFrame(
        {
            "cid": pd.array([None if np.isnan(k) else int(k) for k in keys], dtype="Int64"),
            "event_timestamp": times,
            "label": rng.integers(0, 2, n),
        }
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("created", [True, False])
def test_join_matches_the_oracle(tmp_path: Path, seed: int, created: bool) -> None:
    rng = np.random.default_rng(seed)
    store = LocalStore(str(tmp_path / "store"))
    specs = [("a", "2h", timedelta(hours=2)), ("b", "0", None)]
    sets, frames = [], {}
    for name, ttl_text, _ in specs:
        frame = _feature_rows(rng, name, 400, 25)
        frame.to_parquet(tmp_path / f"{name}.parquet")
        frames[name] = frame
        fs = featureset_from_data(_spec(name, ttl_text, path=f"{name}.parquet", created=created))
        materialize_offline(store, fs, tmp_path)
        sets.append(fs)
    labels = _labels(rng, frames["a"], timedelta(hours=2), 600)
    result = training_set(store, sets, labels)
    got = result.table.to_pandas()
    assert list(got.columns) == ["cid", "event_timestamp", "label", "a_x", "a_s", "b_x", "b_s"]
    pd.testing.assert_frame_equal(
        got[["cid", "label"]].astype({"cid": "Int64"}), labels[["cid", "label"]], check_dtype=False
    )
    for name, _, ttl in specs:
        expected = _oracle(labels, _dedup_oracle(frames[name], created), name, ttl)
        assert np.allclose(
            got[f"{name}_x"].to_numpy(dtype="float64"),
            expected[f"{name}_x"].to_numpy(dtype="float64"),
            equal_nan=True,
        ), name
        assert (
            got[f"{name}_s"].where(got[f"{name}_s"].notna(), None).tolist()
            == expected[f"{name}_s"].tolist()
        )
    assert result.matched["a"] == int(got["a_s"].notna().sum())


def test_ttl_bounds_are_both_included(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"cid": [1], "ts": [T0], "f_x": [1.5], "f_s": ["v"]},
    )
    frame.to_parquet(tmp_path / "f.parquet")
    fs = featureset_from_data(_spec("f", "1h", path="f.parquet"))
    labels = pd.DataFrame(
        {
            "cid": [1, 1, 1, 1],
            "event_timestamp": [
                T0 - timedelta(microseconds=1),  # before the row: nothing yet
                T0,  # at the row's time: seen
                T0 + timedelta(hours=1),  # exactly ttl later: still seen
                T0 + timedelta(hours=1, microseconds=1),  # past the ttl: gone
            ],
        }
    )
    got = join_files(labels, [(fs, [tmp_path / "f.parquet"])]).table.to_pandas()
    assert got["f_x"].tolist()[1:3] == [1.5, 1.5]
    assert np.isnan(got["f_x"][0]) and np.isnan(got["f_x"][3])


def test_a_null_value_does_not_show_an_older_one(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"cid": [1, 1], "ts": [T0, T0 + timedelta(hours=1)], "f_x": [1.0, None], "f_s": ["a", "b"]}
    )
    frame.to_parquet(tmp_path / "f.parquet")
    fs = featureset_from_data(_spec("f", "0", path="f.parquet"))
    labels = pd.DataFrame({"cid": [1], "event_timestamp": [T0 + timedelta(hours=2)]})
    got = join_files(labels, [(fs, [tmp_path / "f.parquet"])]).table.to_pandas()
    assert np.isnan(got["f_x"][0]) and got["f_s"][0] == "b"


def test_timezones_and_text_times_are_utc(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"cid": [1], "ts": ["2026-03-01T12:00:00+02:00"], "f_x": [2.0], "f_s": ["z"]}
    )
    frame.to_csv(tmp_path / "f.csv", index=False)
    store = LocalStore(str(tmp_path / "store"))
    fs = featureset_from_data(_spec("f", "0", path="f.csv"))
    materialize_offline(store, fs, tmp_path)
    labels = pd.DataFrame(
        {"cid": [1, 1], "event_timestamp": ["2026-03-01T09:59:59Z", "2026-03-01T10:00:00Z"]}
    )
    got = training_set(store, [fs], labels).table.to_pandas()
    assert np.isnan(got["f_x"][0]) and got["f_x"][1] == 2.0


def test_offline_store_is_partitioned_by_date_and_content_named(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frame = _feature_rows(rng, "p", 300, 10)
    frame.to_parquet(tmp_path / "p.parquet")
    store = LocalStore(str(tmp_path / "store"))
    fs = featureset_from_data(_spec("p", "1d", path="p.parquet", created=True))
    first = materialize_offline(store, fs, tmp_path)
    assert first["changed"] and first["uploaded"] == len(first["partitions"]) >= 3
    keys = sorted(store.list("features/p/offline/"))
    assert all("/date=2026-03-0" in k and k.endswith(".parquet") for k in keys)
    assert first["rows"] == len(_dedup_oracle(frame, True))
    again = materialize_offline(store, fs, tmp_path)
    assert not again["changed"] and again["uploaded"] == 0
    assert again["digest"] == first["digest"]
    manifest = current_manifest(store, "p")
    files = local_files(store, manifest)
    assert sum(len(pd.read_parquet(f)) for f in files) == first["rows"]
    # One changed row rewrites one partition; the digest moves.
    frame.loc[0, "p_x"] = 1234.5
    frame.to_parquet(tmp_path / "p.parquet")
    third = materialize_offline(store, fs, tmp_path)
    assert third["changed"] and third["uploaded"] == 1 and third["digest"] != first["digest"]


def test_transform_sql_and_python(tmp_path: Path) -> None:
    frame = pd.DataFrame({"cid": [1, 2], "ts": [T0, T0], "raw": [10, 20]})
    frame.to_parquet(tmp_path / "r.parquet")
    (tmp_path / "tf.py").write_text(
        "def make(df):\n    df['t_x'] = df['raw'] / 2\n    df['t_s'] = 'p'\n    return df\n"
    )
    store = LocalStore(str(tmp_path / "store"))
    base = _spec("t", "0", path="r.parquet")
    sql = featureset_from_data(
        {**base, "transform": {"sql": "SELECT cid, ts, raw * 3.0 AS t_x, 'q' AS t_s FROM source"}}
    )
    materialize_offline(store, sql, tmp_path)
    labels = pd.DataFrame({"cid": [2], "event_timestamp": [T0]})
    assert training_set(store, [sql], labels).table.to_pandas()["t_x"][0] == 60.0
    python = featureset_from_data({**base, "transform": {"python": "tf.py:make"}})
    materialize_offline(store, python, tmp_path)
    assert training_set(store, [python], labels).table.to_pandas()["t_x"][0] == 10.0


def test_stale_spec_and_missing_columns_are_refused(tmp_path: Path) -> None:
    from mlopsctl.errors import NotFound, UsageError

    pd.DataFrame({"cid": [1], "ts": [T0], "f_x": [1.0], "f_s": ["a"]}).to_parquet(
        tmp_path / "f.parquet"
    )
    store = LocalStore(str(tmp_path / "store"))
    fs = featureset_from_data(_spec("f", "1h", path="f.parquet"))
    labels = pd.DataFrame({"cid": [1], "event_timestamp": [T0]})
    with pytest.raises(NotFound, match="materialize-offline"):
        training_set(store, [fs], labels)
    materialize_offline(store, fs, tmp_path)
    changed = featureset_from_data(_spec("f", "2h", path="f.parquet"))
    with pytest.raises(UsageError, match="changed since it was materialised"):
        training_set(store, [changed], labels)
    with pytest.raises(UsageError, match="no column 'when'"):
        training_set(store, [fs], labels, timestamp="when")
    wrong = featureset_from_data({**_spec("g", "0", path="f.parquet"), "timestamp": "nope"})
    with pytest.raises(UsageError, match="no column"):
        materialize_offline(store, wrong, tmp_path)


def test_partitions_out_of_reach_are_not_read_but_edges_are(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "cid": [1, 1, 2],
            "ts": [T0, T0 + timedelta(days=1, hours=23, minutes=30), T0 + timedelta(days=5)],
            "f_x": [1.0, 2.0, 5.0],
            "f_s": ["a", "b", "c"],
        }
    )
    frame.to_parquet(tmp_path / "f.parquet")
    store = LocalStore(str(tmp_path / "store"))
    fs = featureset_from_data(_spec("f", "1h", path="f.parquet"))
    materialize_offline(store, fs, tmp_path)
    labels = pd.DataFrame(
        {
            "cid": [1, 2],
            "event_timestamp": [T0 + timedelta(days=2, minutes=10), T0 + timedelta(days=2)],
        }
    )
    fetched = []
    import mlopsctl.features.pit as pit

    real = pit.local_files

    def spy(store_, manifest):  # type: ignore[no-untyped-def]
        fetched.extend(manifest["partitions"])
        return real(store_, manifest)

    pit.local_files = spy
    try:
        got = training_set(store, [fs], labels).table.to_pandas()
    finally:
        pit.local_files = real
    assert got["f_x"].tolist()[0] == 2.0 and np.isnan(got["f_x"][1])  # the edge across midnight
    assert fetched == ["2026-03-02"]  # day 1 is older than reach, day 6 after the last label
