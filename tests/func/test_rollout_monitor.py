"""Monitoring per version and arm: the false finding of issue 15. A candidate served a share of
the traffic and was rolled back; its rows stay in the prediction log. `monitor check` of
`breast-cancer@production` used to judge every logged row, whichever version served it, and
found prediction drift in the candidate's outputs. Now it judges the rows of the version the
alias points at (and says so); `current.version: all` gives the old reading, `current.version`
and `current.arm` pick rows explicitly."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlopsctl.store.local import LocalStore
from mlopsctl.timeutil import utc_now

from .conftest import Invoke
from .test_models import MODEL, quickstart_project

MONITOR = f"""\
apiVersion: mlopsctl/v1
kind: Monitor
name: served
model: {MODEL}@production
current:
  path: "store:logs/predictions/{MODEL}/"
  time_column: ts
  window: 1d
"""


def _held_out() -> Any:
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    frame = load_breast_cancer(as_frame=True).frame
    return train_test_split(frame, test_size=0.25, random_state=42, stratify=frame.target)[1]


def _log(store: LocalStore, frame: Any, version: int, arm: str, scores: Any, name: str) -> None:
    """Rows as `mlopsctl serve` logs them: features, label, positive-class score."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = len(frame)
    now = utc_now() - timedelta(minutes=5)
    columns: dict[str, Any] = {
        "request_id": pa.array([f"{name}-{i}" for i in range(n)]),
        "row": pa.array([0] * n, pa.int32()),
        "ts": pa.array(
            [int(now.timestamp() * 1000) + i for i in range(n)], pa.timestamp("ms", tz="UTC")
        ),
        "model": pa.array([MODEL] * n),
        "version": pa.array([version] * n, pa.int64()),
        "arm": pa.array([arm] * n),
        "latency_ms": pa.array([1.0] * n, pa.float64()),
    }
    for column in frame.columns:
        if column != "target":
            columns[column] = pa.array(frame[column].to_numpy(dtype="float64"))
    columns["prediction"] = pa.array((np.asarray(scores) > 0.5).astype("int64"))
    columns["score"] = pa.array(np.asarray(scores, dtype="float64"))
    sink = io.BytesIO()
    pq.write_table(pa.table(columns), sink)
    store.put(
        f"logs/predictions/{MODEL}/date={now.strftime('%Y-%m-%d')}/{name}.parquet", sink.getvalue()
    )


@pytest.fixture
def root(
    tmp_path_factory: pytest.TempPathFactory,
    tmp_path: Path,
    cli: Invoke,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = tmp_path / "demo"
    quickstart_project(tmp_path_factory, root)
    assert cli("models", "alias", "set", MODEL, "production", "1", cwd=root).exit_code == 0
    (root / "monitor.yaml").write_text(MONITOR)
    from mlopsctl.registry import load_model

    held_out = _held_out()
    with LocalStore(root / ".mlops") as store:
        model = load_model(f"{MODEL}:1", store=store)
        champion = model.predict_proba(held_out)[:, 1]
        _log(store, held_out, 1, "production", champion, "champion")
        # The rolled-back candidate: another version, confident the other way round.
        _log(store, held_out, 2, "2", 1.0 - champion, "candidate")
    return root


def _check(cli: Invoke, root: Path, spec: str = "monitor.yaml") -> tuple[int, dict[str, Any]]:
    result = cli("monitor", "check", spec, "--json", cwd=root)
    assert result.stdout, result.stderr
    return result.exit_code, json.loads(result.stdout)


def test_rows_of_a_rolled_back_candidate_no_longer_drift_the_champion(
    cli: Invoke, root: Path
) -> None:
    code, result = _check(cli, root)
    rows = len(_held_out())
    assert code == 0, result
    assert result["rows"] == rows
    assert result["prediction"]["drifted"] is False
    assert result["served"] == {
        "version": 1,
        "arm": None,
        "source": "the monitored model's version",
        "rows": rows,
        "excluded_rows": rows,
        "rows_without_version": 0,
    }
    assert any("rows served by version 1" in note for note in result["notes"])

    # Every row, as before: the candidate's outputs are the false prediction-drift finding.
    (root / "all.yaml").write_text(
        MONITOR.replace("  window: 1d\n", "  window: 1d\n  version: all\n")
    )
    code, everything = _check(cli, root, "all.yaml")
    assert code == 4 and everything["rows"] == 2 * rows
    assert everything["prediction"]["drifted"] is True
    assert everything["served"]["version"] is None


def test_version_and_arm_pick_rows_explicitly(cli: Invoke, root: Path) -> None:
    (root / "cand.yaml").write_text(
        MONITOR.replace("  window: 1d\n", "  window: 1d\n  version: 2\n")
    )
    code, candidate = _check(cli, root, "cand.yaml")
    assert code == 4 and candidate["prediction"]["drifted"] is True
    assert candidate["served"]["source"] == "current.version"
    (root / "arm.yaml").write_text(
        MONITOR.replace("  window: 1d\n", "  window: 1d\n  version: all\n  arm: production\n")
    )
    code, arm = _check(cli, root, "arm.yaml")
    assert code == 0 and arm["served"]["arm"] == "production" and arm["rows"] == len(_held_out())
    (root / "none.yaml").write_text(
        MONITOR.replace("  window: 1d\n", "  window: 1d\n  version: 7\n")
    )
    missing = cli("monitor", "check", "none.yaml", cwd=root)
    assert (
        missing.exit_code == 2
        and "none of the current rows were served by version 7" in missing.stderr
    )


def test_data_without_a_version_column(cli: Invoke, root: Path) -> None:
    _held_out().drop(columns=["target"]).to_csv(root / "plain.csv", index=False)
    plain = MONITOR.replace(f'"store:logs/predictions/{MODEL}/"', "plain.csv")
    plain = plain.replace("  time_column: ts\n  window: 1d\n", "")
    (root / "plain.yaml").write_text(plain)
    code, result = _check(cli, root, "plain.yaml")
    assert code == 0, result
    assert result["served"]["rows_without_version"] == len(_held_out())
    assert result["served"]["excluded_rows"] == 0
    (root / "strict.yaml").write_text(plain + "  version: 1\n")
    strict = cli("monitor", "check", "strict.yaml", cwd=root)
    assert strict.exit_code == 2 and "no 'version' column" in strict.stderr
