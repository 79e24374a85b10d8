"""Model artifacts: round trips, integrity before deserialisation, the skops allow-list,
import-path checks without imports, and the baseline profile."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlopsctl.components import _fit
from mlopsctl.errors import IntegrityError, NotFound
from mlopsctl.models.artifact import (
    Feature,
    ModelError,
    UnsafeModel,
    check_import_path,
    load_model_dir,
    prepare_features,
    save_model,
)
from mlopsctl.models.profile import bin_counts, profile_categorical, profile_numeric

FEATURES = [Feature("x", "float64", "numeric"), Feature("kind", "str", "categorical")]


def data(n: int = 120, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    x[::15] = np.nan
    kind = rng.choice(np.array(["a", "b", "c", None], dtype=object), n)
    y = np.where(x + (kind == "a") + rng.normal(scale=0.5, size=n) > 0.3, "yes", "no")
    return pd.DataFrame({"x": x, "kind": kind, "y": y})


def fit_and_save(path: Path, class_path: str, hyper: dict[str, Any]) -> tuple[Any, list[Any]]:
    frame = data()
    estimator, params = _fit.make_estimator(class_path, hyper, seed=0)
    y, classes = _fit.encode_target(frame["y"], "classification", "y")
    pipeline = _fit.build_pipeline(estimator, FEATURES).fit(prepare_features(frame, FEATURES), y)
    save_model(
        pipeline,
        path,
        estimator_class=class_path,
        params=params,
        task="classification",
        target="y",
        features=FEATURES,
        classes=classes,
        frame=frame,
    )
    return pipeline, classes or []


@pytest.fixture(params=["sklearn", "xgboost"])
def saved(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, Any, list[Any], str]:
    if request.param == "xgboost":
        pipeline, classes = fit_and_save(
            tmp_path / "m", "xgboost.XGBClassifier", {"n_estimators": 5}
        )
    else:
        pipeline, classes = fit_and_save(
            tmp_path / "m", "sklearn.ensemble.RandomForestClassifier", {"n_estimators": 5}
        )
    return tmp_path / "m", pipeline, classes, request.param


def test_round_trip_gives_identical_predictions(saved: tuple[Path, Any, list[Any], str]) -> None:
    path, pipeline, classes, flavor = saved
    model = load_model_dir(path)
    assert model.flavor == flavor and model.task == "classification" and model.target == "y"
    fresh = data(seed=3)
    expected_codes = pipeline.predict(prepare_features(fresh, FEATURES))
    np.testing.assert_array_equal(model.predict(fresh), np.asarray(classes)[expected_codes])
    np.testing.assert_allclose(
        model.predict_proba(fresh), pipeline.predict_proba(prepare_features(fresh, FEATURES))
    )
    expected_files = ["model.skops"] if flavor == "sklearn" else ["model.ubj", "preprocess.skops"]
    assert sorted(model.meta["files"]) == expected_files
    assert sorted(os.listdir(path)) == sorted([*expected_files, "model.json"])
    assert model.meta["libraries"]["sklearn"] and model.meta["format"] == "mlopsctl-model/v1"


@pytest.fixture
def no_deserialising(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every loader fails the test loudly if it is reached."""
    import skops.io
    import xgboost

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a deserialiser was called")

    for name in ("load", "loads", "get_untrusted_types"):
        monkeypatch.setattr(skops.io, name, boom)
    monkeypatch.setattr(xgboost.XGBModel, "load_model", boom)
    monkeypatch.setattr(xgboost.Booster, "load_model", boom)


@pytest.mark.parametrize("victim", [0, -1])
def test_tampered_file_is_refused_before_any_deserialiser(
    saved: tuple[Path, Any, list[Any], str], no_deserialising: None, victim: int
) -> None:
    path = saved[0]
    name = sorted(json.loads((path / "model.json").read_text())["files"])[victim]
    data_bytes = bytearray((path / name).read_bytes())
    data_bytes[len(data_bytes) // 2] ^= 0xFF
    (path / name).write_bytes(bytes(data_bytes))
    with pytest.raises(IntegrityError, match=f"model file .*{name} does not match its sha256"):
        load_model_dir(path)


def test_missing_file_is_an_integrity_error(
    saved: tuple[Path, Any, list[Any], str], no_deserialising: None
) -> None:
    path = saved[0]
    name = sorted(json.loads((path / "model.json").read_text())["files"])[0]
    (path / name).unlink()
    with pytest.raises(IntegrityError, match=f"{name} is missing"):
        load_model_dir(path)


def write_artifact(path: Path, obj: Any, **overrides: Any) -> None:
    """An artifact made by hand, with correct digests: what a hostile bucket could hold."""
    import skops.io as sio

    path.mkdir(parents=True, exist_ok=True)
    blob = sio.dumps(obj)
    (path / "model.skops").write_bytes(blob)
    meta = {
        "format": "mlopsctl-model/v1",
        "flavor": "sklearn",
        "files": {"model.skops": "sha256:" + hashlib.sha256(blob).hexdigest()},
        "estimator_class": "sklearn.linear_model.LogisticRegression",
        "task": "classification",
        "target": "y",
        "classes": [0, 1],
        "features": [f.as_dict() for f in FEATURES],
        **overrides,
    }
    (path / "model.json").write_text(json.dumps(meta))


def test_skops_file_with_a_type_outside_the_allow_list_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import skops.io
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    hostile = Pipeline(
        [("preprocess", FunctionTransformer(os.system)), ("estimator", LogisticRegression())]
    )
    write_artifact(tmp_path / "m", hostile)

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("skops.io.loads reached")

    monkeypatch.setattr(skops.io, "loads", boom)
    with pytest.raises(UnsafeModel, match=r"contains types mlopsctl does not trust: posix.system"):
        load_model_dir(tmp_path / "m")


def test_saving_a_model_that_could_not_be_loaded_is_refused(tmp_path: Path) -> None:
    import operator

    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    frame = data()
    pipeline = Pipeline(
        [("preprocess", FunctionTransformer(operator.neg)), ("estimator", LogisticRegression())]
    ).fit(frame[["x"]].fillna(0).to_numpy(), frame["y"] == "yes")
    with pytest.raises(UnsafeModel, match=r"_operator\.neg"):
        save_model(
            pipeline,
            tmp_path / "m",
            estimator_class="sklearn.linear_model.LogisticRegression",
            params={},
            task="classification",
            target="y",
            features=[FEATURES[0]],
            classes=[False, True],
            frame=frame,
        )


def test_pickle_and_unknown_flavors_are_refused(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    write_artifact(tmp_path / "p", LogisticRegression(), flavor="pickle")
    with pytest.raises(
        UnsafeModel, match="is a pickle; loading it can run arbitrary code; pass --trust"
    ):
        load_model_dir(tmp_path / "p")
    write_artifact(tmp_path / "o", LogisticRegression(), flavor="onnx")
    with pytest.raises(ModelError, match="unknown flavor 'onnx'"):
        load_model_dir(tmp_path / "o")
    write_artifact(tmp_path / "f", LogisticRegression(), format="other/v9")
    with pytest.raises(ModelError, match="this mlopsctl reads 'mlopsctl-model/v1'"):
        load_model_dir(tmp_path / "f")
    write_artifact(tmp_path / "e", LogisticRegression(), files={"../model.skops": "sha256:00"})
    with pytest.raises(ModelError, match=r"invalid file entry '\.\./model\.skops'"):
        load_model_dir(tmp_path / "e")
    with pytest.raises(NotFound, match=r"model\.json is missing"):
        load_model_dir(tmp_path / "nothing")


def test_prepare_features_coerces_the_shared_way() -> None:
    frame = pd.DataFrame(
        {"kind": pd.array([True, None, False], dtype="boolean"), "x": ["1.5", None, "3"]}
    )
    prepared = prepare_features(frame, FEATURES)
    assert list(prepared.columns) == ["x", "kind"]
    assert prepared["x"].dtype == "float64" and np.isnan(prepared["x"].iloc[1])
    assert prepared["kind"].tolist()[::2] == ["True", "False"] and pd.isna(prepared["kind"].iloc[1])
    with pytest.raises(ModelError, match="input lacks feature column"):
        prepare_features(frame[["x"]], FEATURES)
    with pytest.raises(ModelError, match="feature 'x' must be numeric"):
        prepare_features(pd.DataFrame({"x": ["high"], "kind": ["a"]}), FEATURES)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("sklearn.ensemble.RandomForestClassifier", None),
        ("xgboost.XGBClassifier", None),
        ("sklearn.linear_model.LogisticRegression", None),
        (
            "sklearn.ensemble.RandomForestClasifier",
            "estimator class 'sklearn.ensemble.RandomForestClasifier' not found in module "
            "sklearn.ensemble; did you mean 'RandomForestClassifier'?",
        ),
        ("xgbost.XGBClassifier", "module 'xgbost' is not installed; did you mean 'xgboost'?"),
        (
            "RandomForestClassifier",
            "estimator class 'RandomForestClassifier' is not an import path; "
            "write it like 'sklearn.ensemble.RandomForestClassifier'",
        ),
    ],
)
def test_check_import_path(path: str, expected: str | None) -> None:
    assert check_import_path(path) == expected


def test_check_import_path_reads_sources_instead_of_importing() -> None:
    probe = (
        "import sys\n"
        "from mlopsctl.models.artifact import check_import_path as c\n"
        "assert c('sklearn.ensemble.RandomForestClassifier') is None\n"
        "assert c('xgboost.XGBRegressor') is None\n"
        "assert c('sklearn.ensemble.RandomForestClasifier')\n"
        "heavy = {'sklearn', 'xgboost', 'numpy', 'scipy'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr


def test_check_import_path_falls_back_to_an_import_for_lazy_modules() -> None:
    # sklearn.impute resolves IterativeImputer through a module __getattr__ that refuses it.
    message = check_import_path("sklearn.impute.IterativeImputer")
    assert message is not None and "enable_iterative_imputer" in message
    assert "\n" not in message


def test_numeric_profile_and_counting_new_data_in_its_bins() -> None:
    values = np.concatenate([np.arange(100, dtype=float), [np.nan, np.inf]])
    profile = profile_numeric(values)
    assert profile["count"] == 102 and profile["missing"] == pytest.approx(2 / 102)
    assert profile["min"] == 0 and profile["max"] == 99
    assert len(profile["quantiles"]) == 21 and len(profile["edges"]) == 21
    assert sum(profile["counts"]) == 100
    assert sum(bin_counts([-50.0, 500.0, 42.0, np.nan], profile["edges"])) == 3
    assert bin_counts([-50.0, 500.0], profile["edges"])[0] == 1

    constant = profile_numeric(np.ones(10))
    assert constant["edges"] == [1.0, 1.0] and constant["counts"] == [10]
    assert bin_counts([5.0], constant["edges"]) == [1]
    assert profile_numeric(np.array([np.nan]))["edges"] == []


def test_categorical_profile_keeps_the_top_values() -> None:
    values = pd.Series(["a"] * 5 + ["b"] * 3 + ["c", "d", None])
    profile = profile_categorical(values, top=2)
    assert profile["frequencies"] == {"a": 5, "b": 3, "__other__": 2}
    assert profile["distinct"] == 4 and profile["missing"] == pytest.approx(1 / 11)
