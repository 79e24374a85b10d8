"""`mlopsctl monitor` on the quickstart: held-out rows pass, a shifted copy fails with exit 4, a
report and a drift event; serving logs and feedback read from the store (the formats `serve`
writes) with a window; profiles; errors and their exit codes."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from .conftest import Invoke
from .test_models import MODEL, REPO, quickstart_project

SHIFTED = [f"{group} {name}" for group in ("mean", "worst") for name in (
    "radius", "texture", "perimeter", "area", "smoothness",
    "compactness", "concavity", "concave points", "symmetry", "fractal dimension",
)]  # fmt: skip


def held_out() -> pd.DataFrame:
    """The quickstart's test split (same seed and stratification as its split step)."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    frame = load_breast_cancer(as_frame=True).frame
    return train_test_split(frame, test_size=0.25, random_state=42, stratify=frame["target"])[1]


@pytest.fixture
def project(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = tmp_path / "demo"
    quickstart_project(tmp_path_factory, root)
    (root / "specs").mkdir()
    shutil.copy(REPO / "specs/examples/quickstart-monitor.yaml", root / "specs")
    (root / "data").mkdir()
    current = held_out()
    current.to_csv(root / "data/current.csv", index=False)
    shifted = current.copy()
    shifted[SHIFTED] = shifted[SHIFTED] * 1.5
    shifted.to_csv(root / "data/shifted.csv", index=False)
    return root


def _events(cli: Invoke, root: Path) -> list[dict[str, Any]]:
    result = cli("audit", "--json", cwd=root)
    assert result.exit_code == 0, result.stderr
    return [e for e in json.loads(result.stdout) if e["type"] == "drift"]


def test_quickstart_held_out_passes_and_shifted_copy_fails(cli: Invoke, project: Path):
    spec = "specs/quickstart-monitor.yaml"
    ok = cli("monitor", "check", spec, cwd=project)
    assert ok.exit_code == 0, ok.stderr + ok.stdout
    assert f"{MODEL}:1 on 143 rows; 0/30 features drifted" in ok.stdout
    assert "performance: accuracy" in ok.stdout
    assert (project / "reports/quickstart-monitor.html").is_file()  # the spec's report.path

    bad = cli(
        "monitor", "check", spec, "--current", "data/shifted.csv",
        "--report", "out/shifted.html", "--json", cwd=project,
    )  # fmt: skip
    assert bad.exit_code == 4, bad.stderr
    result = json.loads(bad.stdout)
    assert sorted(result["drifted_features"]) == sorted(SHIFTED)
    assert result["drift"] is True and result["failed"] is True
    assert result["model"] == {"name": MODEL, "version": 1, "ref": "breast-cancer:latest"}
    assert result["prediction"]["drifted"] is True
    assert result["performance"]["failed"] is True
    assert result["performance"]["baseline"] > result["performance"]["value"]
    schema = next(q for q in result["quality"] if q["test"] == "schema")
    assert schema["extra_columns"] == []  # "target" is read as the labels
    page = (project / "out/shifted.html").read_text()
    assert "FAILED" in page and page.count("<svg") == 31
    assert "monitor quickstart-monitor failed: drift in" in bad.stderr

    events = _events(cli, project)
    assert [e["verdict"] for e in events] == ["passed", "failed"]
    assert events[1]["model"] == MODEL and events[1]["version"] == 1
    assert events[1]["id"] == result["event"]
    assert sorted(events[1]["drifted_features"]) == sorted(SHIFTED)
    assert events[1]["performance"]["failed"] is True


def _write_logs(root: Path, frame: pd.DataFrame, when: datetime, shift: float = 1.0) -> None:
    """Prediction and feedback logs as `mlopsctl serve` writes them (shared format)."""
    from mlopsctl.registry import load_model
    from mlopsctl.store import open_store

    with open_store(str(root / ".mlops")) as store:
        model = load_model(MODEL, store=store)
    features = frame.drop(columns="target") * shift
    ids = [f"req-{when:%d}-{i}" for i in range(len(frame))]
    ts = pd.Timestamp(when).floor("ms")
    logs = pd.DataFrame(
        {
            "request_id": ids,
            "ts": pd.Series([ts] * len(frame), dtype="datetime64[ms, UTC]"),
            "model": MODEL,
            "version": 1,
            "arm": "champion",
            "latency_ms": 1.5,
        }
    )
    logs = pd.concat([logs, features.reset_index(drop=True).astype("float64")], axis=1)
    logs["prediction"] = [str(v) for v in model.predict(features)]
    logs["score"] = model.predict_proba(features)[:, 1]
    day = f"date={when:%Y-%m-%d}"
    folder = root / ".mlops/logs/predictions" / MODEL / day
    folder.mkdir(parents=True, exist_ok=True)
    logs.to_parquet(folder / f"{when:%H%M%S}-1-0.parquet", index=False)
    feedback = pd.DataFrame(
        {"request_id": ids[::2], "ts": logs["ts"][::2].to_numpy(), "actual": [
            str(v) for v in frame["target"].to_numpy()[::2]
        ]}
    )  # fmt: skip
    folder = root / ".mlops/logs/feedback" / MODEL / day
    folder.mkdir(parents=True, exist_ok=True)
    feedback.to_parquet(folder / f"{when:%H%M%S}-1-0.parquet", index=False)


def _logs_spec(root: Path, **extra: Any) -> Path:
    spec = {
        "apiVersion": "mlopsctl/v1",
        "kind": "Monitor",
        "name": "bc-logs",
        "model": f"{MODEL}:1",
        "current": {
            "path": f"store:logs/predictions/{MODEL}/",
            "time_column": "ts",
            "window": "7d",
        },
        "drift_share": 0.3,
        "ground_truth": {
            "path": f"store:logs/feedback/{MODEL}/",
            "id_column": "request_id",
            "target_column": "actual",
            "max_drop": 0.1,
        },
        **extra,
    }
    path = root / "specs/logs-monitor.yaml"
    path.write_text(json.dumps(spec))  # JSON is YAML
    return path


def test_serving_logs_and_feedback_from_the_store_within_a_window(cli: Invoke, project: Path):
    now = datetime.now(timezone.utc)
    frame = held_out()
    _write_logs(project, frame, now - timedelta(hours=1))
    _write_logs(project, frame, now - timedelta(days=40), shift=3.0)  # outside the window
    spec = _logs_spec(project)
    result = cli("monitor", "check", str(spec), "--json", cwd=project)
    assert result.exit_code == 0, result.stderr + result.stdout
    data = json.loads(result.stdout)
    assert data["rows"] == len(frame)
    assert data["prediction"]["of"] == "score" and data["prediction"]["drifted"] is False
    assert data["prediction"]["rows"] == len(frame)  # every row, labelled or not
    schema = next(q for q in data["quality"] if q["test"] == "schema")
    assert schema == {
        "test": "schema",
        "failed": False,
        "missing_columns": [],
        "wrong_types": [],
        "extra_columns": [],  # the log's own columns are expected
    }
    performance = data["performance"]
    assert performance["rows"] == (len(frame) + 1) // 2
    assert performance["value"] == pytest.approx(performance["baseline"], abs=0.1)
    assert performance["failed"] is False

    # Labels that contradict every prediction: the accuracy collapses.
    folder = project / ".mlops/logs/feedback" / MODEL / f"date={now - timedelta(hours=1):%Y-%m-%d}"
    for path in folder.glob("*.parquet"):
        flipped = pd.read_parquet(path)
        flipped["actual"] = [str(1 - int(v)) for v in flipped["actual"]]
        flipped.to_parquet(path, index=False)
    failed = cli("monitor", "check", str(spec), cwd=project)
    assert failed.exit_code == 4
    assert "performance accuracy" in failed.stderr
    assert "worse than offline" in failed.stderr


def test_dataset_baseline_profile_and_errors(cli: Invoke, project: Path):
    made = cli(
        "monitor", "profile", "data/current.csv", "-o", "data/ref-profile.json",
        "-c", "mean radius", "-c", "mean texture", cwd=project,
    )  # fmt: skip
    assert made.exit_code == 0, made.stderr
    profile = json.loads((project / "data/ref-profile.json").read_text())
    assert set(profile["features"]) == {"mean radius", "mean texture"}
    spec = project / "specs/profile-monitor.yaml"
    spec.write_text(
        json.dumps(
            {
                "apiVersion": "mlopsctl/v1",
                "kind": "Monitor",
                "name": "by-profile",
                "baseline": "data/ref-profile.json",
                "current": {"path": "data/shifted.csv"},
            }
        )
    )
    result = cli("monitor", "check", str(spec), "--json", cwd=project)
    assert result.exit_code == 4, result.stderr
    assert sorted(json.loads(result.stdout)["drifted_features"]) == ["mean radius", "mean texture"]
    held_out().drop(columns="target").to_csv(project / "data/features.csv", index=False)
    same = cli("monitor", "check", str(spec), "--current", "data/current.csv", cwd=project)
    assert same.exit_code == 0, same.stderr

    missing = cli("monitor", "check", str(spec), "--current", "data/nothing.csv", cwd=project)
    assert missing.exit_code == 6
    assert "no data at" in missing.stderr
    broken = project / "specs/broken.yaml"
    broken.write_text("apiVersion: mlopsctl/v1\nkind: Monitor\nname: x\ncurrent: {}\n")
    assert cli("monitor", "check", str(broken), cwd=project).exit_code == 3
    unknown = _logs_spec(project, model="no-such-model")
    assert cli("monitor", "check", str(unknown), cwd=project).exit_code == 6
    unlabelled = cli(
        "monitor", "check", "specs/quickstart-monitor.yaml", "--current", "data/features.csv",
        cwd=project,
    )  # fmt: skip
    assert unlabelled.exit_code == 2
    assert "target column 'target' is not in the current data" in unlabelled.stderr


def test_previous_window_baseline_on_serving_logs(cli: Invoke, project: Path):
    """Week over week on the store's prediction logs: the 7d before the current 7d."""
    now = datetime.now(timezone.utc)
    spec = _logs_spec(project, baseline="previous_window")
    data = json.loads(spec.read_text())
    del data["ground_truth"]  # drift only: the labels are another test's business
    spec.write_text(json.dumps(data))
    frame = held_out()
    current_at = now - timedelta(hours=1)
    current_day = project / ".mlops/logs/predictions" / MODEL / f"date={current_at:%Y-%m-%d}"
    _write_logs(project, frame, current_at)

    alone = cli("monitor", "check", str(spec), cwd=project)
    assert alone.exit_code == 6, alone.stderr
    assert "no rows in the previous window" in alone.stderr
    assert "wait until a whole earlier window is logged" in alone.stderr

    _write_logs(project, frame, now - timedelta(days=8))  # the previous window
    bigger = frame.copy()
    bigger[SHIFTED] = bigger[SHIFTED] * 3
    _write_logs(project, bigger, now - timedelta(days=15))  # before both windows
    same = cli("monitor", "check", str(spec), "--json", cwd=project)
    assert same.exit_code == 0, same.stderr + same.stdout
    result = json.loads(same.stdout)
    assert result["rows"] == len(frame)
    assert result["drifted_features"] == []
    assert result["baseline"].startswith("previous window ")
    assert result["baseline_window"]["until"] == result["window"]["since"]

    shutil.rmtree(current_day)
    shifted = frame.copy()
    shifted[SHIFTED] = shifted[SHIFTED] * 1.5
    _write_logs(project, shifted, current_at)
    moved = cli("monitor", "check", str(spec), cwd=project)
    assert moved.exit_code == 4, moved.stderr
    assert "baseline: previous window " in moved.stdout
    named = moved.stderr.split("drift in ", 1)[1].split(";")[0].split(", ")
    assert sorted(named) == sorted(SHIFTED)
    events = _events(cli, project)
    assert [e["verdict"] for e in events] == ["passed", "failed"]
    assert events[1]["baseline"].startswith("previous window ")
    assert events[1]["baseline_window"]["column"] == "ts"

    # Without a window there is no "previous" one: a usage error, before any data is read.
    windowless = cli(
        "monitor", "check", "specs/quickstart-monitor.yaml", "--baseline", "previous_window",
        cwd=project,
    )  # fmt: skip
    assert windowless.exit_code == 2
    assert "needs current.time_column and current.window" in windowless.stderr
