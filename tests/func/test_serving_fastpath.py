"""The serving fast path (a float64 matrix, precompiled preprocessing, the booster called
directly) gives exactly the predictions and probabilities of `LoadedModel` on the quickstart
model, missing values included; and the smoke loader accepts it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlopsctl.store.local import LocalStore

from .test_models import MODEL, quickstart_project


@pytest.fixture
def model_dir(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    from mlopsctl.registry import cached_model_dir, get_version

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = tmp_path / "demo"
    quickstart_project(tmp_path_factory, root)
    with LocalStore(root / ".mlops") as store:
        return cached_model_dir(store, get_version(store, MODEL, 1))


def test_fast_path_equals_loaded_model_exactly(model_dir: Path) -> None:
    import pandas as pd
    from sklearn.datasets import load_breast_cancer

    from mlopsctl.models.artifact import load_model_dir
    from mlopsctl.serving.predictor import Predictor

    model = load_model_dir(model_dir)
    predictor = Predictor(load_model_dir(model_dir), MODEL, 1)
    assert predictor.fast and predictor.numeric

    frame = load_breast_cancer(as_frame=True).frame.drop(columns="target")
    holes = frame.copy()
    rng = np.random.default_rng(0)
    holes = holes.mask(rng.random(holes.shape) < 0.2)  # missing values take the imputer
    shifted = frame * 1.7 - 3.0  # values far outside the training range
    for data in (frame, holes, shifted):
        got = predictor.predict_matrix(data[predictor.names].to_numpy(dtype="float64"))
        np.testing.assert_array_equal(got.labels, model.predict(data))
        assert got.proba is not None
        np.testing.assert_array_equal(got.proba, model.predict_proba(data))
        np.testing.assert_array_equal(got.score, model.predict_proba(data)[:, 1])
    for i in range(0, len(frame), 37):  # single rows, as requests send them
        row = holes.iloc[[i]]
        got = predictor.predict_matrix(row.to_numpy(dtype="float64"))
        np.testing.assert_array_equal(got.labels, model.predict(row))
        np.testing.assert_array_equal(got.proba, model.predict_proba(row))
    general = predictor.predict_frame(pd.DataFrame(holes))
    np.testing.assert_array_equal(general.labels, model.predict(holes))


def test_the_quickstart_trees_are_walked_with_numpy_for_single_rows(model_dir: Path) -> None:
    from mlopsctl.models.artifact import load_model_dir
    from mlopsctl.serving.trees import compile_trees

    estimator = load_model_dir(model_dir).estimator
    booster = estimator.get_booster()
    iteration_range = estimator._get_iteration_range(None)

    def reference(matrix: np.ndarray) -> np.ndarray:
        return np.asarray(booster.inplace_predict(matrix, iteration_range=iteration_range))

    evaluate = compile_trees(
        booster, "binary:logistic", iteration_range, float("nan"), reference, 30
    )
    assert evaluate is not None  # so the single rows above went through it, and agreed


def test_smoke_loader(model_dir: Path, tmp_path: Path) -> None:
    import shutil

    from mlopsctl.serving.smoke import main

    assert main([str(model_dir)]) == 0
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    (broken / "model.ubj").write_bytes(b"junk")
    assert main([str(broken)]) == 1  # the digest no longer matches
