"""The feature store end to end, through the commands: a FeatureSet spec, materialize-offline,
a training set, a pipeline whose ingest joins the set (`features:`) and registers a model whose
version records the set and its digest (lineage shows it), materialize into the SQLite online
store, serving requests that carry only the entity key and a request-time feature (the values
looked up are logged), and the skew check: none while the online store is current, a finding
once newer offline rows have not been loaded online."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.func.conftest import Invoke

SPEC = """\
apiVersion: mlopsctl/v1
kind: FeatureSet
name: customer-stats
entities: [{name: customer_id, type: int64}]
timestamp: event_timestamp
source: {path: data/customer_stats.parquet}
transform:
  sql: SELECT customer_id, event_timestamp, trips, trips / 7.0 AS trips_per_day, rating FROM source
features:
  - {name: trips, type: int64}
  - {name: trips_per_day, type: float64}
  - {name: rating, type: float64}
ttl: 30d
"""

PIPELINE = """\
apiVersion: mlopsctl/v1
kind: Pipeline
name: churn-features
steps:
  ingest:
    component: ingest
    with:
      path: data/labels.parquet
      features: {sets: [features/customer.yaml]}
  train:
    component: train
    inputs: {train: ingest.dataset}
    with: {target: churned, estimator: {class: sklearn.linear_model.LogisticRegression, max_iter: 500}}
register:
  model: churn
  from: train.model
"""

MONITOR = """\
apiVersion: mlopsctl/v1
kind: Monitor
name: churn-serving
model: churn:1
current: {path: "store:logs/predictions/churn/", time_column: ts, window: 1d}
skew: {max_share: 0.05}
"""

NOW = datetime.now(timezone.utc).replace(microsecond=0)


def _stats(days: int, customers: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for day in range(days):
        for cid in range(customers):
            rows.append(
                {
                    "customer_id": cid,
                    "event_timestamp": NOW
                    - timedelta(days=10 - day, hours=int(rng.integers(0, 12))),
                    "trips": int(rng.integers(0, 30)),
                    "rating": float(np.round(rng.uniform(1, 5), 2)),
                }
            )
    return pd.DataFrame(rows)


def _write_project(root: Path) -> None:
    (root / "data").mkdir(exist_ok=True)
    (root / "features").mkdir(exist_ok=True)
    _stats(8).to_parquet(root / "data/customer_stats.parquet")
    rng = np.random.default_rng(1)
    n = 400
    labels = pd.DataFrame(
        {
            "customer_id": rng.integers(0, 70, n),  # 60..69: no feature rows
            "event_timestamp": [
                NOW - timedelta(days=int(d), hours=1) for d in rng.integers(0, 9, n)
            ],
            "age": rng.integers(18, 80, n).astype("float64"),
        }
    )
    labels["churned"] = (rng.random(n) < 0.3).astype(int)
    labels.to_parquet(root / "data/labels.parquet")
    (root / "features/customer.yaml").write_text(SPEC)
    (root / "pipeline.yaml").write_text(PIPELINE)


@pytest.fixture
def fs_project(project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("MLOPSCTL_ONLINE_STORE", raising=False)
    _write_project(project)
    return project


def test_offline_training_set_and_errors(cli: Invoke, fs_project: Path) -> None:
    root = fs_project
    assert cli("validate", "features/customer.yaml", cwd=root).exit_code == 0
    result = cli(
        "features",
        "training-set",
        "data/labels.parquet",
        "features/customer.yaml",
        "-o",
        "t.parquet",
    )
    assert result.exit_code == 6 and "materialize-offline" in result.stderr
    result = cli("features", "materialize-offline", "features/customer.yaml", "--json")
    assert result.exit_code == 0, result.stderr
    made = json.loads(result.stdout)[0]
    assert made["rows"] == 8 * 60 and made["changed"] and made["digest"].startswith("sha256:")
    again = cli("features", "materialize-offline", "features/customer.yaml")
    assert again.exit_code == 0 and "unchanged" in again.stdout
    result = cli(
        "features",
        "training-set",
        "data/labels.parquet",
        "features/customer.yaml",
        "-o",
        "t.parquet",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    table = pd.read_parquet(root / "t.parquet")
    assert summary["rows"] == len(table) == 400
    assert list(table.columns) == [
        "customer_id",
        "event_timestamp",
        "age",
        "churned",
        "trips",
        "trips_per_day",
        "rating",
    ]
    unknown = table["customer_id"] >= 60
    assert table.loc[unknown, "trips"].isna().all()
    assert summary["matched"]["customer-stats"] == int(table["trips"].notna().sum()) > 200
    assert summary["feature_sets"][0]["digest"] == made["digest"]
    listed = cli("features", "list", "--json")
    assert json.loads(listed.stdout)[0]["name"] == "customer-stats"
    bad = cli(
        "features",
        "training-set",
        "data/labels.parquet",
        "features/customer.yaml",
        "-o",
        "t.parquet",
        "--timestamp",
        "when",
    )
    assert bad.exit_code == 2 and "no column 'when'" in bad.stderr
    (root / "features/bad.yaml").write_text(SPEC.replace("ttl: 30d", "ttl: 30 days"))
    invalid = cli("features", "materialize-offline", "features/bad.yaml")
    assert invalid.exit_code == 3 and "features/bad.yaml:13:6" in invalid.stderr


def _serve(store, version: int, bodies: list[dict]) -> tuple[list[tuple[int, dict]], pd.DataFrame]:
    """Answer ``bodies`` on /invocations in process, with logging, and return the log rows."""
    import tempfile

    from mlopsctl.serving.app import App, Arm, make_router
    from mlopsctl.serving.follow import load_predictor
    from mlopsctl.serving.logs import PREDICTIONS, BufferedWriter, prediction_table
    from mlopsctl.serving.metrics import Metrics

    predictor = load_predictor(store, "churn", version, smoke=False)
    folder = Path(tempfile.mkdtemp())
    metrics = Metrics(folder, 0, "churn", background=False)
    app = App("churn", make_router([Arm(str(version), None, predictor)], [1.0]), metrics, folder)
    app.log = BufferedWriter(store, PREDICTIONS, "churn", prediction_table("churn"), interval=60)
    answers = []
    for body in bodies:
        path = str(body.pop("_path", "/invocations")).encode()
        status, _, payload = app.handle(
            b"POST",
            path,
            {b"content-type": b"application/json"},
            json.dumps(body).encode(),
        )
        answers.append((status, json.loads(payload)))
    app.log.flush()
    app.log.close()
    keys = sorted(k for k in store.list(f"{PREDICTIONS}/churn/") if k.endswith(".parquet"))
    logs = pd.concat([pd.read_parquet(store.root / k) for k in keys], ignore_index=True)
    return answers, logs


def test_pipeline_registry_lineage_serving_and_skew(cli: Invoke, fs_project: Path) -> None:
    from mlopsctl.store.local import LocalStore

    root = fs_project
    assert cli("features", "materialize-offline", "features/customer.yaml", cwd=root).exit_code == 0
    result = cli("run", "pipeline.yaml")
    assert result.exit_code == 0, result.stderr
    shown = json.loads(cli("models", "show", "churn:1", "--json").stdout)
    (recorded,) = shown["feature_sets"]
    assert recorded["name"] == "customer-stats" and recorded["digest"].startswith("sha256:")
    assert [f["name"] for f in shown["signature"]["features"]] == [
        "age",
        "trips",
        "trips_per_day",
        "rating",
    ]
    lineage = cli("lineage", "churn:1")
    assert f"featureset customer-stats {recorded['digest'][7:19]}" in lineage.stdout
    down = json.loads(cli("lineage", recorded["digest"], "--json").stdout)
    assert any(n["id"] == "model:churn:1" for n in down["nodes"])

    loaded = cli("features", "materialize", "features/customer.yaml")
    assert loaded.exit_code == 0, loaded.stderr
    assert "60 entities written" in loaded.stdout
    assert (root / ".mlops-online/features.sqlite").is_file()
    got = json.loads(cli("features", "get", "features/customer.yaml", "7", "--json").stdout)
    stats = pd.read_parquet(root / "data/customer_stats.parquet")
    latest = stats[stats.customer_id == 7].sort_values("event_timestamp").iloc[-1]
    assert got["trips"] == latest["trips"] and got["rating"] == latest["rating"]

    store = LocalStore(root / ".mlops")
    bodies = [
        {"dataframe_records": [{"customer_id": 7, "age": 40.0}, {"customer_id": 65, "age": 22.0}]},
        {"dataframe_split": {"columns": ["customer_id", "age"], "data": [[3, 50.0]]}},
        {"dataframe_records": [{"age": 40.0}]},  # no key: refused, naming it
        {"_path": "/explain", "dataframe_records": [{"customer_id": 7, "age": 40.0}]},
    ]
    answers, logs = _serve(store, 1, bodies)
    assert answers[0][0] == 200 and len(answers[0][1]["predictions"]) == 2
    assert answers[1][0] == 200
    assert answers[2][0] == 400 and "customer_id" in answers[2][1]["message"]
    assert answers[3][0] == 200, answers[3]
    assert set(answers[3][1]["explanations"][0]) >= {"age", "trips", "trips_per_day", "rating"}
    row7 = logs[logs.customer_id == 7].iloc[0]
    assert row7["trips"] == latest["trips"] and row7["trips_per_day"] == pytest.approx(
        latest["trips"] / 7
    )
    assert np.isnan(logs[logs.customer_id == 65].iloc[0]["trips"])  # unknown entity: missing

    # The served values are the offline ones as of each request: no skew.
    result = cli("features", "skew", "churn:1", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["rows"] == 4 and not report["failed"]
    assert {f["feature"] for f in report["features"]} == {"trips", "trips_per_day", "rating"}
    assert all(f["differ"] == 0 for f in report["features"])
    (root / "monitor.yaml").write_text(MONITOR)
    checked = json.loads(cli("monitor", "check", "monitor.yaml", "--json").stdout)
    assert checked["skew"]["rows"] == 4 and checked["skew"]["skewed"] == []

    # Newer feature rows reach the offline store but not the online one: the next requests are
    # served stale values, and skew says which features differ.
    newer = _stats(1, seed=5)
    newer["event_timestamp"] = NOW - timedelta(minutes=5)
    stats = pd.concat([stats, newer], ignore_index=True)
    stats.to_parquet(root / "data/customer_stats.parquet")
    assert cli("features", "materialize-offline", "features/customer.yaml").exit_code == 0
    more = [{"dataframe_records": [{"customer_id": c, "age": 30.0} for c in range(60)]}]
    _serve(store, 1, more)
    result = cli("features", "skew", "churn:1", "--max-share", "0.05")
    assert result.exit_code == 4, result.stdout
    assert "SKEW" in result.stdout and "served values differ" in result.stderr
    # The monitor finds it too (a skew finding next to drift against training), exit 4.
    result = cli("monitor", "check", "monitor.yaml", "--json")
    assert result.exit_code == 4
    checked = json.loads(result.stdout)
    assert checked["failed"] and set(checked["skew"]["skewed"]) >= {"trips", "rating"}
    events = json.loads(cli("audit", "--type", "drift", "--json").stdout)
    assert events[-1]["skewed_features"] == checked["skew"]["skewed"]
    # Loading the online store again ends it for new requests.
    assert cli("features", "materialize", "features/customer.yaml").exit_code == 0


def test_new_offline_values_run_the_ingest_again(cli: Invoke, fs_project: Path) -> None:
    """The step cache keys an ingest with features: by the sets' current materialisation: the
    same materialisation is a cache hit, new values materialised since run it again."""
    root = fs_project
    done = cli("features", "materialize-offline", "features/customer.yaml", cwd=root)
    assert done.exit_code == 0, done.stderr
    first = json.loads(cli("run", "pipeline.yaml", "--json", "--no-register").stdout)
    again = json.loads(cli("run", "pipeline.yaml", "--json", "--no-register").stdout)
    assert first["steps"]["ingest"]["status"] == "executed"
    assert again["steps"]["ingest"]["status"] == "cached"
    assert again["steps"]["train"]["status"] == "cached"

    _stats(9, seed=5).to_parquet(root / "data/customer_stats.parquet")  # a day more, new values
    done = cli("features", "materialize-offline", "features/customer.yaml", cwd=root)
    assert done.exit_code == 0, done.stderr
    fresh = json.loads(cli("run", "pipeline.yaml", "--json", "--no-register").stdout)
    assert fresh["steps"]["ingest"]["status"] == "executed"
    assert fresh["steps"]["ingest"]["cache_key"] != first["steps"]["ingest"]["cache_key"]
    used = fresh["steps"]["ingest"]["info"]["feature_sets"][0]["digest"]
    assert used != first["steps"]["ingest"]["info"]["feature_sets"][0]["digest"]
