"""Feature set sources other than a local file: an s3:// prefix and an offline store on the real
SeaweedFS S3 server, a store: prefix of the project store, a folder mixing in CSV, and the output
of a pipeline step (the latest succeeded run of that pipeline)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest

from mlopsctl.errors import NotFound
from mlopsctl.features import featureset_from_data, materialize_offline, training_set
from mlopsctl.store.local import LocalStore

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)


def _spec(source: dict) -> dict:
    return {
        "name": "src",
        "entities": [{"name": "cid", "type": "int64"}],
        "timestamp": "ts",
        "source": source,
        "features": [{"name": "x", "type": "float64"}],
        "ttl": "0",
    }


def _frame(offset: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame(
        {"cid": [1, 2], "ts": [T0, T0 + timedelta(hours=1)], "x": [1.0 + offset, 2.0 + offset]}
    )


def _labels() -> pd.DataFrame:
    return pd.DataFrame({"cid": [1, 2], "event_timestamp": [T0 + timedelta(days=1)] * 2})


@pytest.mark.s3
def test_s3_source_and_an_offline_store_on_s3(
    s3_env, s3_url: str, make_s3_store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_env.endpoint)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    bucket, _, prefix = s3_url[len("s3://") :].partition("/")
    client = s3_env.client()
    _frame().iloc[:1].to_parquet(tmp_path / "a.parquet")
    _frame().iloc[1:].to_parquet(tmp_path / "b.parquet")
    client.upload_file(str(tmp_path / "a.parquet"), bucket, f"{prefix}/src/part-a.parquet")
    client.upload_file(str(tmp_path / "b.parquet"), bucket, f"{prefix}/src/part-b.parquet")
    store = make_s3_store(f"{s3_url}/store")
    fs = featureset_from_data(_spec({"path": f"{s3_url}/src/"}))
    made = materialize_offline(store, fs, tmp_path)
    assert made["rows"] == 2 and any(
        k.startswith("features/src/offline/") for k in store.list("features/")
    )
    got = training_set(store, [fs], _labels()).table.to_pandas()
    assert got["x"].tolist() == [1.0, 2.0]


def test_store_prefix_csv_folder_and_pipeline_output(tmp_path: Path, monkeypatch) -> None:
    from mlopsctl.store.blobs import put_blob_file

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    store = LocalStore(tmp_path / "store")
    # store: prefix
    _frame(10).to_parquet(tmp_path / "s.parquet")
    store.put_file("exports/stats/part-0.parquet", tmp_path / "s.parquet")
    fs = featureset_from_data(_spec({"path": "store:exports/stats/"}))
    materialize_offline(store, fs, tmp_path)
    assert training_set(store, [fs], _labels()).table.to_pandas()["x"].tolist() == [11.0, 12.0]
    # a folder of CSV files
    (tmp_path / "csv").mkdir()
    _frame(20).iloc[:1].to_csv(tmp_path / "csv/a.csv", index=False)
    _frame(20).iloc[1:].to_csv(tmp_path / "csv/b.csv", index=False)
    fs = featureset_from_data(_spec({"path": "csv"}))
    materialize_offline(store, fs, tmp_path)
    assert training_set(store, [fs], _labels()).table.to_pandas()["x"].tolist() == [21.0, 22.0]
    # the output of a pipeline step: its latest succeeded run
    fs = featureset_from_data(_spec({"pipeline": "feature-pipe", "output": "make.table"}))
    with pytest.raises(NotFound, match="no succeeded run of pipeline 'feature-pipe'"):
        materialize_offline(store, fs, tmp_path)
    for run_id, offset, status in (
        ("20260301-000000-000-aaaaaa", 30, "succeeded"),
        ("20260302-000000-000-bbbbbb", 40, "succeeded"),
        ("20260303-000000-000-cccccc", 50, "failed"),
    ):
        _frame(offset).to_parquet(tmp_path / f"{run_id}.parquet")
        digest = put_blob_file(store, tmp_path / f"{run_id}.parquet")
        run = {
            "id": run_id,
            "pipeline": "feature-pipe",
            "status": status,
            "steps": {"make": {"outputs": {"table": {"digest": digest, "kind": "file"}}}},
        }
        store.put(f"runs/{run_id}.json", json.dumps(run).encode())
    materialize_offline(store, fs, tmp_path)
    assert training_set(store, [fs], _labels()).table.to_pandas()["x"].tolist() == [41.0, 42.0]
