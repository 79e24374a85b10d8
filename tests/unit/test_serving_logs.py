"""The buffered prediction log on a real local store: files in the shared format, flushed by
size and by time, rows kept through failed writes up to the bound and counted when dropped,
everything written on close; and metrics summed across workers."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mlopsctl.serving.logs import (
    PREDICTIONS,
    BufferedWriter,
    LogSchema,
    feedback_table,
    prediction_table,
)
from mlopsctl.serving.metrics import Metrics, render
from mlopsctl.store.local import LocalStore

NAMES = ["x1", "x2"]
SCHEMA = LogSchema(("x1", "x2"), ("numeric", "numeric"), True, True)


def _entry(i: int, rows: int = 1, ts: int | None = None) -> tuple[object, ...]:
    return (
        f"r{i}",
        ts if ts is not None else int(time.time() * 1000),
        3,
        "production",
        0.5,
        np.full((rows, 2), float(i)),
        np.array([1] * rows),
        np.array([0.9] * rows),
        SCHEMA,
    )


def _writer(store: LocalStore, **kw: object) -> BufferedWriter:
    convert = prediction_table("m")
    return BufferedWriter(store, PREDICTIONS, "m", convert, **kw)  # type: ignore[arg-type]


def _table(root: Path) -> pa.Table | None:
    files = sorted((root / "logs/predictions/m").rglob("*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files]) if files else None


def test_format_size_flush_and_close(tmp_path: Path) -> None:
    with LocalStore(tmp_path / "s") as store:
        writer = _writer(store, batch_rows=4, interval=60)
        for i in range(4):
            writer.append(_entry(i), 1)
        deadline = time.monotonic() + 10
        while writer.written < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert writer.written == 4  # flushed by size, long before the interval
        writer.append(_entry(9, rows=3), 3)
        writer.close()
        table = _table(tmp_path / "s")
    assert table is not None and table.num_rows == 7
    assert table.column_names == [
        "request_id",
        "ts",
        "model",
        "version",
        "arm",
        "latency_ms",
        "x1",
        "x2",
        "prediction",
        "score",
    ]
    assert table.schema.field("ts").type == pa.timestamp("ms", tz="UTC")
    assert table.schema.field("prediction").type == pa.string()
    assert table.column("request_id").to_pylist().count("r9") == 3


def test_versions_with_other_signatures_get_their_own_files(tmp_path: Path) -> None:
    other = LogSchema(("x1", "x2", "x3"), ("numeric", "numeric", "numeric"), False, False)
    with LocalStore(tmp_path / "s") as store:
        writer = _writer(store, interval=60)
        writer.append(_entry(1), 1)
        writer.append(
            (
                "r2",
                int(time.time() * 1000),
                4,
                "candidate",
                0.1,
                np.ones((1, 3)),
                np.array([2.5]),
                None,
                other,
            ),
            1,
        )
        writer.close()
    tables = [
        pq.read_table(f) for f in sorted((tmp_path / "s/logs/predictions/m").rglob("*.parquet"))
    ]
    assert sorted(t.num_columns for t in tables) == [10, 10]
    assert {t.schema.field("prediction").type for t in tables} == {pa.string(), pa.float64()}


def test_rows_are_partitioned_by_utc_date(tmp_path: Path) -> None:
    with LocalStore(tmp_path / "s") as store:
        writer = _writer(store, interval=60)
        writer.append(_entry(1, ts=1_700_000_000_000), 1)  # 2023-11-14
        writer.append(_entry(2, ts=1_700_100_000_000), 1)  # 2023-11-16
        writer.close()
    dates = sorted(p.name for p in (tmp_path / "s/logs/predictions/m").iterdir())
    assert dates == ["date=2023-11-14", "date=2023-11-16"]


def test_failed_writes_keep_rows_up_to_the_bound(tmp_path: Path) -> None:
    root = tmp_path / "s"
    with LocalStore(root) as store:
        (root / "logs").mkdir(parents=True)
        (root / "logs/predictions").write_text("in the way")  # every write fails
        warnings: list[str] = []
        writer = _writer(store, batch_rows=1000, interval=60, max_rows=10, warn=warnings.append)
        for i in range(6):
            writer.append(_entry(i, rows=2), 2)
        assert writer.flush() is False
        assert writer.buffered == 10 and writer.dropped == 2
        assert any("buffer full" in w for w in warnings) and any(
            "cannot write" in w for w in warnings
        )
        (root / "logs/predictions").unlink()  # the store is back
        writer.close()
        assert writer.dropped == 2
    table = _table(root)
    assert table is not None and table.num_rows == 10


def test_feedback_table_types() -> None:
    (cls,) = feedback_table(True)([("a", 0, 1.0), ("b", 0, "yes")])
    assert cls.column("actual").to_pylist() == ["1", "yes"]
    (reg,) = feedback_table(False)([("a", 0, 2.5)])
    assert reg.schema.field("actual").type == pa.float64()


def test_metrics_add_up_across_workers(tmp_path: Path) -> None:
    one, two = Metrics(tmp_path, 0, "m"), Metrics(tmp_path, 1, "m")
    try:
        one.observe("3", "production", 0.002, False)
        two.observe("3", "production", 0.2, True)
        two.observe("4", "candidate", 0.0001, False)
        one.add("log_dropped", 5)
        text = render(tmp_path, "m").decode()
    finally:
        one.close()
        two.close()
    assert 'mlopsctl_requests_total{model="m",version="3",arm="production"} 2' in text
    assert 'mlopsctl_request_errors_total{model="m",version="3",arm="production"} 1' in text
    assert (
        'mlopsctl_request_latency_seconds_bucket{model="m",version="3",arm="production",le="0.0025"} 1'
        in text
    )
    assert (
        'mlopsctl_request_latency_seconds_bucket{model="m",version="3",arm="production",le="+Inf"} 2'
        in text
    )
    assert 'mlopsctl_requests_total{model="m",version="4",arm="candidate"} 1' in text
    assert 'mlopsctl_log_dropped_rows_total{model="m"} 5' in text


def test_nothing_written_when_nothing_appended(tmp_path: Path) -> None:
    with LocalStore(tmp_path / "s") as store:
        _writer(store, interval=0.05).close()
    assert _table(tmp_path / "s") is None
