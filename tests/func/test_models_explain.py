"""`mlopsctl models explain` on the trained quickstart (XGBoost, 30 numeric features): a CSV row
per input row whose contributions add up to the booster's margin, the same as JSON, to a file,
and the errors of `models predict`."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from .conftest import Invoke
from .test_models import MODEL, Trained, feature_rows, quickstart_project


@pytest.fixture
def trained(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Trained:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = tmp_path / "demo"
    return Trained(root, quickstart_project(tmp_path_factory, root))


def test_explain_csv_json_and_file(cli: Invoke, trained: Trained) -> None:
    import xgboost

    from mlopsctl.registry import load_model

    rows = feature_rows(12)
    rows.to_csv(trained.root / "rows.csv", index=False)
    rows.to_parquet(trained.root / "rows.parquet")
    model = load_model(f"{MODEL}:1", store=trained.store)
    names = [f.name for f in model.features]

    shown = cli("models", "explain", f"{MODEL}:1", "rows.csv", cwd=trained.root)
    assert shown.exit_code == 0, shown.stderr
    table = pd.read_csv(io.StringIO(shown.stdout))
    contrib = [f"contrib.{n}" for n in names] + ["contrib.bias"]
    assert list(table.columns) == ["prediction", "explained", "output", "outlier_score", *contrib]
    assert len(table) == 12
    assert (table["prediction"] == model.predict(rows)).all()
    assert (table["explained"] == model.classes[1]).all()  # binary: the positive class
    matrix = model.transform(rows)
    margin = model.estimator.get_booster().predict(xgboost.DMatrix(matrix), output_margin=True)
    np.testing.assert_allclose(table[contrib].sum(axis=1), margin, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(table["output"], margin, rtol=1e-5, atol=1e-5)
    assert table["outlier_score"].between(0, 0.99).all()  # rows from the training data's source

    as_json = cli("models", "explain", MODEL, "rows.parquet", "--json", cwd=trained.root)
    assert as_json.exit_code == 0, as_json.stderr
    document = json.loads(as_json.stdout)
    assert document["method"] == "treeshap" and document["output"] == "log-odds"
    assert document["features"] == names and document["outlier_threshold"] == 0.99
    assert len(document["rows"]) == 12
    for row, expected in zip(document["rows"], table.itertuples(index=False), strict=True):
        assert sum(row["contributions"].values()) == pytest.approx(row["output"], abs=1e-5)
        assert row["output"] == pytest.approx(expected.output, abs=1e-5)
        assert list(row["contributions"]) == [*names, "bias"]

    to_file = cli("models", "explain", MODEL, "rows.csv", "-o", "out.csv", cwd=trained.root)
    assert to_file.exit_code == 0, to_file.stderr
    assert to_file.stdout == ""
    pd.testing.assert_frame_equal(pd.read_csv(trained.root / "out.csv"), table)


def test_explain_errors(cli: Invoke, trained: Trained) -> None:
    rows = feature_rows(3)
    rows.drop(columns="mean radius").to_csv(trained.root / "short.csv", index=False)
    rows.head(0).to_csv(trained.root / "empty.csv", index=False)
    (trained.root / "rows.json").write_text("{}")
    for data, code, message in (
        ("short.csv", 1, "input lacks feature column(s) mean radius"),
        ("empty.csv", 2, "the data has no rows to explain"),
        ("rows.json", 2, "cannot tell the format of rows.json"),
        ("nope.csv", 6, "no such data file: nope.csv"),
    ):
        result = cli("models", "explain", MODEL, data, cwd=trained.root)
        assert result.exit_code == code, result.stderr
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    missing = cli("models", "explain", "no-such-model", "short.csv", cwd=trained.root)
    assert missing.exit_code == 6, missing.stderr
