"""The serving logs are monitoring's input: requests served by `mlopsctl serve` (logged to the
store), outcomes posted to /feedback, then `mlopsctl monitor check` on the `store:` prefixes
finds no drift and the offline accuracy; after shifted traffic, drift (exit 4)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.func.test_models import MODEL

from .test_serving_server import ServerProcess, quickstart_project, server_env, start_server

MONITOR = f"""\
apiVersion: mlopsctl/v1
kind: Monitor
name: served-traffic
model: {MODEL}:1
current:
  path: "store:logs/predictions/{MODEL}/"
  time_column: ts
  window: 1d
ground_truth:
  path: "store:logs/feedback/{MODEL}/"
  id_column: request_id
  target_column: actual
  metric: accuracy
  max_drop: 0.1
"""


def _held_out() -> Any:
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    frame = load_breast_cancer(as_frame=True).frame
    return train_test_split(frame, test_size=0.25, random_state=42, stratify=frame.target)[1]


def _serve_rows(server: ServerProcess, frame: Any, prefix: str) -> None:
    """One request per row, each with its own id, then every outcome to /feedback."""
    features = [c for c in frame.columns if c != "target"]
    outcomes = []
    for i, (_, row) in enumerate(frame.iterrows()):
        body = {"dataframe_split": {"columns": features, "data": [row[features].tolist()]}}
        request_id = f"{prefix}-{i}"
        status, headers, _ = server.request(
            "POST", "/invocations", body, headers={"X-Request-ID": request_id}
        )
        assert status == 200 and headers["x-request-id"] == request_id
        outcomes.append({"request_id": request_id, "actual": int(row["target"])})
    status, _ = server.json("POST", "/feedback", outcomes)
    assert status in (200, 202)


def _monitor(root: Path) -> tuple[int, dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, "-m", "mlopsctl", "monitor", "check", "monitor.yaml", "--json"],
        cwd=root,
        env=server_env(root),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def test_served_traffic_is_monitored_from_the_store(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    root = tmp_path / "demo"
    run = quickstart_project(tmp_path_factory, root)
    (root / "monitor.yaml").write_text(MONITOR)
    held_out = _held_out()

    server = start_server(root, f"{MODEL}:1", "--log-interval", "1")
    try:
        _serve_rows(server, held_out, "plain")
    finally:
        assert server.stop() == 0  # a graceful stop flushes every log row
    code, result = _monitor(root)
    assert code == 0, result
    assert result["rows"] == len(held_out)
    assert result["drift"] is False
    performance = result["performance"]
    assert performance["failed"] is False
    assert performance["value"] == pytest.approx(run["metrics"]["accuracy"], abs=0.05)

    shifted = held_out.copy()
    for column in shifted.columns:
        if column.startswith(("mean ", "worst ")):
            shifted[column] *= 1.5
    server = start_server(root, f"{MODEL}:1", "--log-interval", "1")
    try:
        _serve_rows(server, shifted, "shifted")
    finally:
        assert server.stop() == 0
    code, result = _monitor(root)
    assert code == 4, result
    assert result["rows"] == 2 * len(held_out)
    assert result["drift"] is True
    moved = {c for c in shifted.columns if c.startswith(("mean ", "worst "))}
    drifted = set(result["drifted_features"])
    assert moved <= drifted
    # The unshifted columns now hold every held-out row twice, which makes the p-value tests
    # (the default at this size) twice as sure of the small held-out vs training difference:
    # a few of them may cross; most must not.
    assert len(drifted - moved) <= 3, drifted - moved
