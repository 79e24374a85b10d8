"""Per-row outlier scores (mlopsctl/models/outliers.py): training-like rows score low, shifted
rows and unseen categories high, scores grow the farther a value lies, missing values are not
outliers, and models without the tail tables are scored from their training profile."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlopsctl.components import _fit
from mlopsctl.models.artifact import Feature, load_model_dir, prepare_features, save_model
from mlopsctl.models.outliers import (
    LOG_COLUMN,
    THRESHOLD,
    Scorer,
    outlier_baseline,
    outlier_scores,
    scorer_for,
)
from mlopsctl.models.profile import profile_frame

FEATURES = [
    Feature("age", "float64", "numeric"),
    Feature("income", "float64", "numeric"),
    Feature("visits", "float64", "numeric"),
    Feature("plan", "object", "categorical"),
]


def _frame(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.normal(40 + shift * 10, 10, n),
            "income": rng.lognormal(10, 0.5, n),
            "visits": rng.poisson(3, n).astype(float),  # discrete, with ties
            "plan": rng.choice(["basic", "pro", "team"], p=[0.5, 0.3, 0.2], size=n),
        }
    )


def _meta(training: pd.DataFrame, *, tails: bool = True) -> dict[str, Any]:
    kinds = [(f.name, f.kind) for f in FEATURES]
    meta: dict[str, Any] = {
        "features": [f.as_dict() for f in FEATURES],
        "profile": {"rows": len(training), "features": profile_frame(training, kinds)},
    }
    if tails:
        meta["outliers"] = outlier_baseline(training, FEATURES)
    return meta


@pytest.fixture(scope="module")
def training() -> pd.DataFrame:
    return _frame(5000, seed=1)


@pytest.mark.parametrize("tails", [True, False], ids=["tail-tables", "profile-fallback"])
def test_training_like_rows_score_low_shifted_rows_high(
    training: pd.DataFrame, tails: bool
) -> None:
    meta = _meta(training, tails=tails)
    own = outlier_scores(meta, training)
    fresh = outlier_scores(meta, _frame(5000, seed=2))
    shifted = outlier_scores(meta, _frame(1000, seed=3, shift=8.0))  # age 8 sd higher
    for scores in (own, fresh, shifted):
        assert scores.shape[0] in (1000, 5000)
        assert ((scores >= 0) & (scores <= 1)).all()
    # The threshold's promise: about 1% of training-like rows at most.
    assert (own >= THRESHOLD).mean() <= 0.015
    assert (fresh >= THRESHOLD).mean() <= 0.015
    assert (shifted >= THRESHOLD).mean() >= 0.95
    assert np.median(fresh) < 0.9 and np.median(shifted) > 0.999
    assert Scorer(meta).source == ("model" if tails else "profile")


def test_scores_grow_with_distance_and_missing_values_are_not_outliers(
    training: pd.DataFrame,
) -> None:
    meta = _meta(training)
    high = training["age"].max()
    rows = pd.DataFrame(
        {
            "age": [40.0, high - 1, high + 2, high + 10, high + 40, np.nan],
            "income": [22000.0] * 6,
            "visits": [3.0] * 6,
            "plan": ["basic"] * 6,
        }
    )
    scores = outlier_scores(meta, rows)
    assert (np.diff(scores[:5]) > 0).all()  # farther out: higher, no cliff at the edge
    assert scores[0] < 0.5 and scores[4] > 0.9999
    assert scores[5] == scores[0]  # missing age: judged on the other features only
    low = rows.copy()
    low["age"] = [40.0, 2 * 40 - rows["age"][1], 2 * 40 - rows["age"][2], 0, -50, np.nan]
    assert outlier_scores(meta, low)[4] > 0.999  # the lower tail too


def test_unseen_and_rare_categories(training: pd.DataFrame) -> None:
    meta = _meta(training)
    rows = pd.DataFrame(
        {
            "age": [40.0] * 3,
            "income": [22000.0] * 3,
            "visits": [3.0] * 3,
            "plan": ["basic", "team", "enterprise"],
        }
    )
    scores = outlier_scores(meta, rows)
    assert scores[0] < scores[1] < THRESHOLD <= scores[2]
    # A category seen once in a few rows is no evidence that a new one is strange.
    small = _frame(50, seed=4)
    small["plan"] = [f"p{i}" for i in range(50)]  # every plan unique
    few = {
        "features": [f.as_dict() for f in FEATURES],
        "outliers": outlier_baseline(small, FEATURES),
    }
    assert outlier_scores(few, rows.assign(plan="new"))[0] < THRESHOLD


def test_a_constant_feature_makes_any_other_value_an_outlier() -> None:
    frame = _frame(500, seed=5)
    frame["visits"] = 2.0
    meta = _meta(frame)
    rows = frame.head(3).copy()
    rows["visits"] = [2.0, 2.5, np.nan]
    scores = outlier_scores(meta, rows)
    assert scores[1] == 1.0 and scores[0] < THRESHOLD and scores[2] < THRESHOLD


def test_saved_models_carry_the_tables_and_score_through_the_loaded_model(tmp_path: Path) -> None:
    frame = _frame(800, seed=6)
    frame["label"] = (frame["age"] > 40).astype(int)
    estimator, used = _fit.make_estimator("sklearn.linear_model.LogisticRegression", {}, 0)
    pipeline = _fit.build_pipeline(estimator, FEATURES)
    pipeline.fit(prepare_features(frame, FEATURES), frame["label"].to_numpy())
    meta = save_model(
        pipeline,
        tmp_path / "m",
        estimator_class="sklearn.linear_model.LogisticRegression",
        params=used,
        task="classification",
        target="label",
        features=FEATURES,
        classes=[0, 1],
        frame=frame,
    )
    block = meta["outliers"]
    assert block["threshold"] == THRESHOLD and set(block["features"]) == {f.name for f in FEATURES}
    assert block["features"]["age"]["rows"] == 800
    assert (
        block["features"]["plan"]["counts"]["basic"] > block["features"]["plan"]["counts"]["team"]
    )
    model = load_model_dir(tmp_path / "m")
    rows = _frame(4, seed=7)
    rows.loc[0, "age"] = 1000.0
    scores = outlier_scores(model, rows)
    assert scores[0] == pytest.approx(1.0) and (scores[1:] < THRESHOLD).all()
    assert scorer_for(model) is scorer_for(model)  # built once per loaded model
    np.testing.assert_allclose(outlier_scores(model.meta, rows), scores)
    assert LOG_COLUMN == "outlier_score"  # as serving logs it


def test_one_row_and_mappings_of_columns(training: pd.DataFrame) -> None:
    scorer = Scorer(_meta(training))
    row = {"age": np.array([41.0]), "income": np.array([21000.0]), "plan": ["pro"]}
    scores, worst = scorer.score(row)  # visits absent: not judged
    assert scores.shape == (1,) and scores[0] < THRESHOLD
    assert scorer.names[int(worst[0])] in {"age", "income", "plan"}
    assert scorer.pvalues(row)[0, scorer.names.index("visits")] == 1.0


def test_a_few_rows_and_a_batch_score_the_same(
    training: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlopsctl.models import outliers

    frame = training.copy()
    frame["visits"] = frame["visits"].clip(upper=3)  # ties at the maximum
    rows = _frame(200, seed=8, shift=1.5)
    rows.loc[::7, "age"] = np.nan
    rows.loc[::11, "income"] = 1e9  # far beyond the range
    rows.loc[::13, "income"] = -5.0  # below it
    rows.loc[::5, "plan"] = None
    rows.loc[::9, "plan"] = "enterprise"
    rows.loc[::4, "visits"] = [3.0, 3.5, 0.0, 2.5, 10.0] * 10
    for tails in (True, False):
        scorer = Scorer(_meta(frame, tails=tails))
        few = scorer.pvalues(rows)
        assert scorer.pvalues(rows.iloc[:1])[0].tolist() == few[0].tolist()
        monkeypatch.setattr(outliers, "SMALL_ROWS", 0)  # feature by feature, as for a batch
        many = scorer.pvalues(rows)
        monkeypatch.undo()
        np.testing.assert_allclose(few, many, rtol=1e-12, atol=1e-15)


def test_scores_alone_are_the_scores_looking_up_only_values_beyond_the_bands(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`Scorer.scores` skips the values inside their feature's central band (their p-value is at
    least 1 / features, which the cap takes to a score of 0): it gives exactly the scores the
    table path gives and the batch path's to 1e-15, on random tables with constant, discrete and
    wide features, tiny and large training sets, values far beyond the range, missing and
    infinite values, categorical features, and the numeric matrix handed over directly; and for
    training-like rows it looks up a few values in a hundred."""
    from mlopsctl.models import outliers

    looked_up = [0]
    interpolate = outliers._NumericTable._interpolate

    def counting(self: Any, v: np.ndarray, *args: Any) -> Any:
        looked_up[0] += int(np.size(v))
        return interpolate(self, v, *args)

    rng = np.random.default_rng(11)
    for trial in range(60):
        features = int(rng.integers(1, 25))
        n = int(rng.choice([3, 40, 2000]))
        columns: dict[str, Any] = {}
        for j in range(features):
            kind = j % 5
            if kind == 0:
                columns[f"f{j}"] = rng.normal(size=n)
            elif kind == 1:
                columns[f"f{j}"] = np.full(n, 3.0)
            elif kind == 2:
                columns[f"f{j}"] = rng.integers(0, 4, size=n).astype(float)
            elif kind == 3:
                columns[f"f{j}"] = rng.exponential(size=n) * 1e6
            else:
                columns[f"f{j}"] = rng.choice(
                    ["a", "b", "c", "d"], p=[0.7, 0.2, 0.09, 0.01], size=n
                )
        training = pd.DataFrame(columns)
        kinds = [
            Feature(
                name,
                "object" if j % 5 == 4 else "float64",
                "categorical" if j % 5 == 4 else "numeric",
            )
            for j, name in enumerate(columns)
        ]
        scorer = Scorer(
            {
                "features": [f.as_dict() for f in kinds],
                "outliers": outlier_baseline(training, kinds),
            }
        )
        rows = int(rng.choice([1, 300, 1200]))
        frame: dict[str, Any] = {}
        for name, values in columns.items():
            drawn = rng.choice(np.asarray(values), rows)
            if drawn.dtype.kind == "f":
                drawn = drawn * rng.choice([1.0, 1.0, 1.0, 1.3, -1.0, 0.999, 50.0], rows)
                drawn[rng.random(rows) < 0.03] = np.nan
                drawn[rng.random(rows) < 0.01] = rng.choice([np.inf, -np.inf])
            else:
                drawn = drawn.astype(object)
                drawn[rng.random(rows) < 0.05] = "never seen"
                drawn[rng.random(rows) < 0.03] = None
            frame[name] = drawn
        monkeypatch.setattr(outliers, "SMALL_ROWS", 10**9)  # the table path, for every size
        table = scorer.score(frame)[0]
        monkeypatch.undo()
        batch = scorer.score(frame)[0]
        fast = scorer.scores(frame)
        assert np.array_equal(fast, table), trial
        np.testing.assert_allclose(fast, batch, rtol=0, atol=1e-15)
        if not scorer.categorical:
            numeric = np.column_stack([frame[name] for name in scorer.numeric])
            assert np.array_equal(scorer.scores({}, numeric), table)
    assert (fast > 0).any() and (fast == 0).any()  # the last table had both kinds of rows

    # Training-like rows of many features: few values are looked up, the scores are the same.
    wide = pd.DataFrame({f"x{j}": rng.normal(j, 1 + j, 5000) for j in range(30)})
    kinds = [Feature(name, "float64", "numeric") for name in wide]
    scorer = Scorer(
        {"features": [f.as_dict() for f in kinds], "outliers": outlier_baseline(wide, kinds)}
    )
    rows = pd.DataFrame({f"x{j}": rng.normal(j, 1 + j, 2000) for j in range(30)})
    monkeypatch.setattr(outliers._NumericTable, "_interpolate", counting)
    fast = scorer.scores(rows)
    assert looked_up[0] < 0.05 * rows.size
    monkeypatch.undo()
    np.testing.assert_allclose(fast, scorer.score(rows)[0], rtol=0, atol=1e-15)
    assert 0 < (fast > 0).mean() < 1  # (about 1 - (1 - 1/30) ** 30 of such rows score above 0)
