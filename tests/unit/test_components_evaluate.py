"""evaluate: metrics equal scikit-learn's own on the written predictions (binary, multiclass,
regression), and predictions keyed by the test table's row ids."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics

from mlopsctl.components import evaluate, train
from mlopsctl.components.base import StepContext
from mlopsctl.errors import MlopsError


def make_ctx(tmp_path: Path, step: str, params: dict[str, Any], inputs: dict[str, Path],
             outputs: dict[str, Path]) -> StepContext:  # fmt: skip
    return StepContext(
        step=step,
        run_id="r1",
        params=params,
        inputs=inputs,
        outputs=outputs,
        workdir=tmp_path / "work" / step,
        project_root=tmp_path,
    )


def train_and_evaluate(
    tmp_path: Path,
    frame: pd.DataFrame,
    target: str,
    estimator: dict[str, Any] | str,
    eval_params: dict[str, Any] | None = None,
) -> tuple[StepContext, dict[str, float], pd.DataFrame, pd.DataFrame]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    # Every third row is test; a shuffled, non-contiguous index shows row ids are carried.
    frame = frame.set_axis(np.arange(len(frame)) * 10 + 5)
    test = frame.iloc[::3]
    frame.drop(test.index).to_parquet(tmp_path / "train.parquet")
    test.to_parquet(tmp_path / "test.parquet")
    train.run(
        make_ctx(
            tmp_path,
            "train",
            {"target": target, "estimator": estimator},
            {"train": tmp_path / "train.parquet"},
            {"model": tmp_path / "model"},
        )
    )
    ctx = make_ctx(
        tmp_path,
        "evaluate",
        eval_params or {},
        {"model": tmp_path / "model", "test": tmp_path / "test.parquet"},
        {"metrics": tmp_path / "out" / "metrics.json", "predictions": tmp_path / "out" / "p.pq"},
    )
    evaluate.run(ctx)
    written = json.loads(ctx.outputs["metrics"].read_text())
    return ctx, written, pd.read_parquet(ctx.outputs["predictions"]), test


def test_binary_metrics_equal_sklearn_on_the_predictions(tmp_path: Path) -> None:
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    frame["target"] = np.where(frame["target"] == 1, "benign", "malignant")
    ctx, written, predictions, test = train_and_evaluate(
        tmp_path, frame, "target", {"class": "xgboost.XGBClassifier", "n_estimators": 10}
    )
    assert list(predictions.columns) == ["row_id", "y_true", "y_pred", "proba"]
    assert predictions["row_id"].tolist() == test.index.tolist()
    assert predictions["y_true"].tolist() == test["target"].tolist()
    y, pred, proba = predictions["y_true"], predictions["y_pred"], predictions["proba"]
    positive = "malignant"  # the later class in sort order
    expected = {
        "accuracy": metrics.accuracy_score(y, pred),
        "precision": metrics.precision_score(y, pred, pos_label=positive),
        "recall": metrics.recall_score(y, pred, pos_label=positive),
        "f1": metrics.f1_score(y, pred, pos_label=positive),
        "roc_auc": metrics.roc_auc_score(y == positive, proba),
        "log_loss": metrics.log_loss(y == positive, proba),
    }
    assert written == pytest.approx(expected)
    assert ctx.metrics == written
    assert ctx.info["positive_class"] == positive and ctx.info["rows"] == len(test)


def test_multiclass_macro_metrics_equal_sklearn(tmp_path: Path) -> None:
    from sklearn.datasets import load_iris

    frame = load_iris(as_frame=True).frame
    _, written, predictions, _ = train_and_evaluate(
        tmp_path,
        frame,
        "target",
        {"class": "sklearn.linear_model.LogisticRegression", "max_iter": 300},
    )
    proba = predictions[["proba_0", "proba_1", "proba_2"]].to_numpy()
    y, pred = predictions["y_true"], predictions["y_pred"]
    expected = {
        "accuracy": metrics.accuracy_score(y, pred),
        "precision": metrics.precision_score(y, pred, average="macro"),
        "recall": metrics.recall_score(y, pred, average="macro"),
        "f1": metrics.f1_score(y, pred, average="macro"),
        "roc_auc": metrics.roc_auc_score(y, proba, multi_class="ovr", average="macro"),
        "log_loss": metrics.log_loss(y, proba),
    }
    assert written == pytest.approx(expected)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_regression_metrics_equal_sklearn(tmp_path: Path) -> None:
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True).frame
    ctx, written, predictions, _ = train_and_evaluate(
        tmp_path,
        frame,
        "target",
        {"class": "sklearn.ensemble.RandomForestRegressor", "n_estimators": 5},
    )
    assert list(predictions.columns) == ["row_id", "y_true", "y_pred"]
    y, pred = predictions["y_true"], predictions["y_pred"]
    assert written == pytest.approx(
        {
            "rmse": metrics.root_mean_squared_error(y, pred),
            "mae": metrics.mean_absolute_error(y, pred),
            "r2": metrics.r2_score(y, pred),
        }
    )
    assert ctx.info["task"] == "regression"


def test_labels_unseen_in_training_count_as_errors(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 90
    x = rng.normal(size=n)
    frame = pd.DataFrame({"x": x, "y": np.where(x > 0, "up", "down")})
    frame.loc[frame.index[::3][:4], "y"] = "sideways"  # only in the test rows (every third)
    ctx, written, _, test = train_and_evaluate(
        tmp_path, frame, "y", "sklearn.linear_model.LogisticRegression"
    )
    assert written["accuracy"] <= 1 - 4 / len(test)
    assert any("never saw" in note for note in ctx.info["notes"])


def test_target_given_explicitly_must_exist(tmp_path: Path) -> None:
    from sklearn.datasets import load_iris

    with pytest.raises(MlopsError, match="target: column 'species' is not in the test data"):
        train_and_evaluate(
            tmp_path,
            load_iris(as_frame=True).frame,
            "target",
            "sklearn.tree.DecisionTreeClassifier",
            {"target": "species"},
        )
