"""Contributions in the prediction log (serve --log-contributions): which requests are sampled
(a hash of the request id: the same answer every time, the asked share, not lined up with the
arm a request id is routed to), and the log columns: ``contrib.<feature>`` and
``contrib.bias`` as float64, equal to the model's own explanation of the rows, null on the rows
of requests that were not sampled, and no such columns in the tables of a server that logs none
(as before)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlopsctl.components import _fit
from mlopsctl.errors import UsageError
from mlopsctl.models import explain
from mlopsctl.models.artifact import (
    Feature,
    LoadedModel,
    load_model_dir,
    prepare_features,
    save_model,
)
from mlopsctl.serving.arms import unit
from mlopsctl.serving.codecs import Inputs
from mlopsctl.serving.logs import (
    CONTRIB_BIAS,
    CONTRIB_PREFIX,
    PREDICTIONS,
    BufferedWriter,
    Contributions,
    LogSchema,
    contrib_columns,
    contrib_sampled,
    prediction_table,
)
from mlopsctl.serving.options import ServeOptions, check_options
from mlopsctl.store.local import LocalStore

NUMERIC = [Feature("age", "float64", "numeric"), Feature("income", "float64", "numeric")]
MIXED = [*NUMERIC, Feature("plan", "object", "categorical")]


def _rows(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": rng.normal(40, 10, n),
            "income": rng.lognormal(10, 0.5, n),
            "plan": rng.choice(["basic", "pro", "team"], size=n),
        }
    )
    frame.loc[::17, "age"] = np.nan
    return frame


def _model(tmp: Path, features: list[Feature]) -> LoadedModel:
    """A small XGBoost classifier, fitted, saved and loaded back as train does."""
    frame = _rows(300)
    signal = (frame["age"].fillna(40) - 40) / 10 + (np.log(frame["income"]) - 10) * 2
    if any(f.name == "plan" for f in features):
        signal = signal + frame["plan"].map({"basic": 0.0, "pro": 1.0, "team": -1.0})
    frame["churn"] = (signal > 0.2).astype(int)
    class_path = "xgboost.XGBClassifier"
    estimator, used = _fit.make_estimator(class_path, {"n_estimators": 20, "max_depth": 3}, 0)
    task = _fit.task_of(estimator, class_path)
    y, classes = _fit.encode_target(frame["churn"], task, "churn")
    pipeline = _fit.build_pipeline(estimator, features)
    pipeline.fit(prepare_features(frame, features), y)
    folder = tmp / f"model-{len(features)}"
    save_model(
        pipeline,
        folder,
        estimator_class=class_path,
        params=used,
        task=task,
        target="churn",
        features=features,
        classes=classes,
        frame=frame,
    )
    return load_model_dir(folder)


# -- the sampling rule ------------------------------------------------------------------------


def test_sampling_is_a_stable_share_of_request_ids() -> None:
    ids = [f"req-{i}" for i in range(20_000)]
    assert not any(contrib_sampled(i, 0.0) for i in ids)
    assert all(contrib_sampled(i, 1.0) for i in ids)
    for rate in (0.01, 0.1, 0.5):
        picked = [i for i in ids if contrib_sampled(i, rate)]
        assert abs(len(picked) / len(ids) - rate) < 0.01 + rate * 0.1, rate
        # The same ids every time (a rerun agrees), and a higher rate keeps the lower one's.
        assert picked == [i for i in ids if contrib_sampled(i, rate)]
        assert all(contrib_sampled(i, min(1.0, rate * 2)) for i in picked)


def test_sampling_does_not_line_up_with_the_arm_of_a_request_id() -> None:
    # Arms are chosen by arms.unit(request id): a 10% canary must get about 10% of its
    # requests sampled at 0.1, not all or none of them.
    canary = [i for i in (f"id{n}" for n in range(50_000)) if unit(i) < 0.1]
    share = sum(contrib_sampled(i, 0.1) for i in canary) / len(canary)
    assert 0.08 < share < 0.12, share


@pytest.mark.parametrize("rate", [-0.1, 1.5, float("nan")])
def test_a_rate_outside_0_to_1_is_refused(rate: float) -> None:
    with pytest.raises(UsageError, match="--log-contributions must be between 0 and 1"):
        check_options(ServeOptions(ref="m:1", log_contributions=rate))
    check_options(ServeOptions(ref="m:1", log_contributions=0.25))


def test_the_log_columns_are_the_explainers() -> None:
    assert CONTRIB_PREFIX == explain.CONTRIB_PREFIX
    assert CONTRIB_BIAS == explain.BIAS
    assert contrib_columns(("a", "ts")) == ["contrib.a", "contrib.ts", "contrib.bias"]


# -- the log columns --------------------------------------------------------------------------


def _entry(
    request_id: str, inputs: Inputs, schema: LogSchema, contrib: Contributions | None
) -> tuple[Any, ...]:
    features = inputs.matrix if inputs.matrix is not None else inputs.columns
    rows = inputs.rows
    return (
        request_id,
        int(time.time() * 1000),
        1,
        "production",
        0.5,
        features,
        np.ones(rows, dtype="int64"),
        np.full(rows, 0.7),
        schema,
        None,
        None,
        contrib,
    )


def _numeric_inputs(frame: pd.DataFrame) -> Inputs:
    matrix = frame[["age", "income"]].to_numpy(dtype="float64")
    return Inputs(rows=len(frame), matrix=matrix)


def test_contrib_columns_hold_the_models_own_explanation(tmp_path: Path) -> None:
    model = _model(tmp_path, NUMERIC)
    names = ("age", "income")
    schema = LogSchema(names, ("numeric", "numeric"), True, True)
    frame = _rows(9, seed=3)
    parts = [frame.iloc[0:2], frame.iloc[2:3], frame.iloc[3:7], frame.iloc[7:9]]
    inputs = [_numeric_inputs(p) for p in parts]
    given = explain.contributions(model, inputs[2].frame(list(names)))[0]
    entries = [
        # sampled: explained by the writer
        _entry("a", inputs[0], schema, Contributions(names, model=model, inputs=inputs[0])),
        _entry("b", inputs[1], schema, Contributions(names)),  # not sampled: null
        _entry("c", inputs[2], schema, Contributions(names, values=given)),  # asked for them
        _entry("d", inputs[3], schema, Contributions(names, model=model, inputs=inputs[3])),
    ]
    tables = prediction_table("m")(entries)
    assert len(tables) == 1
    table = tables[0]
    columns = ["contrib.age", "contrib.income", "contrib.bias"]
    assert table.column_names[-3:] == columns
    for column in columns:
        assert table.schema.field(column).type == pa.float64()
    logged = np.column_stack([table.column(c).to_numpy(zero_copy_only=False) for c in columns])
    expected = explain.contributions(model, frame[["age", "income"]].reset_index(drop=True))[0]
    sampled = np.array([True, True, False, True, True, True, True, True, True])
    np.testing.assert_allclose(logged[sampled], expected[sampled], rtol=1e-9, atol=1e-12)
    assert table.column("contrib.age").null_count == 1
    assert table.column("contrib.age")[2].as_py() is None
    # each row sums to the model's raw output (log-odds)
    raw = explain.raw_output(model, frame[["age", "income"]])
    np.testing.assert_allclose(logged[sampled].sum(axis=1), raw[sampled], rtol=1e-5, atol=1e-5)


def test_categorical_inputs_are_explained_from_their_columns(tmp_path: Path) -> None:
    model = _model(tmp_path, MIXED)
    names = ("age", "income", "plan")
    schema = LogSchema(names, ("numeric", "numeric", "categorical"), True, True)
    frame = _rows(5, seed=4)
    entries = []
    for i in range(5):
        row = frame.iloc[i : i + 1]
        inputs = Inputs(
            rows=1,
            columns={n: row[n].tolist() for n in names},
            categorical=frozenset({"plan"}),
        )
        entries.append(
            _entry(f"r{i}", inputs, schema, Contributions(names, model=model, inputs=inputs))
        )
    table = prediction_table("m")(entries)[0]
    logged = np.column_stack([table.column(c).to_numpy() for c in contrib_columns(names)])
    expected = explain.contributions(model, frame.reset_index(drop=True))[0]
    np.testing.assert_allclose(logged, expected, rtol=1e-9, atol=1e-12)


def test_tables_without_contributions_keep_the_old_columns(tmp_path: Path) -> None:
    names = ("age", "income")
    schema = LogSchema(names, ("numeric", "numeric"), True, True)
    frame = _rows(3)
    old = _entry("x", _numeric_inputs(frame), schema, None)[:9]  # an entry as before
    none = _entry("y", _numeric_inputs(frame), schema, None)
    tables = prediction_table("m")([old, none])
    assert len(tables) == 1
    assert not any(c.startswith(CONTRIB_PREFIX) for c in tables[0].column_names)


def test_a_model_that_cannot_be_explained_logs_its_rows_without(tmp_path: Path) -> None:
    class Opaque:
        features = NUMERIC

    names = ("age", "income")
    schema = LogSchema(names, ("numeric", "numeric"), True, True)
    inputs = _numeric_inputs(_rows(2))
    entry = _entry("z", inputs, schema, Contributions(names, model=Opaque(), inputs=inputs))
    table = prediction_table("m")([entry])[0]
    assert table.num_rows == 2
    assert table.column("contrib.bias").null_count == 2


def test_the_writer_writes_contrib_columns_to_parquet(tmp_path: Path) -> None:
    model = _model(tmp_path, NUMERIC)
    names = ("age", "income")
    schema = LogSchema(names, ("numeric", "numeric"), True, True)
    frame = _rows(4, seed=5)
    with LocalStore(tmp_path / "s") as store:
        writer = BufferedWriter(store, PREDICTIONS, "m", prediction_table("m"), interval=60)
        for i in range(4):
            inputs = _numeric_inputs(frame.iloc[i : i + 1])
            contrib = Contributions(names, model=model, inputs=inputs) if i % 2 else None
            writer.append(_entry(f"w{i}", inputs, schema, contrib), 1)
        writer.close()
        files = sorted((tmp_path / "s/logs/predictions/m").rglob("*.parquet"))
    tables = [pq.read_table(f) for f in files]
    # entries without Contributions (a server logging none) and with them: two schemas
    assert sorted(t.num_rows for t in tables) == [2, 2]
    with_contrib = next(t for t in tables if "contrib.bias" in t.column_names)
    assert with_contrib.column("request_id").to_pylist() == ["w1", "w3"]
    logged = np.column_stack([with_contrib.column(c).to_numpy() for c in contrib_columns(names)])
    expected = explain.contributions(model, frame.iloc[[1, 3]].reset_index(drop=True))[0]
    np.testing.assert_allclose(logged, expected, rtol=1e-9, atol=1e-12)
