"""tune: grid and random search, child run records in the store, the best trial refitted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlopsctl.components import tune
from mlopsctl.components.base import StepContext
from mlopsctl.errors import MlopsError
from mlopsctl.models.artifact import load_model_dir
from mlopsctl.store import open_store

FOREST = {"class": "sklearn.ensemble.RandomForestClassifier", "n_estimators": 5}


def classification_data(n: int = 150, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    colour = rng.choice(np.array(["red", "green"], dtype=object), n)
    logit = 2 * x[:, 0] - x[:, 1] + (colour == "red")
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "colour": colour, "y": y})


def run_tune(
    tmp_path: Path,
    params: dict[str, Any],
    frame: pd.DataFrame | None = None,
    test: pd.DataFrame | None = None,
    store: Any = None,
) -> StepContext:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (classification_data() if frame is None else frame).to_parquet(tmp_path / "train.parquet")
    inputs = {"train": tmp_path / "train.parquet"}
    if test is not None:
        test.to_parquet(tmp_path / "test.parquet")
        inputs["test"] = tmp_path / "test.parquet"
    ctx = StepContext(
        step="tune",
        run_id="20260101-000000-000-abcdef",
        params=params,
        inputs=inputs,
        outputs={"model": tmp_path / "model", "best": tmp_path / "best.json"},
        workdir=tmp_path / "work",
        project_root=tmp_path,
        store=store,
        experiment="sweep",
    )
    tune.run(ctx)
    return ctx


def test_grid_search_records_child_runs_and_keeps_the_best(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    ctx = run_tune(
        tmp_path,
        {
            "target": "y",
            "estimator": FOREST,
            "space": {"max_depth": [1, 3], "min_samples_leaf": [1, 10]},
            "metric": "roc_auc",
        },
        store=store,
    )
    trials = ctx.info["trials"]
    assert [t["params"] for t in trials] == [
        {"max_depth": 1, "min_samples_leaf": 1},
        {"max_depth": 1, "min_samples_leaf": 10},
        {"max_depth": 3, "min_samples_leaf": 1},
        {"max_depth": 3, "min_samples_leaf": 10},
    ]
    best = max(trials, key=lambda t: t["metrics"]["roc_auc"])
    written = json.loads((tmp_path / "best.json").read_text())
    assert written["params"] == best["params"] and written["trial"] == best["id"]
    assert written["value"] == best["metrics"]["roc_auc"] == ctx.metrics["best_roc_auc"]
    assert written["direction"] == "maximize" and written["scored_on"] == "3-fold cv"
    assert ctx.metrics["trials"] == 4.0 and ctx.metrics["failed_trials"] == 0.0

    keys = sorted(store.list("runs/"))
    assert keys == [f"runs/20260101-000000-000-abcdef-t00{i}.json" for i in range(1, 5)]
    record = json.loads(store.get(keys[0]))
    assert record["parent"] == "20260101-000000-000-abcdef" and record["kind"] == "trial"
    assert record["step"] == "tune" and record["status"] == "succeeded"
    assert record["params"] == trials[0]["params"]
    assert record["metrics"] == trials[0]["metrics"]
    assert record["experiment"] == "sweep"
    assert len(list(store.list("experiments/sweep/"))) == 4

    model = load_model_dir(tmp_path / "model")
    assert model.meta["params"] == {"n_estimators": 5, **best["params"], "random_state": 0}
    assert model.predict(classification_data(seed=1)).shape == (150,)


def test_random_search_on_a_test_input_minimising_a_loss(tmp_path: Path) -> None:
    ctx = run_tune(
        tmp_path,
        {
            "target": "y",
            "estimator": "sklearn.linear_model.LogisticRegression",
            "search": "random",
            "n_trials": 4,
            "space": {"C": {"low": 0.001, "high": 10, "log": True}},
            "metric": "log_loss",
            "seed": 5,
        },
        test=classification_data(seed=2),
    )
    trials = ctx.info["trials"]
    assert len(trials) == 4 and all(0.001 <= t["params"]["C"] <= 10 for t in trials)
    best = min(trials, key=lambda t: t["metrics"]["log_loss"])
    assert ctx.info["best"]["trial"] == best["id"]
    assert ctx.info["best"]["direction"] == "minimize"
    assert ctx.info["best"]["scored_on"] == "test"


def test_regression_defaults_to_rmse(tmp_path: Path) -> None:
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True).frame.head(150)
    ctx = run_tune(
        tmp_path,
        {
            "target": "target",
            "estimator": "sklearn.linear_model.Ridge",
            "space": {"alpha": [0.1, 100]},
        },
        frame=frame,
    )
    rmse = [t["metrics"]["rmse"] for t in ctx.info["trials"]]
    assert ctx.metrics["best_rmse"] == min(rmse)


def test_a_failing_trial_is_recorded_and_the_others_still_count(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    ctx = run_tune(
        tmp_path,
        {"target": "y", "estimator": FOREST, "space": {"max_depth": [-1, 2]}},
        store=store,
    )
    failed, ok = ctx.info["trials"]
    assert failed["status"] == "failed" and "max_depth" in failed["error"]
    assert ok["status"] == "succeeded" and ctx.info["best"]["trial"] == ok["id"]
    record = json.loads(store.get(f"runs/{failed['id']}.json"))
    assert record["status"] == "failed" and record["metrics"] == {}


def test_random_draws_are_reproducible_and_inside_their_ranges() -> None:
    params = {
        "search": "random",
        "n_trials": 200,
        "space": {
            "depth": {"low": 2, "high": 4},
            "rate": {"low": 0.01, "high": 1.0, "log": True},
            "leaves": {"low": 8, "high": 64, "log": True, "type": "int"},
            "booster": ["gbtree", "dart"],
        },
    }
    draws = tune._candidates(params, seed=1)
    assert draws == tune._candidates(params, seed=1)
    assert draws != tune._candidates(params, seed=2)
    assert {d["depth"] for d in draws} == {2, 3, 4}
    assert all(0.01 <= d["rate"] <= 1.0 for d in draws)
    assert all(8 <= d["leaves"] <= 64 and isinstance(d["leaves"], int) for d in draws)
    assert {d["booster"] for d in draws} == {"gbtree", "dart"}


def test_unknown_hyperparameter_in_space(tmp_path: Path) -> None:
    with pytest.raises(MlopsError, match="has no hyperparameter 'max_dept'") as info:
        run_tune(tmp_path, {"target": "y", "estimator": FOREST, "space": {"max_dept": [2]}})
    assert info.value.hint == "did you mean 'max_depth'?"


def test_metric_must_fit_the_task(tmp_path: Path) -> None:
    with pytest.raises(MlopsError, match="metric: 'rmse' does not apply to a classification"):
        run_tune(
            tmp_path,
            {"target": "y", "estimator": FOREST, "space": {"max_depth": [2]}, "metric": "rmse"},
        )


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (
            {"space": {"max_depth": {"low": 1, "high": 5}}},
            (
                ("space", "max_depth"),
                "grid search needs a list of values for 'max_depth'; ranges need search: random",
            ),
        ),
        (
            {"search": "random", "space": {"eta": {"low": 1, "high": 0.1}}},
            (("space", "eta"), "space.eta: low (1) must be below high (0.1)"),
        ),
        (
            {"search": "random", "space": {"eta": {"low": 0, "high": 1, "log": True}}},
            (("space", "eta"), "space.eta: a log range needs low > 0"),
        ),
        (
            {"space": {"max_depth": []}},
            (("space", "max_depth"), "space.max_depth lists no values"),
        ),
        (
            {"space": {"max_depth": [2]}, "n_trials": 5},
            (("n_trials",), "n_trials applies to search: random only"),
        ),
        ({}, (("space",), "space is required: {hyperparameter: [values], ...}")),
    ],
)
def test_check(tmp_path: Path, params: dict[str, Any], expected: tuple[Any, str]) -> None:
    base = {"target": "y", "estimator": {"class": "xgboost.XGBClassifier"}}
    assert tune.check({**base, **params}, tmp_path) == [expected]
