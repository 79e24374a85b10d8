"""`mlopsctl monitor check` with the per-row signals on the trained quickstart: the outlier share
against outliers.max_share (scored from the features, or read from a logged column), and
attribution drift when the data carry contrib.<feature> columns; exit 4, the reasons, the
report sections and the drift event."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from .conftest import Invoke
from .test_models import MODEL, quickstart_project
from .test_monitor import held_out


@pytest.fixture
def root(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    project = tmp_path / "demo"
    quickstart_project(tmp_path_factory, project)
    (project / "data").mkdir()
    (project / "specs").mkdir()
    return project


def _model(root: Path) -> Any:
    from mlopsctl.registry import load_model
    from mlopsctl.store.local import LocalStore

    return load_model(f"{MODEL}:1", store=LocalStore(root / ".mlops"))


def _spec(root: Path, current: str, **extra: Any) -> str:
    spec = {
        "apiVersion": "mlopsctl/v1",
        "kind": "Monitor",
        "name": "signals",
        "model": f"{MODEL}:1",
        "current": {"path": current},
        "drift_share": 0.3,
        "prediction": {"enabled": False},
        **extra,
    }
    path = root / "specs" / "signals.yaml"
    path.write_text(json.dumps(spec))
    return str(path)


def _check(cli: Invoke, root: Path, spec: str, *args: str) -> tuple[int, dict[str, Any], str]:
    result = cli("monitor", "check", spec, "--json", *args, cwd=root)
    return result.exit_code, json.loads(result.stdout), result.stderr


def test_outlier_share_over_the_limit_fails(cli: Invoke, root: Path) -> None:
    rows = held_out().drop(columns="target")
    rows.to_csv(root / "data/current.csv", index=False)
    code, result, stderr = _check(cli, root, _spec(root, "data/current.csv"))
    assert code == 0, stderr
    outliers = result["outliers"]
    assert outliers["rows"] == len(rows) and outliers["source"] == "model"
    assert outliers["share"] <= 0.02 and outliers["failed"] is False
    assert outliers["threshold"] == 0.99 and outliers["max_share"] == 0.05

    # 20 of 143 rows (14%) with a texture five times anything seen in training.
    odd = rows.copy()
    odd.iloc[:20, odd.columns.get_loc("mean texture")] *= 5
    odd.to_csv(root / "data/odd.csv", index=False)
    calm_quality = {"quality": {"fail": False}}  # the range check would fail too: not this test
    spec = _spec(root, "data/odd.csv", **calm_quality)
    code, result, stderr = _check(cli, root, spec, "--report", "out/odd.html")
    assert code == 4, stderr
    outliers = result["outliers"]
    assert outliers["outliers"] == 20 and outliers["share"] == pytest.approx(20 / len(rows))
    assert outliers["failed"] is True
    assert outliers["features"][0] == {"name": "mean texture", "outliers": 20, "share": 1.0}
    assert result["drift"] is False  # one drifted feature of 30 is no dataset drift
    assert "outlier share 0.140 over the limit" in stderr
    page = (root / "out/odd.html").read_text()
    assert 'id="outliers"' in page and 'data-outlier-feature="mean texture"' in page

    text = cli("monitor", "check", spec, cwd=root)
    assert text.exit_code == 4
    assert "outliers: 20/143 rows scored >= 0.99 (share 0.14, max 0.05): FAILED" in text.stdout

    raised = _spec(root, "data/odd.csv", outliers={"max_share": 0.2}, **calm_quality)
    code, result, stderr = _check(cli, root, raised)
    assert code == 0 and result["outliers"]["failed"] is False, stderr
    reported = _spec(root, "data/odd.csv", outliers={"fail": False}, **calm_quality)
    code, result, _ = _check(cli, root, reported)
    assert code == 0
    assert result["outliers"]["exceeded"] is True and result["outliers"]["failed"] is False
    off = _spec(root, "data/odd.csv", outliers={"enabled": False}, **calm_quality)
    assert _check(cli, root, off)[1]["outliers"] is None

    events = [
        e for e in json.loads(cli("audit", "--json", cwd=root).stdout) if e["type"] == "drift"
    ]
    assert events[0]["outlier_share"] <= 0.02
    assert events[1]["outlier_share"] == pytest.approx(20 / len(rows))
    assert events[1]["verdict"] == "failed"


def test_logged_scores_are_read_and_the_rest_scored(cli: Invoke, root: Path) -> None:
    rows = held_out().drop(columns="target").reset_index(drop=True)
    logged = np.full(len(rows), np.nan)
    logged[:40] = 0.1
    logged[40:70] = 0.995  # 30 rows the server called outliers
    rows["outlier_score"] = logged  # the rest (73 rows) carry no score: scored here
    rows.to_parquet(root / "data/logged.parquet", index=False)
    code, result, stderr = _check(cli, root, _spec(root, "data/logged.parquet"))
    assert code == 4, stderr
    outliers = result["outliers"]
    assert outliers["logged"] == 70 and outliers["outliers"] == 30
    schema = next(q for q in result["quality"] if q["test"] == "schema")
    assert schema["extra_columns"] == []  # the score column is a log column


def _explained(model: Any, rows: pd.DataFrame) -> pd.DataFrame:
    from mlopsctl.models.explain import explain_table

    table = explain_table(model, rows)
    contrib = [c for c in table.columns if c.startswith("contrib.")]
    return pd.concat([rows.reset_index(drop=True), table[contrib]], axis=1)


def test_attribution_drift_when_the_data_shift(cli: Invoke, root: Path) -> None:
    model = _model(root)
    rows = held_out().drop(columns="target")
    explained = _explained(model, rows)
    contrib = [c for c in explained.columns if c.startswith("contrib.")]
    explained.loc[explained.index[::3], contrib] = np.nan  # contributions logged for a sample
    explained.to_csv(root / "data/explained.csv", index=False)
    code, result, stderr = _check(cli, root, _spec(root, "data/explained.csv"))
    assert code == 0, stderr
    attribution = result["attribution"]
    assert attribution["rows"] == len(rows) - len(rows[::3])
    assert attribution["drifted"] is False and attribution["statistic"] < 0.05
    assert {f["name"] for f in attribution["features"]} == {f.name for f in model.features}
    total = sum(f["baseline"] for f in attribution["features"])
    assert total == pytest.approx(sum(model.meta["explain"]["mean_abs"].values()))
    schema = next(q for q in result["quality"] if q["test"] == "schema")
    assert schema["extra_columns"] == []

    # The three features the model leans on most stop varying (held at the training median):
    # which features drive the predictions changes.
    mean_abs = model.meta["explain"]["mean_abs"]
    top = sorted(mean_abs, key=mean_abs.get, reverse=True)[:3]
    flat = rows.copy()
    for name in top:
        flat[name] = model.meta["profile"]["features"][name]["quantiles"][10]
    _explained(model, flat).to_csv(root / "data/flat.csv", index=False)
    spec = _spec(root, "data/flat.csv")
    code, result, stderr = _check(cli, root, spec, "--report", "out/flat.html")
    assert code == 4, stderr
    attribution = result["attribution"]
    assert attribution["drifted"] is True and attribution["failed"] is True
    assert attribution["drifted_features"]
    assert attribution["features"][0]["drifted"] is True  # drifted first
    for entry in attribution["features"]:
        move = abs(entry["current_share"] - entry["baseline_share"])
        assert entry["change"] == pytest.approx(move / max(entry["baseline_share"], 0.02))
        assert entry["drifted"] is (entry["change"] >= 0.5)
    assert result["drift"] is False and result["outliers"]["failed"] is False
    assert "attribution drift in " in stderr
    page = (root / "out/flat.html").read_text()
    assert 'id="attribution"' in page
    for name in attribution["drifted_features"]:
        assert f'data-attribution="{name}"' in page

    reported = _spec(root, "data/flat.csv", attribution={"fail": False})
    code, result, _ = _check(cli, root, reported)
    assert code == 0 and result["attribution"]["drifted"] is True
    none = _spec(root, "data/current.csv")
    rows.to_csv(root / "data/current.csv", index=False)
    assert _check(cli, root, none)[1]["attribution"] is None  # no contributions, no check
