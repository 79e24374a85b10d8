"""Monitoring data that lives in a real S3 server (SeaweedFS): current data under an s3://
prefix and under store: in the project's own S3 store, streamed file by file; the drift event
lands in that store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlopsctl.config import project_from_data
from mlopsctl.events import list_events
from mlopsctl.models.profile import profile_frame
from mlopsctl.monitor import run_monitor

pytestmark = pytest.mark.s3


def _frame(n: int, seed: int, shift: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.normal(40 + shift, 10, n),
            "plan": rng.choice(["basic", "pro", "team"], p=[0.5, 0.3, 0.2], size=n),
        }
    )


@pytest.mark.parametrize("where", ["s3", "store"])
def test_current_data_from_s3(
    tmp_path: Path, s3_env: Any, s3_url: str, make_s3_store: Any, where: str
) -> None:
    baseline = _frame(3000, 1, 0.0)
    kinds = [("age", "numeric"), ("plan", "categorical")]
    profile = {"rows": len(baseline), "features": profile_frame(baseline, kinds)}
    (tmp_path / "baseline.json").write_text(json.dumps(profile))

    store = make_s3_store()
    for i in range(3):
        part = tmp_path / f"part-{i}.parquet"
        _frame(700, 10 + i, 9.0).to_parquet(part, index=False)
        store.put_file(f"incoming/current/date=2024-01-0{i + 1}/part-{i}.parquet", part)
    store.put("incoming/current/README.txt", b"not data: skipped")
    store.put("incoming/current-old/part.parquet", b"a sibling prefix: never read")

    location = f"{s3_url}/incoming/current" if where == "s3" else "store:incoming/current"
    spec = tmp_path / "monitor.yaml"
    spec.write_text(
        json.dumps(
            {
                "apiVersion": "mlopsctl/v1",
                "kind": "Monitor",
                "name": "s3-monitor",
                "baseline": "baseline.json",
                "current": {"path": location},
                "drift_share": 0.5,
            }
        )
    )
    project = project_from_data(
        {"store": {"url": s3_url, "s3": {"endpoint_url": s3_env.endpoint}}}, tmp_path, None
    )
    result = run_monitor(spec, project=project, store=store, report=tmp_path / "r.html")
    assert result["rows"] == 2100
    assert result["drifted_features"] == ["age"]
    assert result["failed"] is True
    assert (tmp_path / "r.html").is_file()
    events = list_events(store, kind="drift")
    assert [e["id"] for e in events] == [result["event"]]
    assert events[0]["drifted_features"] == ["age"]
