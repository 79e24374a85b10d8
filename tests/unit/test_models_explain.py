"""Per-row feature contributions (mlopsctl/models/explain.py) on models saved and loaded the way
train writes them: each row sums to the raw output, XGBoost's agree with the booster's own
pred_contribs, one-hot columns are summed into their feature, linear contributions are
coef x (x - training mean), and the training baseline lands in model.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlopsctl.components import _fit
from mlopsctl.models.artifact import (
    Feature,
    LoadedModel,
    ModelError,
    load_model_dir,
    prepare_features,
    save_model,
)
from mlopsctl.models.explain import (
    BIAS,
    CONTRIB_PREFIX,
    attribution_baseline,
    contributions,
    explain,
    explain_json,
    explain_table,
    raw_output,
)

FEATURES = [
    Feature("age", "float64", "numeric"),
    Feature("income", "float64", "numeric"),
    Feature("plan", "object", "categorical"),
]


def _frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": rng.normal(40, 10, n),
            "income": rng.lognormal(10, 0.5, n),
            "plan": rng.choice(["basic", "pro", "team"], p=[0.5, 0.3, 0.2], size=n),
        }
    )
    frame.loc[::23, "age"] = np.nan  # imputed by the saved preprocessing
    signal = (
        (frame["age"].fillna(40) - 40) / 10
        + (np.log(frame["income"]) - 10) * 2
        + frame["plan"].map({"basic": 0.0, "pro": 1.5, "team": -1.0})
    )
    frame["value"] = signal + rng.normal(0, 0.3, n)
    frame["churn"] = (signal > 0.3).astype(int)
    frame["tier"] = np.digitize(signal, [-0.7, 0.7])  # three classes
    return frame


def _train(
    tmp: Path, class_path: str, target: str, features: list[Feature] | None = None, **params: Any
) -> LoadedModel:
    """Fit, save and load back, as the train component does."""
    features = features or FEATURES
    frame = _frame()
    estimator, used = _fit.make_estimator(class_path, params, 0)
    task = _fit.task_of(estimator, class_path)
    y, classes = _fit.encode_target(frame[target], task, target)
    pipeline = _fit.build_pipeline(estimator, features)
    pipeline.fit(prepare_features(frame, features), y)
    folder = tmp / class_path.rsplit(".", 1)[1]
    save_model(
        pipeline,
        folder,
        estimator_class=class_path,
        params=used,
        task=task,
        target=target,
        features=features,
        classes=classes,
        frame=frame,
    )
    return load_model_dir(folder)


CASES = [
    ("xgboost.XGBClassifier", "churn", {"n_estimators": 30, "max_depth": 3}),
    ("xgboost.XGBClassifier", "tier", {"n_estimators": 20, "max_depth": 3}),
    ("xgboost.XGBRegressor", "value", {"n_estimators": 30, "max_depth": 3}),
    ("sklearn.tree.DecisionTreeClassifier", "tier", {"max_depth": 5}),
    ("sklearn.tree.DecisionTreeRegressor", "value", {"max_depth": 6}),
    ("sklearn.ensemble.RandomForestClassifier", "churn", {"n_estimators": 15}),
    ("sklearn.ensemble.RandomForestClassifier", "tier", {"n_estimators": 15}),
    ("sklearn.ensemble.RandomForestRegressor", "value", {"n_estimators": 15}),
    ("sklearn.ensemble.ExtraTreesClassifier", "churn", {"n_estimators": 15}),
    ("sklearn.ensemble.ExtraTreesRegressor", "value", {"n_estimators": 15}),
    ("sklearn.ensemble.GradientBoostingClassifier", "churn", {"n_estimators": 25}),
    ("sklearn.ensemble.GradientBoostingClassifier", "tier", {"n_estimators": 15}),
    ("sklearn.ensemble.GradientBoostingRegressor", "value", {"n_estimators": 25}),
    ("sklearn.linear_model.LogisticRegression", "churn", {}),
    ("sklearn.linear_model.LogisticRegression", "tier", {}),
    ("sklearn.linear_model.Ridge", "value", {}),
    ("sklearn.linear_model.LinearRegression", "value", {}),
]


@pytest.mark.parametrize(
    ("class_path", "target", "params"),
    CASES,
    ids=[f"{c.rsplit('.', 1)[1]}-{t}" for c, t, _ in CASES],
)
def test_each_row_sums_to_the_raw_output(
    tmp_path: Path, class_path: str, target: str, params: dict[str, Any]
) -> None:
    model = _train(tmp_path, class_path, target, **params)
    rows = _frame(60, seed=5)  # rows the model never saw, missing values included
    values, names = contributions(model, rows)
    assert names == ["age", "income", "plan", BIAS]
    assert values.shape == (60, 4)
    assert np.isfinite(values).all()
    np.testing.assert_allclose(values.sum(axis=1), raw_output(model, rows), rtol=1e-5, atol=1e-5)
    explanation = explain(model, rows)
    if model.task == "classification":
        assert explanation.explained is not None
        if len(model.classes) == 2:
            assert set(explanation.explained) == {model.classes[1]}
        else:  # multiclass: each row's predicted class is explained
            assert (explanation.explained == model.predict(rows)).all()
    else:
        assert explanation.explained is None
    # Each feature matters somewhere: the attribution is not all in the bias.
    assert (np.abs(values[:, :3]).mean(axis=0) > 0).all()
    # model.json holds the training baseline of attribution drift.
    baseline = model.meta["explain"]
    assert set(baseline["mean_abs"]) == {"age", "income", "plan"}
    assert baseline["output"] == explanation.output and baseline["rows"] == 400


def test_xgboost_contributions_are_the_boosters_own(tmp_path: Path) -> None:
    import xgboost

    numeric = [f for f in FEATURES if f.kind == "numeric"]
    model = _train(tmp_path, "xgboost.XGBClassifier", "churn", numeric, n_estimators=25)
    rows = _frame(50, seed=9)
    values, _ = contributions(model, rows)
    booster = model.estimator.get_booster()
    own = booster.predict(xgboost.DMatrix(model.transform(rows)), pred_contribs=True)
    np.testing.assert_allclose(values, own, rtol=1e-6, atol=1e-6)
    margin = booster.predict(xgboost.DMatrix(model.transform(rows)), output_margin=True)
    np.testing.assert_allclose(values.sum(axis=1), margin, rtol=1e-5, atol=1e-5)
    assert explain(model, rows).output == "log-odds"


def test_xgboost_one_hot_columns_are_summed_into_their_feature(tmp_path: Path) -> None:
    import xgboost

    model = _train(tmp_path, "xgboost.XGBClassifier", "churn", n_estimators=25)
    rows = _frame(30, seed=2)
    values, names = contributions(model, rows)
    assert names == ["age", "income", "plan", BIAS]
    matrix = model.transform(rows)
    own = model.estimator.get_booster().predict(xgboost.DMatrix(matrix), pred_contribs=True)
    assert own.shape[1] == 2 + 3 + 1  # two numeric columns, three plans, the bias
    np.testing.assert_allclose(values[:, :2], own[:, :2], rtol=1e-6)
    np.testing.assert_allclose(values[:, 2], own[:, 2:5].sum(axis=1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(values[:, 3], own[:, 5], rtol=1e-6)


def test_linear_contributions_are_coef_times_distance_from_the_training_mean(
    tmp_path: Path,
) -> None:
    model = _train(tmp_path, "sklearn.linear_model.LogisticRegression", "churn")
    training = _frame()
    matrix = np.asarray(model.transform(training))
    mean = np.asarray(model.meta["explain"]["transformed_mean"])
    np.testing.assert_allclose(mean, matrix.mean(axis=0), atol=1e-12)

    rows = _frame(20, seed=3)
    values, _ = contributions(model, rows)
    coef = model.estimator.coef_[0]
    centred = np.asarray(model.transform(rows)) - mean
    np.testing.assert_allclose(values[:, 0], coef[0] * centred[:, 0])
    np.testing.assert_allclose(values[:, 1], coef[1] * centred[:, 1])
    # plan's one-hot columns (basic, pro, team) summed into plan
    np.testing.assert_allclose(values[:, 2], (coef[2:] * centred[:, 2:]).sum(axis=1))
    np.testing.assert_allclose(values[:, 3], model.estimator.intercept_[0] + coef @ mean)
    # Measured from the training mean: over the training rows each feature averages zero.
    train_values, _ = contributions(model, training)
    np.testing.assert_allclose(train_values[:, :3].mean(axis=0), 0.0, atol=1e-9)

    # Changing only the plan changes only plan's contribution.
    moved = rows.copy()
    moved["plan"] = "team"
    after, _ = contributions(model, moved)
    np.testing.assert_allclose(after[:, [0, 1, 3]], values[:, [0, 1, 3]])
    assert not np.allclose(after[:, 2], values[:, 2])


def test_a_tree_gives_nothing_to_a_feature_it_never_splits_on(tmp_path: Path) -> None:
    frame = _frame()
    frame["step"] = np.where(frame["income"] > frame["income"].median(), 5.0, -5.0)
    estimator, used = _fit.make_estimator("sklearn.tree.DecisionTreeRegressor", {}, 0)
    numeric = [f for f in FEATURES if f.kind == "numeric"]
    pipeline = _fit.build_pipeline(estimator, numeric)
    pipeline.fit(prepare_features(frame, numeric), frame["step"].to_numpy())
    meta = save_model(
        pipeline,
        tmp_path / "tree",
        estimator_class="sklearn.tree.DecisionTreeRegressor",
        params=used,
        task="regression",
        target="step",
        features=numeric,
        classes=None,
        frame=frame,
    )
    model = load_model_dir(tmp_path / "tree")
    values, _ = contributions(model, _frame(40, seed=4))
    assert (values[:, 0] == 0).all()  # age: never split on
    assert set(np.round(np.abs(values[:, 1]), 9)) == {5.0}  # income decides everything
    np.testing.assert_allclose(values[:, 2], 0.0, atol=1e-12)  # the expected output: 0
    assert meta["explain"]["method"] == "saabas"
    assert meta["explain"]["mean_abs"]["age"] == 0


def test_forest_contributions_add_up_to_predict_proba(tmp_path: Path) -> None:
    model = _train(tmp_path, "sklearn.ensemble.RandomForestClassifier", "churn", n_estimators=10)
    rows = _frame(25, seed=6)
    explanation = explain(model, rows)
    assert explanation.output == "probability" and explanation.method == "saabas"
    np.testing.assert_allclose(explanation.total, model.predict_proba(rows)[:, 1], atol=1e-12)
    # The bias is the forest's expected probability: the same for every row.
    assert np.ptp(explanation.values[:, -1]) < 1e-12


def test_tables_json_and_errors(tmp_path: Path) -> None:
    model = _train(tmp_path, "xgboost.XGBClassifier", "churn", n_estimators=10)
    rows = _frame(5, seed=7)
    table = explain_table(model, rows)
    contrib = [f"{CONTRIB_PREFIX}{n}" for n in ("age", "income", "plan", BIAS)]
    assert list(table.columns) == ["prediction", "explained", "output", "outlier_score", *contrib]
    np.testing.assert_allclose(table[contrib].sum(axis=1), table["output"])
    assert (table["prediction"] == model.predict(rows)).all()
    assert table["outlier_score"].between(0, 1).all()

    document = explain_json(model, rows)
    assert document["method"] == "treeshap" and document["output"] == "log-odds"
    assert document["features"] == ["age", "income", "plan"]
    assert len(document["rows"]) == 5
    first = document["rows"][0]
    assert set(first) == {"prediction", "explained", "output", "outlier_score", "contributions"}
    assert sum(first["contributions"].values()) == pytest.approx(first["output"])

    from mlopsctl.errors import UsageError

    with pytest.raises(UsageError, match="no rows to explain"):
        explain_table(model, rows.iloc[:0])
    with pytest.raises(ModelError, match="input lacks feature column"):
        contributions(model, rows.drop(columns="plan"))


def test_models_that_cannot_be_explained_still_train(tmp_path: Path) -> None:
    model = _train(tmp_path, "sklearn.neighbors.KNeighborsClassifier", "churn")
    assert "explain" not in model.meta  # nothing to store, and training went on
    assert model.meta["outliers"]["features"]  # outlier scores need no explanation
    with pytest.raises(ModelError, match="cannot explain a KNeighborsClassifier"):
        contributions(model, _frame(3))
    assert attribution_baseline(model, _frame(3)) is None


def test_a_few_numeric_rows_take_the_compiled_preprocessing_to_the_same_numbers(
    tmp_path: Path,
) -> None:
    from mlopsctl.models import explain as module

    numeric = [f for f in FEATURES if f.kind == "numeric"]
    model = _train(tmp_path, "xgboost.XGBRegressor", "value", numeric, n_estimators=10)
    assert module._compiled(model) is not None  # mlopsctl's numeric preprocessing: compiled
    rows = _frame(8, seed=11)
    rows.loc[[1, 4], "age"] = np.nan
    rows.loc[2, "income"] = 1e12
    for i in range(len(rows)):
        one = rows.iloc[[i]]
        fast = explain(model, one).values
        slow = explain(model, None, transformed=model.transform(one)).values
        assert np.array_equal(fast, slow)
    as_text = rows.astype({"age": object})
    as_text.loc[as_text.index[0], "age"] = "forty"
    with pytest.raises(ModelError, match="feature 'age' must be numeric"):
        explain(model, as_text.iloc[[0]])  # the general path's own error
    mixed = _train(tmp_path, "xgboost.XGBClassifier", "churn", n_estimators=5)
    assert module._compiled(mixed) is None  # one-hot columns: the general path


@pytest.mark.parametrize(
    ("class_path", "target"),
    [
        ("sklearn.ensemble.RandomForestClassifier", "tier"),
        ("sklearn.ensemble.GradientBoostingRegressor", "value"),
    ],
)
def test_large_forests_read_decision_paths_to_the_same_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, class_path: str, target: str
) -> None:
    from mlopsctl.models import explain as module

    model = _train(tmp_path, class_path, target, n_estimators=12)
    rows = _frame(30, seed=12)
    by_leaf = explain(model, rows).values
    monkeypatch.setattr(module, "LEAF_TABLE_LIMIT", 0)  # as for a forest too large for it
    again = load_model_dir(tmp_path / class_path.rsplit(".", 1)[1])  # nothing cached for it
    by_path = explain(again, rows).values
    assert not module._forest_tables(again)[0].by_leaf
    np.testing.assert_allclose(by_path, by_leaf, rtol=1e-12, atol=1e-12)


def test_a_tree_that_never_splits(tmp_path: Path) -> None:
    frame = _frame()
    frame["flat"] = 3.0
    numeric = [f for f in FEATURES if f.kind == "numeric"]
    estimator, _ = _fit.make_estimator("sklearn.tree.DecisionTreeRegressor", {}, 0)
    pipeline = _fit.build_pipeline(estimator, numeric)
    pipeline.fit(prepare_features(frame, numeric), frame["flat"].to_numpy())
    model = LoadedModel(
        {"flavor": "sklearn", "task": "regression", "features": [f.as_dict() for f in numeric]},
        pipeline[:-1],
        pipeline[-1],
    )
    values, _ = contributions(model, _frame(4, seed=13))
    assert values.tolist() == [[0.0, 0.0, 3.0]] * 4
