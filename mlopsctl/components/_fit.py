"""What train and tune share: choosing features, building the estimator and the pipeline.

The preprocessing is part of the fitted pipeline (and so of the saved model), so that serving
applies exactly what training did: numeric columns are imputed with the median and scaled,
categorical ones imputed with the most frequent value and one-hot encoded (categories unseen in
training become all zeros rather than an error).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlopsctl.errors import MlopsError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from mlopsctl.models.artifact import Feature

# JSON Schema pieces shared by the train and tune `with:` blocks.
ESTIMATOR_SCHEMA: dict[str, Any] = {
    # The shape ({class: ..., ...}) is checked by check_training, with clearer messages than a
    # oneOf schema gives.
    "type": ["object", "string"],
    "description": "the estimator: {class: import path, ...hyperparameters}, or just the path",
}
FEATURE_PARAMS: dict[str, Any] = {
    "target": {"type": "string", "minLength": 1, "description": "the column to predict"},
    "features": {
        "type": "array",
        "items": {"type": "string"},
        "minItems": 1,
        "uniqueItems": True,
        "description": "feature columns (default: every column but the target)",
    },
    "categorical": {
        "type": "array",
        "items": {"type": "string"},
        "uniqueItems": True,
        "description": "columns to one-hot encode (default: text, category and bool columns)",
    },
    "seed": {
        "type": "integer",
        "default": 0,
        "description": "random_state for estimators that take one and were not given one",
    },
}
LIBRARIES = ("scikit-learn", "xgboost", "skops", "numpy", "pandas", "pyarrow")
CODE_MODULES = (
    "mlopsctl.components._fit",
    "mlopsctl.components.frames",
    "mlopsctl.models.artifact",
    "mlopsctl.models.explain",
    "mlopsctl.models.outliers",
    "mlopsctl.models.profile",
)


def estimator_spec(params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(import path, hyperparameters) of the step's `estimator`."""
    spec = params.get("estimator")
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, dict) and isinstance(spec.get("class"), str):
        return spec["class"], {k: v for k, v in spec.items() if k != "class"}
    raise MlopsError(
        "estimator: give {class: <import path>, ...hyperparameters}",
        "e.g. estimator: {class: sklearn.ensemble.RandomForestClassifier, n_estimators: 100}",
    )


def check_training(params: dict[str, Any], project_root: Path) -> list[tuple[tuple[Any, ...], str]]:
    """The static checks train and tune share (no heavy import)."""
    from mlopsctl.models.artifact import check_import_path

    problems: list[tuple[tuple[Any, ...], str]] = []
    if not params.get("target"):
        problems.append((("target",), "target is required: the column to predict"))
    spec = params.get("estimator")
    if spec is None:
        problems.append(
            (("estimator",), "estimator is required, e.g. {class: xgboost.XGBClassifier}")
        )
    elif isinstance(spec, dict) and not isinstance(spec.get("class"), str):
        problems.append((("estimator", "class"), "estimator.class is required: an import path"))
    elif not isinstance(spec, (str, dict)):
        problems.append((("estimator",), "estimator must be {class: <import path>, ...}"))
    else:
        path = spec if isinstance(spec, str) else spec["class"]
        problem = check_import_path(path)
        if problem:
            problems.append(
                (("estimator", "class") if isinstance(spec, dict) else ("estimator",), problem)
            )
    target = params.get("target")
    for key in ("features", "categorical"):
        if target and target in (params.get(key) or []):
            problems.append(((key,), f"the target '{target}' cannot also be a feature"))
    return problems


def choose_features(
    frame: pd.DataFrame,
    target: str,
    features: list[str] | None,
    categorical: list[str] | None,
    log: Any = None,
) -> list[Feature]:
    """The signature: which columns feed the model, and how each is encoded."""
    import pandas as pd

    from mlopsctl.models.artifact import Feature

    _require(frame, [target], "target")
    if features:
        _require(frame, features, "features")
        names = list(features)
    else:
        names = [str(c) for c in frame.columns if c != target]
    if categorical:
        _require(frame, categorical, "categorical")
        outside = [c for c in categorical if c not in names]
        if outside:
            raise MlopsError(f"categorical: {', '.join(outside)} not among the features")

    chosen: list[Feature] = []
    skipped: list[str] = []
    for name in names:
        dtype = frame[name].dtype
        if categorical is not None:
            is_categorical = name in categorical
        else:
            is_categorical = (
                pd.api.types.is_bool_dtype(dtype)
                or isinstance(dtype, pd.CategoricalDtype)
                or pd.api.types.is_string_dtype(dtype)
                or pd.api.types.is_object_dtype(dtype)
            )
        if not is_categorical and not pd.api.types.is_numeric_dtype(dtype):
            if features:
                raise MlopsError(
                    f"features: column '{name}' has dtype {dtype}, which is neither numeric "
                    "nor categorical",
                    "convert it in a feature step, or list it under 'categorical'",
                )
            skipped.append(name)
            continue
        chosen.append(Feature(name, str(dtype), "categorical" if is_categorical else "numeric"))
    if skipped and log is not None:
        log(f"not used as features (neither numeric nor categorical): {', '.join(skipped)}")
    if not chosen:
        raise MlopsError("no feature columns left to train on", "list them under 'features'")
    return chosen


def make_estimator(
    class_path: str, hyperparameters: dict[str, Any], seed: int
) -> tuple[Any, dict[str, Any]]:
    """The unfitted estimator and the hyperparameters it was given (seed included)."""
    from mlopsctl.models.artifact import import_object

    cls = import_object(class_path)
    params = dict(hyperparameters)
    try:
        estimator = cls()
        accepted = estimator.get_params()
    except (TypeError, AttributeError) as exc:
        raise MlopsError(
            f"estimator class '{class_path}' is not a scikit-learn style estimator: {exc}"
        ) from None
    unknown = [p for p in params if p not in accepted]
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(accepted), n=1)
        hint = (
            f"did you mean '{close[0]}'?" if close else f"it takes: {', '.join(sorted(accepted))}"
        )
        raise MlopsError(f"estimator: {class_path} has no hyperparameter '{unknown[0]}'", hint)
    # Same inputs must give the same model: that is what makes the step cache honest.
    if "random_state" in accepted and "random_state" not in params:
        params["random_state"] = seed
    try:
        estimator.set_params(**params)
    except (TypeError, ValueError) as exc:
        raise MlopsError(f"estimator: {class_path} refused its hyperparameters: {exc}") from None
    return estimator, params


def task_of(estimator: Any, class_path: str) -> str:
    from sklearn.base import is_classifier, is_regressor

    if is_classifier(estimator):
        return "classification"
    if is_regressor(estimator):
        return "regression"
    raise MlopsError(
        f"estimator '{class_path}' is neither a classifier nor a regressor",
        "train and tune fit supervised models",
    )


def encode_target(y: pd.Series, task: str, target: str) -> tuple[np.ndarray, list[Any] | None]:
    """Training labels: class indices 0..k-1 with the sorted classes, or floats."""
    import numpy as np

    if task == "regression":
        try:
            return y.astype("float64").to_numpy(), None
        except (TypeError, ValueError):
            raise MlopsError(
                f"target '{target}' is not numeric, but the estimator is a regressor",
                "use a classifier, or a numeric target",
            ) from None
    classes, codes = np.unique(y.to_numpy(), return_inverse=True)
    if len(classes) < 2:
        raise MlopsError(
            f"target '{target}' has a single class ({classes[0]!r}) in the training data",
            "a classifier needs at least two classes",
        )
    return codes.astype("int64"), list(classes)


def drop_missing_target(frame: pd.DataFrame, target: str, log: Any) -> pd.DataFrame:
    missing = frame[target].isna()
    if missing.any():
        log(f"dropping {int(missing.sum())} row(s) without a target")
        frame = frame[~missing]
    if len(frame) == 0:
        raise MlopsError(f"no rows with a value for target '{target}'")
    return frame


def build_pipeline(estimator: Any, features: list[Feature]) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = [f.name for f in features if f.kind == "numeric"]
    categorical = [f.name for f in features if f.kind == "categorical"]
    parts: list[tuple[str, Any, list[str]]] = []
    if numeric:
        # keep_empty_features: a column empty in training must still give a column at serving.
        steps = [
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("scale", StandardScaler()),
        ]
        parts.append(("numeric", Pipeline(steps), numeric))
    if categorical:
        steps = [
            ("impute", SimpleImputer(strategy="most_frequent")),
            ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]
        parts.append(("categorical", Pipeline(steps), categorical))
    preprocess = ColumnTransformer(parts, remainder="drop")
    return Pipeline([("preprocess", preprocess), ("estimator", estimator)])


def fit_pipeline(pipeline: Any, X: pd.DataFrame, y: np.ndarray, class_path: str) -> Any:
    try:
        return pipeline.fit(X, y)
    except (ValueError, TypeError) as exc:
        detail = " ".join(str(exc).split())
        raise MlopsError(f"fitting {class_path} failed: {detail}") from None


def _require(frame: pd.DataFrame, columns: list[str], param: str) -> None:
    from mlopsctl.components.frames import require_columns

    require_columns(frame, columns, "training data", param)
