"""train: XGBoost and scikit-learn estimators, categorical features with missing values,
regression, the saved artifact, and the plan-time checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlopsctl.components import train
from mlopsctl.components.base import StepContext
from mlopsctl.errors import MlopsError
from mlopsctl.models.artifact import load_model_dir


def churn(n: int = 160, seed: int = 0) -> pd.DataFrame:
    """Tiny churn table: a text column with missing values and an unseen-at-serving category."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(1, 72, n)
    charges = rng.normal(70, 20, n).round(2)
    plan = rng.choice(np.array(["basic", "pro", "max"], dtype=object), n)
    plan[rng.random(n) < 0.1] = None
    charges[rng.random(n) < 0.1] = np.nan
    logit = -0.06 * tenure + 0.04 * (np.nan_to_num(charges, nan=70) - 70) + (plan == "basic") * 1.5
    churned = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "yes", "no")
    return pd.DataFrame({"tenure": tenure, "charges": charges, "plan": plan, "churned": churned})


def run_train(tmp_path: Path, frame: pd.DataFrame, params: dict[str, Any]) -> StepContext:
    tmp_path.mkdir(parents=True, exist_ok=True)
    data = tmp_path / "train.parquet"
    frame.to_parquet(data)
    ctx = StepContext(
        step="train",
        run_id="r1",
        params=params,
        inputs={"train": data},
        outputs={"model": tmp_path / "model"},
        workdir=tmp_path / "work",
        project_root=tmp_path,
    )
    train.run(ctx)
    return ctx


def test_xgboost_on_breast_cancer(tmp_path: Path) -> None:
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    ctx = run_train(
        tmp_path,
        frame,
        {"target": "target", "estimator": {"class": "xgboost.XGBClassifier", "n_estimators": 10}},
    )
    meta = json.loads((tmp_path / "model" / "model.json").read_text())
    assert meta["flavor"] == "xgboost"
    assert sorted(meta["files"]) == ["model.ubj", "preprocess.skops"]
    assert meta["params"] == {"n_estimators": 10, "random_state": 0}
    assert meta["classes"] == [0, 1] and meta["task"] == "classification"
    assert len(meta["features"]) == 30 and {f["kind"] for f in meta["features"]} == {"numeric"}
    assert ctx.metrics["train_rows"] == 569.0 and ctx.metrics["train_accuracy"] > 0.95
    assert ctx.metrics["fit_seconds"] >= 0
    model = load_model_dir(tmp_path / "model")
    assert (model.predict(frame.head(50)) == frame["target"].head(50)).mean() > 0.9


def test_categorical_and_missing_values_with_a_random_forest(tmp_path: Path) -> None:
    frame = churn()
    ctx = run_train(
        tmp_path,
        frame,
        {
            "target": "churned",
            "estimator": {"class": "sklearn.ensemble.RandomForestClassifier", "n_estimators": 5},
        },
    )
    assert ctx.info["features"] == [
        {"name": "tenure", "dtype": "int64", "kind": "numeric"},
        {"name": "charges", "dtype": "float64", "kind": "numeric"},
        {"name": "plan", "dtype": "str", "kind": "categorical"},
    ]
    assert ctx.info["classes"] == ["no", "yes"] and ctx.info["flavor"] == "sklearn"
    model = load_model_dir(tmp_path / "model")
    serving = pd.DataFrame(
        {"plan": ["enterprise", None], "charges": [None, 90.0], "tenure": [5, 60], "extra": [1, 2]}
    )
    assert set(model.predict(serving)) <= {"no", "yes"}
    assert model.predict_proba(serving).shape == (2, 2)
    profile = model.meta["profile"]
    assert profile["rows"] == len(frame)
    assert profile["features"]["plan"]["missing"] == pytest.approx(frame["plan"].isna().mean())
    assert profile["target"]["frequencies"] == frame["churned"].value_counts().to_dict()


def test_same_seed_gives_the_same_model(tmp_path: Path) -> None:
    params = {
        "target": "churned",
        "estimator": {"class": "sklearn.ensemble.RandomForestClassifier", "n_estimators": 5},
        "seed": 3,
    }
    run_train(tmp_path / "a", churn(), params)
    run_train(tmp_path / "b", churn(), params)
    a, b = load_model_dir(tmp_path / "a" / "model"), load_model_dir(tmp_path / "b" / "model")
    frame = churn(seed=1)
    np.testing.assert_array_equal(a.predict_proba(frame), b.predict_proba(frame))


def test_regression_with_explicit_features_and_categorical(tmp_path: Path) -> None:
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True).frame
    ctx = run_train(
        tmp_path,
        frame,
        {
            "target": "target",
            "estimator": "sklearn.linear_model.Ridge",
            "features": ["bmi", "bp", "sex"],
            "categorical": ["sex"],
        },
    )
    meta = load_model_dir(tmp_path / "model").meta
    assert meta["task"] == "regression" and "classes" not in meta
    assert [f["kind"] for f in meta["features"]] == ["numeric", "numeric", "categorical"]
    assert meta["profile"]["target"]["kind"] == "numeric"
    assert 0 < ctx.metrics["train_r2"] < 1
    assert "random_state" in meta["params"]  # Ridge takes one: the seed is recorded


def test_rows_without_a_target_are_dropped(tmp_path: Path) -> None:
    frame = churn()
    frame.loc[:9, "churned"] = None
    ctx = run_train(
        tmp_path,
        frame,
        {"target": "churned", "estimator": "sklearn.linear_model.LogisticRegression"},
    )
    assert ctx.metrics["train_rows"] == len(frame) - 10


def test_unknown_hyperparameter_suggests_the_closest(tmp_path: Path) -> None:
    with pytest.raises(MlopsError, match="has no hyperparameter 'n_estimator'") as info:
        run_train(
            tmp_path,
            churn(),
            {
                "target": "churned",
                "estimator": {"class": "sklearn.ensemble.RandomForestClassifier", "n_estimator": 5},
            },
        )
    assert info.value.hint == "did you mean 'n_estimators'?"


def test_regressor_on_a_text_target_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MlopsError, match="target 'churned' is not numeric"):
        run_train(
            tmp_path, churn(), {"target": "churned", "estimator": "sklearn.linear_model.Ridge"}
        )


def test_missing_target_column(tmp_path: Path) -> None:
    with pytest.raises(MlopsError, match="target: column 'churn' is not in the training data"):
        run_train(tmp_path, churn(), {"target": "churn", "estimator": "xgboost.XGBClassifier"})


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (
            {"target": "y", "estimator": {"class": "sklearn.ensemble.RandomForestClasifier"}},
            [
                (
                    ("estimator", "class"),
                    "estimator class 'sklearn.ensemble.RandomForestClasifier' not found in "
                    "module sklearn.ensemble; did you mean 'RandomForestClassifier'?",
                )
            ],
        ),
        (
            {"target": "y", "estimator": {"class": "xgbost.XGBClassifier"}},
            [(("estimator", "class"), "module 'xgbost' is not installed; did you mean 'xgboost'?")],
        ),
        (
            {"estimator": {"class": "xgboost.XGBClassifier"}},
            [(("target",), "target is required: the column to predict")],
        ),
        (
            {"target": "y", "estimator": {"max_depth": 3}},
            [(("estimator", "class"), "estimator.class is required: an import path")],
        ),
        (
            {"target": "y", "estimator": "xgboost.XGBRegressor", "features": ["a", "y"]},
            [(("features",), "the target 'y' cannot also be a feature")],
        ),
        ({"target": "y", "estimator": {"class": "xgboost.XGBClassifier"}}, []),
    ],
)
def test_check(tmp_path: Path, params: dict[str, Any], expected: list[Any]) -> None:
    assert train.check(params, tmp_path) == expected
