"""The prediction fast path: one float64 matrix in signature order straight into the estimator.

`LoadedModel.predict` builds a DataFrame, coerces each column and runs the fitted
ColumnTransformer: right for every model, but most of a millisecond per request. For the
preprocessing mlopsctl's train component writes for all-numeric data (median imputation and
standard scaling over every feature, in order) the same arithmetic is precompiled here as three
numpy operations, done in the same order and precision as scikit-learn does them, so the
results are bit-for-bit the same; the estimator is then called directly (an XGBoost booster
through its C prediction call on one thread, or, for the one to three rows of a typical
request, its trees walked with numpy (trees.py): the same float32 numbers in less than half the
time). Anything else (categorical features, other transformers, other objectives) takes
`LoadedModel`'s DataFrame path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlopsctl.serving.codecs import Signature
from mlopsctl.serving.logs import LogSchema

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from mlopsctl.models.artifact import LoadedModel

# XGBoost objectives whose raw `inplace_predict` output the fast path knows how to turn into
# labels and probabilities exactly as XGBClassifier does.
_XGB_BINARY = ("binary:logistic",)
_XGB_MULTI = ("multi:softprob",)


@dataclass
class Prediction:
    """One request's output: `labels` (class values or regression values), `proba` (rows of
    class probabilities, classifiers only) and `score` (the logged score column)."""

    labels: np.ndarray
    proba: np.ndarray | None
    score: np.ndarray | None


class Predictor:
    """A loaded model plus its precompiled fast path. Immutable once built: the server swaps
    whole Predictor objects, so a request keeps the one it started with."""

    def __init__(self, model: LoadedModel, name: str, version: int, lookup: Any = None) -> None:
        self.model = model
        self.name = name
        self.version = version
        self.features = list(model.features)
        self.names = [f.name for f in self.features]
        self.kinds = {f.name: f.kind for f in self.features}
        self.numeric = all(f.kind == "numeric" for f in self.features)
        self.signature = Signature(name, version, list(self.names), dict(self.kinds))
        self.task = model.task
        self.classes = model.classes
        self.has_proba = model.has_proba
        self.flavor = model.flavor
        self.log_schema = LogSchema(
            tuple(self.names),
            tuple(f.kind for f in self.features),
            self.task == "classification",
            self.has_proba,
        )
        # The model's outlier scorer, when model.json keeps the tables it needs (scores are
        # computed by the log writer, in batches, off the request path).
        self.outliers = _outlier_scorer(model)
        self._transform = _compile_transform(model) if self.numeric else None
        self._estimate = _compile_estimator(model) if self._transform is not None else None
        # A model trained on feature sets (mlopsctl.features.Lookup): requests carry the entity
        # keys and the request-time features, the rest is looked up; the log keeps all it used.
        self.lookup = lookup
        if lookup is not None:
            self.names, self.kinds = list(lookup.request_names), dict(lookup.request_kinds)
            self.numeric = all(kind == "numeric" for kind in self.kinds.values())
            self.signature = Signature(name, version, list(self.names), dict(self.kinds))
            self.log_schema = LogSchema(
                tuple(lookup.log_names),
                tuple(lookup.log_kinds),
                self.task == "classification",
                self.has_proba,
            )

    @property
    def fast(self) -> bool:
        return self._estimate is not None

    def predict_matrix(self, matrix: np.ndarray) -> Prediction:
        """Predict from a float64 matrix whose columns are the signature's features in order."""
        if self._estimate is None or self._transform is None:
            import pandas as pd

            return self.predict_frame(pd.DataFrame(matrix, columns=self.names))
        return self._estimate(self._transform(matrix))

    def predict_frame(self, frame: pd.DataFrame) -> Prediction:
        """The general path, through `LoadedModel` (any preprocessing, categorical features)."""
        labels = self.model.predict(frame)
        proba = self.model.predict_proba(frame) if self.has_proba else None
        return Prediction(labels, proba, _score(proba))


def _outlier_scorer(model: LoadedModel) -> Any:
    if not ((model.meta.get("outliers") or {}).get("features")):
        return None
    try:
        from mlopsctl.models.outliers import scorer_for
    except ImportError:  # pragma: no cover - an mlopsctl without outlier scores
        return None
    try:
        return scorer_for(model)
    except Exception:  # noqa: BLE001 - a score is extra: serve without it
        return None


def _score(proba: np.ndarray | None) -> np.ndarray | None:
    if proba is None:
        return None
    if proba.shape[1] == 2:
        return proba[:, 1]
    return proba.max(axis=1)


def _compile_transform(model: LoadedModel) -> Callable[[np.ndarray], np.ndarray] | None:
    """The preprocessing as plain numpy, or None when it is not one this module can reproduce
    exactly."""
    from mlopsctl.models.artifact import Passthrough

    pre = model.preprocess
    if isinstance(pre, Passthrough):
        return lambda matrix: matrix
    steps = getattr(pre, "steps", None)
    if not isinstance(steps, list) or len(steps) != 1:
        return None
    column_transformer = steps[0][1]
    if type(column_transformer).__name__ != "ColumnTransformer":
        return None
    if getattr(column_transformer, "sparse_output_", False):
        return None
    parts = [
        t for t in column_transformer.transformers_ if not (t[0] == "remainder" and t[1] == "drop")
    ]
    if len(parts) != 1:
        return None
    _, inner, columns = parts[0]
    if list(columns) != [f.name for f in model.features]:
        return None
    inner_steps = [s for _, s in getattr(inner, "steps", [("", inner)])]
    ops: list[Callable[[np.ndarray], np.ndarray]] = []
    for step in inner_steps:
        op = _compile_step(step)
        if op is None:
            return None
        ops.append(op)

    def transform(matrix: np.ndarray) -> np.ndarray:
        for op in ops:
            matrix = op(matrix)
        return matrix

    return transform


def _compile_step(step: Any) -> Callable[[np.ndarray], np.ndarray] | None:
    import numpy as np

    kind = type(step).__name__
    if step == "passthrough" or step is None:
        return lambda matrix: matrix
    if kind == "SimpleImputer":
        stats = np.asarray(step.statistics_, dtype="float64")
        missing = step.missing_values
        if (
            step.add_indicator
            or not (isinstance(missing, float) and np.isnan(missing))
            or np.isnan(stats).any()  # sklearn would drop such columns
        ):
            return None

        def impute(matrix: np.ndarray) -> np.ndarray:
            mask = np.isnan(matrix)
            if mask.any():
                matrix = np.where(mask, stats, matrix)
            return matrix

        return impute
    if kind == "StandardScaler":
        mean = step.mean_ if step.with_mean else None
        scale = step.scale_ if step.with_std else None

        def scale_op(matrix: np.ndarray) -> np.ndarray:
            # A fresh array: the caller's matrix is logged as sent, not scaled.
            out = matrix.copy() if mean is None else matrix - mean
            if scale is not None:
                out /= scale
            return out

        return scale_op
    return None


def _direct_booster(
    booster: Any,
    iteration_range: tuple[int, int],
    missing: float,
    inplace: Callable[[np.ndarray], np.ndarray],
    width: int,
) -> Callable[[np.ndarray], np.ndarray]:
    """`inplace` without most of its per-call cost, or `inplace` itself when that cannot be
    had. On one row, ``Booster.inplace_predict`` spends most of its time outside the trees: it
    makes a new proxy DMatrix in C (whose context reads the cgroup CPU quota from /sys on every
    call), JSON-encodes the array interface through several Python layers, and copies the
    output through generic helpers. Here the proxy is made once, the array interface is one
    string format, and the output is one copy; the result is checked against `inplace` on
    probe rows before it is used, and any surprise (another XGBoost version) falls back."""
    import ctypes
    import json
    import threading

    import numpy as np

    try:
        from xgboost.core import _LIB, _ProxyDMatrix, c_bst_ulong, make_jcargs

        proxy = _ProxyDMatrix()
        args = make_jcargs(
            type=0,
            training=False,
            iteration_begin=int(iteration_range[0]),
            iteration_end=int(iteration_range[1]),
            missing=missing,
            strict_shape=False,
            cache_id=0,
        )
        predict_dense = _LIB.XGBoosterPredictFromDense
        handle = booster.handle
    except (ImportError, AttributeError, TypeError):
        return inplace
    lock = threading.Lock()  # the proxy holds the array between calls

    def direct(matrix: np.ndarray) -> np.ndarray:
        matrix = np.ascontiguousarray(matrix, dtype="float64")
        rows, cols = matrix.shape
        interface = (
            f'{{"data": [{matrix.ctypes.data}, true], "shape": [{rows}, {cols}], '
            '"strides": null, "typestr": "<f8", "version": 3}'
        ).encode()
        shape = ctypes.POINTER(c_bst_ulong)()
        dims = c_bst_ulong()
        preds = ctypes.POINTER(ctypes.c_float)()
        with lock:
            status = predict_dense(
                handle,
                interface,
                args,
                proxy.handle,  # `proxy` must outlive this closure: it frees the handle
                ctypes.byref(shape),
                ctypes.byref(dims),
                ctypes.byref(preds),
            )
            if status != 0:
                return inplace(matrix)
            out_shape = tuple(int(shape[i]) for i in range(dims.value))
            size = 1
            for d in out_shape:
                size *= d
            out = np.ctypeslib.as_array(preds, shape=(size,)).copy().reshape(out_shape)
        return out

    try:
        probes = [
            np.zeros((1, width)),
            np.full((3, width), np.nan),
            np.arange(2.0 * width).reshape(2, width),
        ]
        for probe in probes:
            expected, got = inplace(probe), direct(probe)
            if expected.dtype != got.dtype or not np.array_equal(expected, got, equal_nan=True):
                return inplace
    except (OSError, ValueError, TypeError, json.JSONDecodeError):
        return inplace
    return direct


def _binary_proba(p: np.ndarray) -> np.ndarray:
    """`normalised_proba` of the float32 columns (1 - p, p), in fewer numpy calls: the same
    float64 rows, each divided by its sum (rows summing to 0, or NaN, are zeros)."""
    import numpy as np

    proba = np.empty((p.shape[0], 2), dtype="float64")
    proba[:, 0] = 1 - p
    proba[:, 1] = p
    total = proba[:, 0] + proba[:, 1]
    totals = total[:, None]
    if (total > 0).all():
        proba /= totals
        return proba
    return np.divide(proba, totals, out=np.zeros_like(proba), where=totals > 0)


def _with_numpy_trees(
    booster: Any,
    objective: str,
    iteration_range: tuple[int, int],
    missing: float,
    direct: Callable[[np.ndarray], np.ndarray],
    width: int,
) -> Callable[[np.ndarray], np.ndarray]:
    """``direct`` for large batches, and the trees walked with numpy (trees.py) for the few
    rows of a typical request, when that gives the same numbers for this model."""
    from mlopsctl.serving.trees import MAX_ROWS, compile_trees

    small = compile_trees(booster, objective, iteration_range, missing, direct, width)
    if small is None:
        return direct

    def raw(matrix: np.ndarray) -> np.ndarray:
        return small(matrix) if matrix.shape[0] <= MAX_ROWS else direct(matrix)

    return raw


def _compile_estimator(model: LoadedModel) -> Callable[[np.ndarray], Prediction] | None:
    import numpy as np

    from mlopsctl.models.artifact import normalised_proba

    estimator = model.estimator
    classes = model.classes
    if model.flavor == "xgboost":
        objective = str(getattr(estimator, "objective", "") or "")
        booster = estimator.get_booster()
        # One thread: the server runs one request at a time per process, and OpenMP's
        # thread pool costs more than it saves on a single row.
        booster.set_param({"nthread": 1})
        iteration_range = estimator._get_iteration_range(None)
        missing = estimator.missing

        def inplace(matrix: np.ndarray) -> np.ndarray:
            return np.asarray(
                booster.inplace_predict(
                    matrix,
                    iteration_range=iteration_range,
                    predict_type="value",
                    missing=missing,
                    validate_features=False,
                )
            )

        direct = _direct_booster(booster, iteration_range, missing, inplace, len(model.features))
        raw = _with_numpy_trees(
            booster, objective, iteration_range, missing, direct, len(model.features)
        )

        if model.task == "classification" and classes is not None:
            if objective in _XGB_BINARY:

                def binary(matrix: np.ndarray) -> Prediction:
                    p = raw(matrix)
                    proba = _binary_proba(p)
                    return Prediction(classes[(p > 0.5).view("int8")], proba, proba[:, 1])

                return binary
            if objective in _XGB_MULTI:

                def multi(matrix: np.ndarray) -> Prediction:
                    p = raw(matrix)
                    proba = normalised_proba(p)
                    return Prediction(classes[np.argmax(p, axis=1)], proba, proba.max(axis=1))

                return multi
            return None
        if model.task != "classification" and objective.startswith("reg:"):
            return lambda matrix: Prediction(raw(matrix).astype("float64").ravel(), None, None)
        return None

    if model.task == "classification" and classes is not None:
        has_proba = model.has_proba

        def classify(matrix: np.ndarray) -> Prediction:
            labels = classes[np.asarray(estimator.predict(matrix)).astype("int64").ravel()]
            if not has_proba:
                return Prediction(labels, None, None)
            proba = normalised_proba(estimator.predict_proba(matrix))
            return Prediction(labels, proba, _score(proba))

        return classify
    return lambda matrix: Prediction(
        np.asarray(estimator.predict(matrix)).astype("float64").ravel(), None, None
    )
