"""trees.py: XGBoost's trees walked with numpy give the booster's own output bit for bit, on
the models it covers, and decline the rest."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

xgboost = pytest.importorskip("xgboost")

from mlopsctl.serving.trees import compile_trees  # noqa: E402


def _data(rows: int = 400, width: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, width)) * np.array([1, 10, 100, 0.01, 1, 1000])[:width]
    y = x[:, 0] + 0.1 * x[:, 1] - 0.01 * x[:, 2] + rng.standard_normal(rows)
    x[rng.random(x.shape) < 0.1] = np.nan  # trained with holes: splits learn default directions
    return x, y


def _compiled(estimator: Any, width: int) -> Any:
    booster = estimator.get_booster()
    booster.set_param({"nthread": 1})
    iteration_range = estimator._get_iteration_range(None)

    def reference(matrix: np.ndarray) -> np.ndarray:
        return np.asarray(
            booster.inplace_predict(matrix, iteration_range=iteration_range, missing=np.nan)
        )

    objective = estimator.get_params()["objective"]
    return compile_trees(booster, objective, iteration_range, np.nan, reference, width), reference


def _rows(width: int, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x, _ = _data(300, width, seed)
    x[rng.random(x.shape) < 0.15] = np.nan
    x[:5] = np.nan
    return x


@pytest.mark.parametrize(
    "make",
    [
        lambda: xgboost.XGBClassifier(n_estimators=40, max_depth=4, n_jobs=1),
        lambda: xgboost.XGBRegressor(n_estimators=40, max_depth=5, n_jobs=1),
        lambda: xgboost.XGBRegressor(
            n_estimators=30, max_depth=3, objective="reg:pseudohubererror", n_jobs=1
        ),
        lambda: xgboost.XGBClassifier(
            n_estimators=20, max_depth=2, objective="binary:logitraw", n_jobs=1
        ),
    ],
    ids=["binary-logistic", "squared-error", "pseudo-huber", "logit-raw"],
)
def test_numpy_trees_equal_the_booster_row_by_row(make: Any) -> None:
    x, y = _data()
    estimator = make()
    target = (y > 0).astype(int) if isinstance(estimator, xgboost.XGBClassifier) else y
    estimator.fit(x, target)
    evaluate, reference = _compiled(estimator, x.shape[1])
    assert evaluate is not None
    rows = _rows(x.shape[1])
    for i in range(len(rows)):
        row = rows[i : i + 1]
        got, expected = evaluate(row), reference(row).reshape(-1)
        assert got.dtype == expected.dtype == np.float32
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(evaluate(rows[:3]), reference(rows[:3]).reshape(-1))


def test_an_early_stopped_model_uses_its_best_iterations_only() -> None:
    x, y = _data()
    estimator = xgboost.XGBRegressor(
        n_estimators=200, max_depth=4, n_jobs=1, early_stopping_rounds=3, learning_rate=0.5
    )
    estimator.fit(x[:300], y[:300], eval_set=[(x[300:], y[300:])], verbose=False)
    _begin, end = estimator._get_iteration_range(None)
    assert end < 200  # it did stop early: the trees past the best one must be left out
    evaluate, reference = _compiled(estimator, x.shape[1])
    assert evaluate is not None
    rows = _rows(x.shape[1])
    np.testing.assert_array_equal(evaluate(rows[:1]), reference(rows[:1]))
    full = estimator.get_booster().inplace_predict(rows[:1], iteration_range=(0, 0))
    assert not np.array_equal(evaluate(rows[:1]), full)


def test_models_it_does_not_cover_are_declined() -> None:
    import pandas as pd

    x, y = _data()
    multi = xgboost.XGBClassifier(n_estimators=5, max_depth=2, n_jobs=1)
    multi.fit(x, np.digitize(y, [-1, 1]))
    assert _compiled(multi, x.shape[1])[0] is None  # three classes: softprob

    frame = pd.DataFrame({"a": x[:, 0], "c": pd.Categorical(np.where(y > 0, "u", "v"))})
    categorical = xgboost.XGBRegressor(
        n_estimators=5, max_depth=2, n_jobs=1, enable_categorical=True, tree_method="hist"
    )
    categorical.fit(frame, y)
    assert _compiled(categorical, 2)[0] is None  # categorical splits

    plain = xgboost.XGBRegressor(n_estimators=5, max_depth=2, n_jobs=1).fit(x, y)
    booster = plain.get_booster()
    assert (
        compile_trees(booster, "reg:squarederror", (0, 0), 0.0, booster.inplace_predict, 6) is None
    )
    assert compile_trees(booster, "reg:gamma", (0, 0), np.nan, booster.inplace_predict, 6) is None


def test_a_disagreement_on_the_probe_rows_declines() -> None:
    x, y = _data()
    plain = xgboost.XGBRegressor(n_estimators=5, max_depth=2, n_jobs=1).fit(x, y)
    booster = plain.get_booster()

    def off_by_one_ulp(matrix: np.ndarray) -> np.ndarray:
        out = np.asarray(booster.inplace_predict(matrix), dtype="float32")
        return np.nextafter(out, np.float32(np.inf))

    assert compile_trees(booster, "reg:squarederror", (0, 0), np.nan, off_by_one_ulp, 6) is None


def test_models_with_more_nodes_than_the_cap_are_left_to_xgboost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import mlopsctl.serving.trees as trees

    x, y = _data()
    estimator = xgboost.XGBRegressor(n_estimators=20, max_depth=4, n_jobs=1).fit(x, y)
    assert _compiled(estimator, x.shape[1])[0] is not None
    nodes = sum(
        int(tree.count("\n")) for tree in estimator.get_booster().get_dump()
    )  # one line per node
    monkeypatch.setattr(trees, "MAX_NODES", nodes - 1)
    assert _compiled(estimator, x.shape[1])[0] is None


def test_binary_probabilities_equal_normalised_proba_of_both_columns() -> None:
    from mlopsctl.models.artifact import normalised_proba
    from mlopsctl.serving.predictor import _binary_proba

    rng = np.random.default_rng(3)
    p = np.concatenate([rng.random(50), [0.0, 1.0, 0.5, np.nan]]).astype("float32")
    expected = normalised_proba(np.vstack((1 - p, p)).transpose())
    np.testing.assert_array_equal(_binary_proba(p), expected)
    np.testing.assert_array_equal(_binary_proba(p[:50]), expected[:50])  # the all-positive path


def test_extreme_margins_get_xgboosts_probabilities_without_a_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Margins far past float32's exponential (which the probe rows do not reach) give what
    XGBoost's capped logistic link gives, not 0, and no overflow warning."""
    import warnings

    from mlopsctl.serving.trees import PackedTrees

    x, y = _data()
    estimator = xgboost.XGBClassifier(n_estimators=10, max_depth=2, n_jobs=1).fit(x, y > 0)
    evaluate, _ = _compiled(estimator, x.shape[1])
    assert evaluate is not None
    booster = estimator.get_booster()
    rows = np.repeat(x[:1], 7, axis=0)
    base = np.array([-1e30, -1000.0, -100.0, -88.0, 0.0, 100.0, 1e30])
    margins = booster.inplace_predict(rows, base_margin=base, predict_type="margin")
    expected = booster.inplace_predict(rows, base_margin=base)
    monkeypatch.setattr(PackedTrees, "margin", lambda self, matrix: margins)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = evaluate(rows)
    assert got[0] > 0.0  # capped: not 0
    np.testing.assert_array_equal(got, expected)
