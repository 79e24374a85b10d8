"""Windows with two ends: date= partition pruning on both sides, row filtering on [since, until),
and ``baseline: previous_window`` (the window before the current one on the same source) with an
injected ``now``, from a folder and from the project store."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from mlopsctl.config import project_from_data
from mlopsctl.errors import NotFound, UsageError
from mlopsctl.monitor import PREVIOUS_WINDOW, data, run_monitor
from mlopsctl.store import open_store

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)


def _frame(n: int, seed: int, when: datetime, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "ts": pd.Series([pd.Timestamp(when).floor("ms")] * n, dtype="datetime64[ms, UTC]"),
            "age": rng.normal(40 + shift, 10, n),
            "plan": rng.choice(["basic", "pro", "team"], p=[0.5, 0.3, 0.2], size=n),
        }
    )


def _write(root: Path, when: datetime, frame: pd.DataFrame) -> Path:
    folder = root / f"date={when:%Y-%m-%d}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{when:%H%M%S}-1-0.parquet"
    frame.to_parquet(path, index=False)
    return path


def _corrupt(root: Path, day: str) -> None:
    """A file that fails to read: the test passes only if its partition is never opened."""
    folder = root / f"date={day}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "broken.parquet").write_bytes(b"not parquet at all")


def test_partitions_are_pruned_on_both_ends(tmp_path: Path):
    for day in ("2026-11-12", "2026-11-13", "2026-11-20", "2026-11-21", "2026-11-26"):
        (tmp_path / f"date={day}").mkdir()
        (tmp_path / f"date={day}/a.parquet").write_bytes(b"")
    (tmp_path / "undated.csv").write_text("a\n1\n")  # no date: always a candidate
    since, until = data.previous_window("7d", NOW)
    assert (since, until) == (NOW - timedelta(days=14), NOW - timedelta(days=7))

    def listed(since: datetime | None, until: datetime | None) -> list[str]:
        files = data.iter_files(str(tmp_path), root=tmp_path, store=None, since=since, until=until)
        return [f.relative_to(tmp_path).as_posix() for f in files]

    # 11-13 12:00 .. 11-20 12:00 touches the days 11-13 (afternoon) and 11-20 (morning).
    assert listed(since, until) == [
        "date=2026-11-13/a.parquet",
        "date=2026-11-20/a.parquet",
        "undated.csv",
    ]
    # A day that starts exactly at the end is outside [since, until).
    midnight = datetime(2026, 11, 20, tzinfo=timezone.utc)
    assert listed(None, midnight) == [
        "date=2026-11-12/a.parquet",
        "date=2026-11-13/a.parquet",
        "undated.csv",
    ]
    assert listed(midnight, None)[:2] == ["date=2026-11-20/a.parquet", "date=2026-11-21/a.parquet"]
    # Naive times are UTC, like the logs.
    assert listed(since.replace(tzinfo=None), until.replace(tzinfo=None)) == listed(since, until)
    (tmp_path / "undated.csv").unlink()
    with pytest.raises(NotFound, match="no CSV or Parquet files"):
        listed(datetime(2027, 1, 1, tzinfo=timezone.utc), datetime(2027, 1, 8, tzinfo=timezone.utc))


def test_store_partitions_are_pruned_on_both_ends(tmp_path: Path):
    with open_store(str(tmp_path / "store")) as store:
        for day in ("2026-11-12", "2026-11-13", "2026-11-21"):
            store.put(f"logs/m/date={day}/{day}.parquet", b"x")
        files = data.iter_files(
            "store:logs/m/",
            root=tmp_path,
            store=store,
            since=NOW - timedelta(days=14),
            until=NOW - timedelta(days=7),
        )
        assert [p.name.split("-", 1)[1] for p in files] == ["2026-11-13.parquet"]


@pytest.mark.parametrize(
    "column",
    [
        pa.array([0, 1, 2, 3], pa.timestamp("ms", "UTC")),
        pa.array([0, 1, 2, 3], pa.timestamp("ms")),  # naive: UTC
        pa.array([f"1970-01-01T00:00:00.00{n}" for n in range(4)]),
    ],
    ids=["aware", "naive", "text"],
)
def test_filter_window_keeps_the_start_and_drops_the_end(column: pa.Array):
    table = pa.table({"ts": column, "n": [0, 1, 2, 3]})
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    ms = timedelta(milliseconds=1)
    kept = data.filter_window(table, "ts", epoch + ms, epoch + 3 * ms)
    assert kept.column("n").to_pylist() == [1, 2]
    assert data.filter_window(table, "ts", None, epoch).num_rows == 0
    assert data.filter_window(table, "ts", None, None).num_rows == 4
    assert data.filter_since(table, "ts", epoch + 2 * ms).num_rows == 2


def _spec(root: Path, current: dict[str, str], **extra: object) -> Path:
    path = root / "monitor.yaml"
    spec = {
        "apiVersion": "mlopsctl/v1",
        "kind": "Monitor",
        "name": "week-over-week",
        "baseline": PREVIOUS_WINDOW,
        "current": current,
        **extra,
    }
    path.write_text(json.dumps(spec))
    return path


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    """Two weeks of logs around NOW, plus broken files in days neither window may open."""
    root = tmp_path / "logs"
    _write(root, NOW - timedelta(days=20), _frame(300, 9, NOW - timedelta(days=20), shift=30))
    _write(root, NOW - timedelta(days=10), _frame(300, 1, NOW - timedelta(days=10)))
    _write(root, NOW - timedelta(hours=3), _frame(300, 2, NOW - timedelta(hours=3)))
    _write(root, NOW + timedelta(hours=1), _frame(300, 3, NOW + timedelta(hours=1), shift=30))
    _corrupt(root, f"{NOW - timedelta(days=25):%Y-%m-%d}")
    _corrupt(root, f"{NOW + timedelta(days=2):%Y-%m-%d}")
    return root


def _check(root: Path, spec: Path, now: datetime, **kwargs: object) -> dict:
    project = project_from_data({}, root, None)
    with open_store(str(root / "store")) as store:
        return run_monitor(spec, project=project, store=store, now=now, record=False, **kwargs)


def test_previous_window_baseline_reads_both_windows_of_the_same_source(tmp_path: Path, logs: Path):
    spec = _spec(tmp_path, {"path": "logs", "time_column": "ts", "window": "7d"})
    result = _check(tmp_path, spec, NOW)
    assert result["failed"] is False, result
    assert result["rows"] == 300  # the rows after NOW belong to a later run
    assert result["baseline"] == "previous window 2026-11-13T12:00:00Z – 2026-11-20T12:00:00Z"
    assert result["baseline_window"] == {
        "column": "ts",
        "since": "2026-11-13T12:00:00+00:00",
        "until": "2026-11-20T12:00:00+00:00",
    }
    assert result["window"]["until"] == NOW.isoformat()
    assert sorted(f["name"] for f in result["features"]) == ["age", "plan"]  # not the time
    age = next(f for f in result["features"] if f["name"] == "age")
    assert (age["test"], age["method"]) == ("ks", "exact")  # the baseline rows are kept

    # A week later the shifted rows of NOW + 1h are current, the unshifted ones the baseline.
    later = _check(tmp_path, spec, NOW + timedelta(days=1))
    assert later["failed"] is True
    assert later["drifted_features"] == ["age"]

    # Nothing logged in the week before: say so, and what to do. Here the day 11-17 is read
    # (the window ends at 06:00 that day) but its rows, at 12:00, are after the end.
    with pytest.raises(NotFound, match=r"no rows in the previous window 2026-11-10T06:00:00Z"):
        _check(tmp_path, spec, datetime(2026, 11, 24, 6, tzinfo=timezone.utc))
    with pytest.raises(NotFound, match="nothing to compare the last 7d with"):
        _check(tmp_path, spec, datetime(2030, 1, 1, tzinfo=timezone.utc))


def test_previous_window_needs_a_time_column_and_a_window(tmp_path: Path, logs: Path):
    no_window = _spec(tmp_path, {"path": "logs"}, baseline="training")
    with pytest.raises(UsageError, match=r"needs current\.time_column and current\.window"):
        _check(tmp_path, no_window, NOW, baseline=PREVIOUS_WINDOW)
