"""Contributions in the prediction log, end to end: `mlopsctl serve --log-contributions 1.0`
logs each row's feature contributions (`contrib.<feature>`, `contrib.bias`) within a few log
intervals, equal to what /explain answers for the same rows, and `mlopsctl monitor check` on
the logs judges attribution drift from them, saying so."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.func.test_models import MODEL

from .test_serving_server import quickstart_project, read_logs, server_env, start_server

MONITOR = f"""\
apiVersion: mlopsctl/v1
kind: Monitor
name: served-contributions
model: {MODEL}:1
current:
  path: "store:logs/predictions/{MODEL}/"
  time_column: ts
  window: 1d
attribution:
  fail: false
"""


def _rows(n: int) -> Any:
    from sklearn.datasets import load_breast_cancer

    return load_breast_cancer(as_frame=True).frame.drop(columns="target").iloc[1::7].head(n)


def _split(frame: Any) -> dict[str, Any]:
    return {"dataframe_split": {"columns": list(frame.columns), "data": frame.values.tolist()}}


def test_logged_contributions_are_the_explanations_and_the_monitor_uses_them(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    root = tmp_path / "demo"
    quickstart_project(tmp_path_factory, root)
    (root / "monitor.yaml").write_text(MONITOR)
    frame = _rows(40)
    server = start_server(root, f"{MODEL}:1", "--log-contributions", "1.0", "--log-interval", "0.2")
    expected: dict[tuple[str, int], dict[str, float]] = {}
    try:
        # one request per row, and one request of 5 rows
        for i in range(len(frame) - 5):
            request_id = f"one-{i}"
            status, _, _ = server.request(
                "POST", "/invocations", _split(frame.iloc[i : i + 1]), {"X-Request-ID": request_id}
            )
            assert status == 200
        status, _, _ = server.request(
            "POST", "/invocations", _split(frame.iloc[-5:]), {"X-Request-ID": "batch"}
        )
        assert status == 200
        # the same rows explained by the server itself (logged too, as explain-*)
        status, body = server.json(
            "POST", "/explain", _split(frame), headers={"X-Request-ID": "explain-all"}
        )
        assert status == 200
        for i, contributions in enumerate(body["explanations"]):
            key = (f"one-{i}", 0) if i < len(frame) - 5 else ("batch", i - (len(frame) - 5))
            expected[key] = contributions
        # written by the running server within a few --log-interval periods, not only on stop
        wanted = len(frame) * 2
        deadline = time.monotonic() + 30
        table = read_logs(root / ".mlops")
        while (table is None or table.num_rows < wanted) and time.monotonic() < deadline:
            time.sleep(0.2)
            table = read_logs(root / ".mlops")
        assert table is not None and table.num_rows == wanted, server.output()
    finally:
        assert server.stop() == 0

    features = list(frame.columns)
    columns = [f"contrib.{name}" for name in features] + ["contrib.bias"]
    assert set(columns) <= set(table.column_names)
    for column in columns:
        assert str(table.schema.field(column).type) == "double"
    logged = table.to_pylist()
    checked = 0
    for row in logged:
        if row["request_id"] == "explain-all":
            continue
        want = expected[(row["request_id"], row["row"])]
        got = {name: row[f"contrib.{name}"] for name in [*features, "bias"]}
        assert got.keys() == want.keys()
        np.testing.assert_allclose(
            [got[k] for k in want], [want[k] for k in want], rtol=1e-9, atol=1e-12
        )
        checked += 1
    assert checked == len(frame)
    # the rows /explain answered log the contributions it answered with
    explained = [r for r in logged if r["request_id"] == "explain-all"]
    for row in explained:
        answered = body["explanations"][row["row"]]
        np.testing.assert_allclose(
            [row[f"contrib.{name}"] for name in answered],
            list(answered.values()),
            rtol=1e-12,
        )

    proc = subprocess.run(
        [sys.executable, "-m", "mlopsctl", "monitor", "check", "monitor.yaml", "--json"],
        cwd=root,
        env=server_env(root),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode in (0, 4), proc.stderr
    result = json.loads(proc.stdout)
    attribution = result["attribution"]
    assert attribution is not None, result
    assert attribution["source"] == "logged"
    assert attribution["sampled"] == attribution["rows"] == len(frame) * 2
    assert attribution["of"] == result["rows"] == len(frame) * 2
    assert attribution["statistic"] is not None  # judged against the training baseline
    names = {f["name"] for f in attribution["features"]}
    assert names == set(features)
    # the mean |contribution| per feature is that of the logged values
    first = attribution["features"][0]
    values = np.abs(np.array(table.column(f"contrib.{first['name']}").to_pylist()))
    assert first["current"] == pytest.approx(values.mean(), rel=1e-9)

    proc = subprocess.run(
        [sys.executable, "-m", "mlopsctl", "monitor", "check", "monitor.yaml"],
        cwd=root,
        env=server_env(root),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    text = proc.stdout + proc.stderr
    assert f"logged contributions on {len(frame) * 2} of {len(frame) * 2} rows" in text, text
