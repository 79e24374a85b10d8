"""train: fit an estimator (with its preprocessing) and save it as a model artifact.

The estimator is any scikit-learn compatible class given by import path. The saved model holds
the preprocessing too (see _fit.py), and its model.json the signature and the training baseline
profile (mlopsctl/models/artifact.py).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlopsctl.components import _fit
from mlopsctl.errors import MlopsError

if TYPE_CHECKING:
    from mlopsctl.components.base import StepContext

NAME = "train"
DESCRIPTION = "Fit an estimator with its preprocessing and save a model artifact"
INPUTS = {"train": "the training table (Parquet)"}
OUTPUTS = {"model": "dir"}
PARAMS: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["target", "estimator"],
    "properties": {**_fit.FEATURE_PARAMS, "estimator": _fit.ESTIMATOR_SCHEMA},
}
LIBRARIES = _fit.LIBRARIES
FILE_PARAMS: tuple[str, ...] = ()
CODE_MODULES = _fit.CODE_MODULES


def check(params: dict[str, Any], project_root: Path) -> list[tuple[tuple[Any, ...], str]]:
    return _fit.check_training(params, project_root)


def run(ctx: StepContext) -> None:
    from mlopsctl.components.frames import read_table
    from mlopsctl.models.artifact import prepare_features, save_model

    params = ctx.params
    for path, message in check(params, ctx.project_root):
        raise MlopsError(f"{'.'.join(map(str, path))}: {message}")
    target = str(params["target"])
    class_path, hyperparameters = _fit.estimator_spec(params)

    frame = read_table(ctx.inputs["train"], "training data")
    features = _fit.choose_features(
        frame, target, params.get("features"), params.get("categorical"), ctx.log
    )
    frame = _fit.drop_missing_target(frame, target, ctx.log)
    estimator, used = _fit.make_estimator(class_path, hyperparameters, int(params.get("seed", 0)))
    task = _fit.task_of(estimator, class_path)
    y, classes = _fit.encode_target(frame[target], task, target)
    X = prepare_features(frame, features)

    pipeline = _fit.build_pipeline(estimator, features)
    started = time.perf_counter()
    _fit.fit_pipeline(pipeline, X, y, class_path)
    fit_seconds = time.perf_counter() - started

    meta = save_model(
        pipeline,
        ctx.outputs["model"],
        estimator_class=class_path,
        params=used,
        task=task,
        target=target,
        features=features,
        classes=classes,
        frame=frame,
    )
    score_name = "train_accuracy" if task == "classification" else "train_r2"
    ctx.metrics.update(
        {
            "train_rows": float(len(frame)),
            "fit_seconds": round(fit_seconds, 4),
            score_name: float(pipeline.score(X, y)),
        }
    )
    ctx.info.update(
        estimator_class=class_path,
        flavor=meta["flavor"],
        task=task,
        target=target,
        features=[f.as_dict() for f in features],
        classes=meta.get("classes"),
    )
