"""The monitor on serving logs, the datasets continuous training learns from: features that
serving logs as feature.<name> (named like a log column) are judged under their names, and
with `baseline: previous_window` prediction drift compares the model's outputs with those of
the window before, not with its training outputs."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from .conftest import Invoke
from .test_models import MODEL, quickstart_project


def test_features_logged_as_feature_dot_name_keep_their_names() -> None:
    import numpy as np
    import pyarrow as pa

    from mlopsctl.models.profile import profile_numeric
    from mlopsctl.monitor import check_against_profile

    rng = np.random.default_rng(3)
    profile = {
        "rows": 2000,
        "features": {
            "ts": profile_numeric(rng.normal(size=2000)),  # a feature named like the time column
            "score": profile_numeric(rng.normal(5, 1, size=2000)),
        },
    }
    n = 500
    logged = pa.table(
        {
            "ts": pa.array(
                [datetime(2026, 5, 1, tzinfo=timezone.utc)] * n, pa.timestamp("ms", tz="UTC")
            ),
            "feature.ts": rng.normal(size=n),
            "score": rng.random(n),  # the model's score, not the feature
            "feature.score": rng.normal(5, 1, size=n),
        }
    )
    result = check_against_profile(profile, logged)
    judged = {f["name"]: f for f in result["features"]}
    assert set(judged) == {"ts", "score"}
    assert not judged["ts"]["drifted"] and not judged["score"]["drifted"], judged
    assert not result["drift"]
    assert [q for q in result["quality"] if q["failed"]] == []
    # The same table without the feature.<name> columns reads the log's own columns: drift.
    plain = logged.drop_columns(["feature.score"])
    assert check_against_profile(profile, plain)["drift_share"] > 0


def _write_window(root: Path, rows: Any, since: datetime, scores: Any, tag: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlopsctl.config import load_project, open_project_store

    n = len(rows)
    columns: dict[str, Any] = {
        "request_id": [f"{tag}-{i}" for i in range(n)],
        "row": pa.array([0] * n, pa.int32()),
        "ts": pa.array(
            [since + timedelta(seconds=i) for i in range(n)], pa.timestamp("ms", tz="UTC")
        ),
        "model": [MODEL] * n,
        "version": pa.array([1] * n, pa.int64()),
        "arm": ["default"] * n,
        "latency_ms": [1.0] * n,
    }
    for name in rows.columns:
        if name != "target":
            columns[name] = pa.array(rows[name].astype(float).tolist(), pa.float64())
    columns["prediction"] = pa.array([1] * n, pa.int64())
    columns["score"] = pa.array(scores, pa.float64())
    sink = io.BytesIO()
    pq.write_table(pa.table(columns), sink)
    with open_project_store(load_project(root)) as store:
        store.put(f"logs/predictions/{MODEL}/date={since:%Y-%m-%d}/{tag}.parquet", sink.getvalue())


def test_previous_window_prediction_drift_compares_with_the_window_before(
    tmp_path_factory: pytest.TempPathFactory,
    tmp_path: Path,
    cli: Invoke,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import numpy as np
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = tmp_path / "demo"
    quickstart_project(tmp_path_factory, root)
    frame = load_breast_cancer(as_frame=True).frame
    held_out = train_test_split(frame, test_size=0.25, random_state=42, stratify=frame.target)[1]
    now = datetime.now(timezone.utc).replace(microsecond=0)
    rng = np.random.default_rng(5)
    # Both windows: the same kind of rows, every score near 0.9 (unlike the training outputs,
    # which sit near 0 and 1).
    _write_window(
        root,
        held_out,
        now - timedelta(minutes=110),
        rng.uniform(0.85, 0.95, len(held_out)),
        "before",
    )
    _write_window(
        root, held_out, now - timedelta(minutes=50), rng.uniform(0.85, 0.95, len(held_out)), "now"
    )
    spec = (
        "apiVersion: mlopsctl/v1\nkind: Monitor\nname: served\n"
        f"model: {MODEL}:1\n"
        f"current: {{path: 'store:logs/predictions/{MODEL}/', time_column: ts, window: 1h}}\n"
    )
    (root / "monitor.yaml").write_text(spec)

    trained = cli("monitor", "check", "monitor.yaml", "--json", cwd=root)
    assert trained.exit_code == 4, trained.stdout + trained.stderr
    assert json.loads(trained.stdout)["prediction"]["drifted"] is True

    windowed = cli(
        "monitor", "check", "monitor.yaml", "--baseline", "previous_window", "--json", cwd=root
    )
    result = json.loads(windowed.stdout)
    assert windowed.exit_code == 0, windowed.stdout + windowed.stderr
    assert result["prediction"]["drifted"] is False and result["prediction"]["of"] == "score"
    assert result["baseline"].startswith("previous window ")
