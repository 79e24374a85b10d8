"""Per-row feature contributions: how much each input feature moved one prediction away from the
model's expected output, so that the contributions and the bias of a row add up to the model's
raw output for that row.

    contributions(model, frame) -> (values [rows, features + 1], names = features + ["bias"])
    explain(model, frame)       -> Explanation (the same, plus what the sum is and which class)
    raw_output(model, frame)    -> the output the contributions add up to, computed on its own

``model`` is a ``LoadedModel`` (mlopsctl/models/artifact.py, what ``registry.load_model``
returns); ``frame`` holds the signature's features. The preprocessing saved with the model
(imputing, scaling, one-hot encoding) is applied exactly as ``predict`` applies it, the
estimator is explained on the transformed columns, and the columns are mapped back to the input
features: the one-hot columns of a categorical feature are summed into that feature.

What the sum is (``Explanation.output``):

- XGBoost: the raw margin (``output_margin``), from the booster's own ``pred_contribs`` (exact
  TreeSHAP): log-odds of ``classes[1]`` for a binary classifier, the predicted class's score
  before the softmax for a multiclass one, the prediction for ``reg:squarederror`` and the like.
- scikit-learn trees (DecisionTree, ExtraTree, RandomForest, ExtraTrees, GradientBoosting):
  decision-path attribution (Saabas): walking from the root to the leaf, each split's feature
  gets the change of the node's expected output, where a node's expected output is the
  training-cover-weighted mean of the leaves below it (the expectation path-dependent TreeSHAP
  uses). This is not exact TreeSHAP (which also averages over the orders features enter), but
  it is additive in the same way, runs as one sparse product and is exact for the sum. The
  output is the probability of the explained class for forests and trees, the decision function
  for gradient-boosted classifiers (log-odds when binary, the class's score before the softmax
  when multiclass: "margin"), the prediction for regressors.
- scikit-learn linear models: ``coef × (x − mean)`` on the transformed features, where ``mean``
  is the transformed training mean stored in model.json at training time (models trained before
  that: zero, so the bias is the intercept); the output is the decision function (log-odds for
  binary logistic regression, the class's score when multiclass) or the prediction.

Classifiers: a binary classifier is explained for its second class (``classes[1]``, the class
``score`` and ``proba_<class>`` are about); a multiclass one for each row's predicted class
(``Explanation.explained``).

Heavy libraries are imported inside functions.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlopsctl.errors import UsageError
from mlopsctl.models import outliers
from mlopsctl.models.artifact import ModelError, Passthrough

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from mlopsctl.models.artifact import LoadedModel

BIAS = "bias"
# Column names of contributions in tables and prediction logs: contrib.<feature>, contrib.bias.
CONTRIB_PREFIX = "contrib."
# How many training rows the attribution baseline (mean |contribution| per feature) is computed on.
BASELINE_ROWS = 2000

# Batches up to this many rows are explained on one thread (XGBoost).
SMALL_BATCH = 64
# Entries a tree ensemble's per-leaf path table may hold (about 16 bytes each); beyond it,
# decision paths through a per-node table (one entry per node and output).
LEAF_TABLE_LIMIT = 8_000_000

# Per loaded model, worked out on first use: tree tables, column owners, 1-thread boosters.
_CACHE: weakref.WeakKeyDictionary[Any, list[_Forest]] = weakref.WeakKeyDictionary()
_OWNERS: weakref.WeakKeyDictionary[Any, np.ndarray] = weakref.WeakKeyDictionary()
_SINGLE_THREADED: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_COMPILED: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()

_TREE_NAMES = frozenset(
    {"DecisionTreeClassifier", "DecisionTreeRegressor", "ExtraTreeClassifier", "ExtraTreeRegressor"}
)
_FOREST_NAMES = frozenset(
    {
        "RandomForestClassifier",
        "RandomForestRegressor",
        "ExtraTreesClassifier",
        "ExtraTreesRegressor",
    }
)
_BOOSTING_NAMES = frozenset({"GradientBoostingClassifier", "GradientBoostingRegressor"})
_LINEAR_EXTRA = frozenset({"LinearSVC", "LinearSVR"})


@dataclass
class Explanation:
    """Contributions of one batch of rows.

    ``values``: float64 [rows, features + 1], the bias (expected output) last, so that each
    row sums to the model's raw output; ``names``: the features then "bias"; ``output``: what
    that sum is ("log-odds", "margin", "probability", "value"); ``explained``: per row, the
    class whose output is explained (classifiers; None for regressors); ``method``:
    "treeshap", "saabas" or "linear"."""

    values: np.ndarray
    names: list[str]
    output: str
    explained: np.ndarray | None
    method: str

    @property
    def total(self) -> np.ndarray:
        """Each row's sum: the model's raw output."""
        return self.values.sum(axis=1)

    def columns(self) -> list[str]:
        """The table and log column names, ``contrib.<name>``."""
        return [f"{CONTRIB_PREFIX}{name}" for name in self.names]


def contributions(
    model: LoadedModel, frame: pd.DataFrame, *, one_thread: bool = False
) -> tuple[np.ndarray, list[str]]:
    """Per-row feature contributions [rows, features + 1] (bias last) and their names."""
    explanation = explain(model, frame, one_thread=one_thread)
    return explanation.values, explanation.names


def explain(
    model: LoadedModel,
    frame: pd.DataFrame | None,
    *,
    transformed: Any = None,
    one_thread: bool = False,
) -> Explanation:
    """Contributions of every row of ``frame`` (see the module docstring). A caller that has
    already run the model's preprocessing on the rows (a server's compiled fast path, which
    gives the same numbers) may pass that matrix as ``transformed`` instead of ``frame``.
    ``one_thread``: explain a batch of any size on one thread (XGBoost), as a server's log
    writer does, so as not to take the cores that answer requests; the same numbers."""
    import numpy as np

    method = method_of(model)
    if transformed is None:
        if frame is None:
            raise ValueError("explain() needs the rows: a frame or the transformed matrix")
        transformed = _transform(model, frame)
    matrix = _dense(transformed)
    owners = _column_owners(model, matrix.shape[1])
    if method == "treeshap":
        wide, bias, output, pick = _xgboost(model, matrix, one_thread)
    elif method == "saabas":
        wide, bias, output, pick = _trees(model, matrix)
    else:
        wide, bias, output, pick = _linear(model, matrix)
    names = [f.name for f in model.features]
    values = np.empty((matrix.shape[0], len(names) + 1))
    fold = np.zeros((owners.size, len(names)))
    fold[np.arange(owners.size), owners] = 1.0  # transformed columns summed into their feature
    values[:, :-1] = wide @ fold
    values[:, -1] = bias
    explained = None
    if model.task == "classification" and model.classes is not None and pick is not None:
        explained = model.classes[pick]
    return Explanation(values, [*names, BIAS], output, explained, method)


def method_of(model: LoadedModel) -> str:
    """How ``model`` is explained: "treeshap" (XGBoost), "saabas" (scikit-learn trees) or
    "linear"; ModelError for any other estimator."""
    estimator = model.estimator
    name = type(estimator).__name__
    if model.flavor == "xgboost" or type(estimator).__module__.split(".")[0] == "xgboost":
        return "treeshap"
    if name in _TREE_NAMES or name in _FOREST_NAMES or name in _BOOSTING_NAMES:
        return "saabas"
    module = type(estimator).__module__
    if (module.startswith("sklearn.linear_model") or name in _LINEAR_EXTRA) and hasattr(
        estimator, "coef_"
    ):
        return "linear"
    raise ModelError(
        f"cannot explain a {name}: contributions are computed for XGBoost, scikit-learn's "
        "decision trees, random forests, extra trees, gradient boosting and linear models",
        "train one of those to get explanations",
    )


def raw_output(model: LoadedModel, frame: pd.DataFrame) -> np.ndarray:
    """The model output the contributions of each row add up to, computed by the estimator's
    own prediction functions (for tests and checks): see ``Explanation.output``."""
    import numpy as np

    method = method_of(model)
    matrix = _dense(model.transform(frame))
    estimator = model.estimator
    rows = np.arange(matrix.shape[0])
    if method == "treeshap":
        import xgboost

        booster = estimator.get_booster()
        data = xgboost.DMatrix(matrix, missing=_missing(estimator))
        margin = np.asarray(
            booster.predict(data, output_margin=True, iteration_range=_iterations(estimator)),
            dtype="float64",
        )
        return margin if margin.ndim == 1 else margin[rows, margin.argmax(axis=1)]
    classifier = model.task == "classification"
    name = type(estimator).__name__
    if method == "linear" or name in _BOOSTING_NAMES:
        if not classifier:
            return np.asarray(estimator.predict(matrix), dtype="float64").ravel()
        scores = np.asarray(estimator.decision_function(matrix), dtype="float64")
        return scores if scores.ndim == 1 else scores[rows, scores.argmax(axis=1)]
    if not classifier:
        return np.asarray(estimator.predict(matrix), dtype="float64").ravel()
    proba = np.asarray(estimator.predict_proba(matrix), dtype="float64")
    if proba.shape[1] == 2:
        return proba[:, 1]
    return proba[rows, proba.argmax(axis=1)]


def explain_table(model: LoadedModel, frame: pd.DataFrame) -> pd.DataFrame:
    """One row per input row: ``prediction``, ``explained`` (the class explained, classifiers),
    ``output`` (the sum of the contributions), ``outlier_score`` (the row's outlier score,
    mlopsctl/models/outliers.py) and ``contrib.<feature>`` ... ``contrib.bias``; what
    ``mlopsctl models explain`` writes as CSV."""
    import pandas as pd

    explanation, predictions, scores = _batch(model, frame)
    table: dict[str, Any] = {"prediction": predictions}
    if explanation.explained is not None:
        table["explained"] = explanation.explained
    table["output"] = explanation.total
    table[outliers.LOG_COLUMN] = scores
    for column, values in zip(explanation.columns(), explanation.values.T, strict=True):
        table[column] = values
    return pd.DataFrame(table)


def explain_json(model: LoadedModel, frame: pd.DataFrame) -> dict[str, Any]:
    """The same as JSON: {"method", "output", "features", "outlier_threshold", "rows": [{
    "prediction", "explained" (classifiers), "output", "outlier_score", "contributions": {feature:
    value, ..., "bias": value}}]}; what ``mlopsctl models explain --json`` prints."""
    explanation, predictions, scores = _batch(model, frame)
    rows = []
    for i, values in enumerate(explanation.values.tolist()):
        row: dict[str, Any] = {"prediction": _plain(predictions[i])}
        if explanation.explained is not None:
            row["explained"] = _plain(explanation.explained[i])
        row["output"] = float(sum(values))
        row[outliers.LOG_COLUMN] = float(scores[i])
        row["contributions"] = dict(zip(explanation.names, values, strict=True))
        rows.append(row)
    return {
        "method": explanation.method,
        "output": explanation.output,
        "features": explanation.names[:-1],
        "outlier_threshold": outliers.scorer_for(model).threshold,
        "rows": rows,
    }


def _batch(model: LoadedModel, frame: pd.DataFrame) -> tuple[Explanation, np.ndarray, np.ndarray]:
    if frame.empty:
        raise UsageError("the data has no rows to explain", "give a table with at least one row")
    explanation = explain(model, frame)
    return explanation, model.predict(frame), outliers.outlier_scores(model, frame)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def attribution_baseline(
    model: LoadedModel, frame: pd.DataFrame, rows: int = BASELINE_ROWS
) -> dict[str, Any] | None:
    """What model.json keeps about explanations, computed on the training rows at training time:
    {"method", "output", "rows", "mean_abs": {feature: mean |contribution|}, "expected": the
    mean bias} and, for linear models, "transformed_mean" (the mean of every transformed
    column, the reference point of their contributions; set on ``model.meta`` too). The mean
    |contribution| is the baseline of attribution drift (mlopsctl/monitor). None when the
    model cannot be explained."""
    import numpy as np

    try:
        method = method_of(model)
    except ModelError:
        return None
    out: dict[str, Any] = {"method": method}
    try:
        if method == "linear":
            matrix = _dense(model.transform(frame))
            mean = np.nanmean(matrix, axis=0) if len(matrix) else np.zeros(matrix.shape[1])
            out["transformed_mean"] = [float(v) for v in np.nan_to_num(mean)]
            model.meta.setdefault("explain", {})["transformed_mean"] = out["transformed_mean"]
        if len(frame) > rows:
            # Evenly spaced rows: the same training data always give the same baseline.
            frame = frame.iloc[np.linspace(0, len(frame) - 1, rows).round().astype(int)]
        explanation = explain(model, frame)
    except (ModelError, ValueError, TypeError, AttributeError, IndexError) as exc:
        return {"method": method, "error": " ".join(str(exc).split())[:300]}
    magnitude = np.abs(explanation.values[:, :-1]).mean(axis=0)
    out.update(
        output=explanation.output,
        rows=int(explanation.values.shape[0]),
        mean_abs={
            name: float(v) for name, v in zip(explanation.names[:-1], magnitude, strict=True)
        },
        expected=float(explanation.values[:, -1].mean()),
    )
    return out


# -- the transformed columns and their features ----------------------------------------------


def _transform(model: LoadedModel, frame: pd.DataFrame) -> Any:
    """``model.transform(frame)``; for a few rows of a model whose preprocessing is
    mlopsctl's numeric one (median imputing, standard scaling), the same arithmetic in two numpy
    operations, checked to give the very same numbers when first compiled (pandas and the
    ColumnTransformer cost several milliseconds a call, most of a one-row explanation)."""
    import numpy as np

    if len(frame) <= SMALL_BATCH:
        fast = _compiled(model)
        if fast is not None:
            names = [f.name for f in model.features]
            try:
                matrix = frame[names].to_numpy(dtype="float64", na_value=np.nan)
            except (KeyError, TypeError, ValueError):
                matrix = None  # the general path says what is wrong
            if matrix is not None:
                return fast(matrix)
    return model.transform(frame)


def _compiled(model: LoadedModel) -> Any:
    """The compiled preprocessing of ``model`` (once per model), or None."""
    key = model.preprocess
    try:
        with _CACHE_LOCK:
            if key in _COMPILED:
                return _COMPILED[key]
    except TypeError:
        return None
    fast = _compile(model)
    with _CACHE_LOCK:
        _COMPILED[key] = fast
    return fast


def _compile(model: LoadedModel) -> Any:
    import numpy as np

    names = [f.name for f in model.features]
    if any(f.kind != "numeric" for f in model.features):
        return None
    steps = getattr(model.preprocess, "steps", None)
    if not isinstance(steps, list) or len(steps) != 1:
        return None
    transformer = steps[0][1]
    if type(transformer).__name__ != "ColumnTransformer":
        return None
    parts = [t for t in transformer.transformers_ if not (isinstance(t[1], str) and t[1] == "drop")]
    if len(parts) != 1 or list(parts[0][2]) != names:
        return None
    inner = parts[0][1]
    chain = [s for _, s in inner.steps] if hasattr(inner, "steps") else [inner]
    if [type(s).__name__ for s in chain] != ["SimpleImputer", "StandardScaler"]:
        return None
    imputer, scaler = chain
    fill = np.asarray(imputer.statistics_, dtype="float64")
    missing = imputer.missing_values
    if imputer.add_indicator or not (isinstance(missing, float) and missing != missing):
        return None
    if fill.shape != (len(names),) or not np.isfinite(fill).all():
        return None
    mean = np.asarray(scaler.mean_, dtype="float64") if scaler.with_mean else None
    scale = np.asarray(scaler.scale_, dtype="float64") if scaler.with_std else None

    def transform(matrix: np.ndarray) -> np.ndarray:
        out = np.where(np.isnan(matrix), fill, matrix)
        if mean is not None:
            out = out - mean
        if scale is not None:
            out = out / scale
        return out

    import pandas as pd

    width = len(names)
    probes = [
        np.zeros((1, width)),
        np.full((2, width), np.nan),
        np.linspace(-1e3, 1e3, 3 * width).reshape(3, width),
        np.vstack([fill, fill * 1.5 + 0.1]),
    ]
    for probe in probes:
        expected = _dense(model.transform(pd.DataFrame(probe, columns=names)))
        if not np.array_equal(transform(probe), expected, equal_nan=True):
            return None
    return transform


def _dense(matrix: Any) -> np.ndarray:
    import numpy as np

    if hasattr(matrix, "toarray"):
        matrix = matrix.toarray()
    return np.asarray(matrix, dtype="float64")


def _column_owners(model: LoadedModel, width: int) -> np.ndarray:
    """For each transformed column, the index of the input feature it comes from (worked out
    once per loaded preprocessing)."""
    names = [f.name for f in model.features]
    try:
        with _CACHE_LOCK:
            owners = _OWNERS.get(model.preprocess)
    except TypeError:  # not weakly referenceable: work it out each time
        owners = None
    if owners is None:
        owners = _trace_owners(model, names)
        try:
            with _CACHE_LOCK:
                _OWNERS[model.preprocess] = owners
        except TypeError:
            pass
    if owners.size != width:
        raise ModelError(
            f"cannot map the model's {width} transformed columns back to its "
            f"{len(names)} features (found {owners.size})",
            "explanations need mlopsctl's own preprocessing (impute, scale, one-hot)",
        )
    return owners


def _trace_owners(model: LoadedModel, names: list[str]) -> np.ndarray:
    import numpy as np

    pre = model.preprocess
    if isinstance(pre, Passthrough):
        owners = np.arange(len(names))
    else:
        steps = [s for _, s in pre.steps] if hasattr(pre, "steps") else [pre]
        first, rest = steps[0], steps[1:]
        if type(first).__name__ == "ColumnTransformer":
            owners = _column_transformer_owners(first, names)
        else:
            found = _pipeline_owners([first], list(range(len(names))))
            if found is None:
                raise _cannot_map(first)
            owners = found
        for step in rest:  # later steps must keep one output per column
            if _one_to_one(step) is not True:
                raise _cannot_map(step)
    return owners


def _column_transformer_owners(transformer: Any, names: list[str]) -> np.ndarray:
    import numpy as np

    position = {name: i for i, name in enumerate(names)}
    owners: list[np.ndarray] = []
    for _, inner, columns in transformer.transformers_:
        if isinstance(inner, str) and inner == "drop":
            continue
        indices = _column_indices(columns, names, position)
        if not indices:
            continue
        if isinstance(inner, str) and inner == "passthrough":
            owners.append(np.asarray(indices))
            continue
        steps = [s for _, s in inner.steps] if hasattr(inner, "steps") else [inner]
        found = _pipeline_owners(steps, indices)
        if found is None:
            raise _cannot_map(inner)
        owners.append(found)
    return np.concatenate(owners) if owners else np.zeros(0, dtype=int)


def _column_indices(columns: Any, names: list[str], position: dict[str, int]) -> list[int]:
    import numpy as np

    if isinstance(columns, slice):
        return list(range(len(names)))[columns]
    items = list(columns) if not isinstance(columns, str) else [columns]
    if items and all(isinstance(c, (bool, np.bool_)) for c in items):
        return [i for i, keep in enumerate(items) if keep]
    out = []
    for column in items:
        if isinstance(column, (int, np.integer)):
            out.append(int(column))
        elif column in position:
            out.append(position[column])
        else:
            raise ModelError(f"the preprocessing uses column {column!r}, not a model feature")
    return out


def _pipeline_owners(steps: list[Any], indices: list[int]) -> np.ndarray | None:
    """Owners of the output columns of a chain of transformers fed the features ``indices``:
    one-hot encoders widen a feature into its categories, imputers may drop empty columns,
    anything else must keep one output per input. None when a step is none of these."""
    import numpy as np

    owners = np.asarray(indices)
    for step in steps:
        kind = type(step).__name__
        if (isinstance(step, str) and step == "passthrough") or step is None:
            continue
        if kind == "SimpleImputer":
            if getattr(step, "add_indicator", False):
                return None
            statistics = np.asarray(step.statistics_, dtype=object)
            empty = np.array([_is_nan(v) for v in statistics], dtype=bool)
            if empty.size == owners.size and not getattr(step, "keep_empty_features", False):
                owners = owners[~empty]
            continue
        if kind == "OneHotEncoder":
            widths = _onehot_widths(step)
            if widths is None or len(widths) != owners.size:
                return None
            owners = np.repeat(owners, widths)
            continue
        if _one_to_one(step) is not True:
            return None
    return owners


def _one_to_one(step: Any) -> bool | None:
    """Whether a fitted transformer gives one output column per input column (None: unknown)."""
    if (isinstance(step, str) and step == "passthrough") or step is None:
        return True
    if type(step).__name__ in (
        "StandardScaler",
        "MinMaxScaler",
        "MaxAbsScaler",
        "RobustScaler",
        "FunctionTransformer",
        "PowerTransformer",
        "QuantileTransformer",
        "Normalizer",
    ):
        return True
    try:
        return len(step.get_feature_names_out()) == int(step.n_features_in_)
    except (AttributeError, TypeError, ValueError):
        return None


def _onehot_widths(encoder: Any) -> list[int] | None:
    categories = getattr(encoder, "categories_", None)
    if categories is None:
        return None
    widths = [len(c) for c in categories]
    infrequent = getattr(encoder, "infrequent_categories_", None)
    if infrequent is not None:
        for i, rare in enumerate(infrequent):
            if rare is not None and len(rare):
                widths[i] -= len(rare) - 1
    drop = getattr(encoder, "drop_idx_", None)
    if drop is not None:
        for i, index in enumerate(drop):
            if index is not None:
                widths[i] -= 1
    try:
        if sum(widths) != len(encoder.get_feature_names_out()):
            return None
    except (AttributeError, TypeError, ValueError):
        return None
    return widths


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and value != value


def _cannot_map(step: Any) -> ModelError:
    return ModelError(
        f"cannot explain through a {type(step).__name__} in the preprocessing: its output "
        "columns cannot be traced back to the input features",
        "explanations need mlopsctl's own preprocessing (impute, scale, one-hot)",
    )


# -- XGBoost ----------------------------------------------------------------------------------


def _missing(estimator: Any) -> float:
    missing = getattr(estimator, "missing", None)
    return float("nan") if missing is None else float(missing)


def _iterations(estimator: Any) -> tuple[int, int]:
    """The trees ``predict`` uses: up to the best iteration when early stopping kept one."""
    try:
        best = estimator.best_iteration
    except AttributeError:
        return (0, 0)
    return (0, int(best) + 1) if best is not None else (0, 0)


def _booster(estimator: Any, rows: int, one_thread: bool = False) -> Any:
    """The booster to explain ``rows`` rows with: for a few rows (or ``one_thread``) a
    single-threaded copy (made once per model), since OpenMP's thread pool costs more than it
    saves on one row and waits for busy cores; the model's own booster, left as it is, for
    batches."""
    booster = estimator.get_booster()
    if rows > SMALL_BATCH and not one_thread:
        return booster
    with _CACHE_LOCK:
        single = _SINGLE_THREADED.get(estimator)
    if single is None:
        single = booster.copy()
        single.set_param({"nthread": 1})
        with _CACHE_LOCK:
            _SINGLE_THREADED[estimator] = single
    return single


_XGB_OUTPUTS = {"binary:logistic": "log-odds", "binary:logitraw": "log-odds"}


def _xgboost(
    model: LoadedModel, matrix: np.ndarray, one_thread: bool = False
) -> tuple[np.ndarray, np.ndarray, str, np.ndarray | None]:
    import numpy as np
    import xgboost

    estimator = model.estimator
    booster = _booster(estimator, matrix.shape[0], one_thread)
    data = xgboost.DMatrix(matrix, missing=_missing(estimator), nthread=1)
    values = np.asarray(
        booster.predict(data, pred_contribs=True, iteration_range=_iterations(estimator)),
        dtype="float64",
    )
    objective = str(getattr(estimator, "objective", "") or "")
    identity = objective.startswith("reg:") and objective in (
        "reg:squarederror",
        "reg:absoluteerror",
        "reg:pseudohubererror",
        "reg:quantileerror",
    )
    output = _XGB_OUTPUTS.get(objective, "value" if identity else "margin")
    pick: np.ndarray | None = None
    if values.ndim == 3:  # multiclass: [rows, classes, columns + 1]
        pick = values.sum(axis=2).argmax(axis=1)
        values = values[np.arange(values.shape[0]), pick]
    elif model.task == "classification":
        pick = np.ones(values.shape[0], dtype="int64")
    return values[:, :-1], values[:, -1], output, pick


# -- scikit-learn trees -----------------------------------------------------------------------


@dataclass
class _Forest:
    """Precomputed attribution of a group of trees (a forest, one tree, or GradientBoosting's
    trees of one class): ``table`` [all nodes, outputs * width] (sparse) holds, in the row of
    each leaf, what the path from its tree's root to it adds to each transformed column (the
    change of expected output at each split, attributed to the split's column), columns
    ``k * width + j`` for output k; ``offsets`` place each tree's node ids in the rows; ``bias``
    [outputs] is the sum of the roots' expected outputs. For forests too large for that, each
    node's row holds the change entering it, and a row's decision path sums them."""

    trees: list[Any]
    offsets: np.ndarray
    table: Any
    bias: np.ndarray
    outputs: int
    width: int
    by_leaf: bool = True  # False: the rows are nodes, reached through decision paths


def _tree_tables(tree: Any, classifier: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(node expectations [nodes, outputs], parent [nodes], depth [nodes]) of one fitted tree."""
    import numpy as np

    t = tree.tree_
    if t.n_outputs != 1:
        raise ModelError("cannot explain a multi-output tree model")
    left, right = t.children_left, t.children_right
    value = np.asarray(t.value[:, 0, :], dtype="float64")
    if classifier:
        totals = value.sum(axis=1, keepdims=True)
        value = np.divide(value, totals, out=np.zeros_like(value), where=totals > 0)
    n = left.size
    parent = np.full(n, -1)
    internal = np.flatnonzero(left >= 0)
    parent[left[internal]] = internal
    parent[right[internal]] = internal
    depth = np.zeros(n, dtype=int)
    level, d = np.array([0]), 0
    while level.size:
        depth[level] = d
        inner = level[left[level] >= 0]
        level = np.concatenate([left[inner], right[inner]])
        d += 1
    weight = np.asarray(t.weighted_n_node_samples, dtype="float64")
    expected = value.copy()
    for d in range(int(depth.max()) - 1, -1, -1):  # leaves up: cover-weighted means
        nodes = internal[depth[internal] == d]
        lw, rw = weight[left[nodes]][:, None], weight[right[nodes]][:, None]
        total = np.maximum(lw + rw, 1e-300)
        expected[nodes] = (lw * expected[left[nodes]] + rw * expected[right[nodes]]) / total
    return expected, parent, depth


def _leaf_table(trees: list[Any], classifier: bool, scale: float, width: int) -> _Forest:
    """The _Forest of ``trees``: each leaf's path walked up to the root, all leaves of a tree
    one level at a time. Deep, wide forests (whose leaf table would hold more than
    ``LEAF_TABLE_LIMIT`` entries) get a table of nodes instead, read through decision paths."""
    import numpy as np
    import scipy.sparse as sp

    tables = [_tree_tables(tree, classifier) for tree in trees]
    outputs = tables[0][0].shape[1]
    size = sum(
        int(depth[tree.tree_.children_left < 0].sum())
        for tree, (_, _, depth) in zip(trees, tables, strict=True)
    )
    by_leaf = size * outputs <= LEAF_TABLE_LIMIT
    rows: list[np.ndarray] = []
    columns: list[np.ndarray] = []
    values: list[np.ndarray] = []
    offsets = []
    bias: np.ndarray | None = None
    offset = 0
    for tree, (expected, parent, _) in zip(trees, tables, strict=True):
        split = tree.tree_.feature
        if not by_leaf:  # each node: the change entering it, on its parent's split column
            nodes = np.flatnonzero(parent >= 0)
            change = (expected[nodes] - expected[parent[nodes]]) * scale
            for k in range(outputs):
                rows.append(offset + nodes)
                columns.append(k * width + split[parent[nodes]])
                values.append(change[:, k])
        leaves = np.flatnonzero(tree.tree_.children_left < 0)
        node = leaves.copy()
        while by_leaf:
            up = parent[node]
            moving = up >= 0
            if not moving.any():
                break
            below, above = node[moving], up[moving]
            change = (expected[below] - expected[above]) * scale  # [n, outputs]
            for k in range(outputs):
                rows.append(offset + leaves[moving])
                columns.append(k * width + split[above])
                values.append(change[:, k])
            node = np.where(moving, up, node)
        root = expected[0] * scale
        bias = root if bias is None else bias + root
        offsets.append(offset)
        offset += parent.size
    shape = (offset, outputs * width)
    if values:  # the same (row, column) pairs summed: a feature split on twice along a path
        entries = (np.concatenate(values), (np.concatenate(rows), np.concatenate(columns)))
        table = sp.csr_matrix(entries, shape=shape)
    else:  # trees that never split
        table = sp.csr_matrix(shape)
    assert bias is not None
    return _Forest(trees, np.asarray(offsets), table, np.asarray(bias), outputs, width, by_leaf)


def _forest_tables(model: LoadedModel) -> list[_Forest]:
    import numpy as np

    estimator = model.estimator
    with _CACHE_LOCK:
        cached = _CACHE.get(estimator)
    if cached is not None:
        return cached
    name = type(estimator).__name__
    classifier = model.task == "classification" and name not in _BOOSTING_NAMES
    if name in _BOOSTING_NAMES:
        grid = np.asarray(estimator.estimators_)
        groups = [list(grid[:, k]) for k in range(grid.shape[1])]
        scale = float(estimator.learning_rate)
    elif name in _FOREST_NAMES:
        groups = [list(estimator.estimators_)]
        scale = 1.0 / len(groups[0])
    else:
        groups = [[estimator]]
        scale = 1.0
    width = int(estimator.n_features_in_)
    forests = [_leaf_table(trees, classifier, scale, width) for trees in groups]
    with _CACHE_LOCK:
        _CACHE[estimator] = forests
    return forests


def _trees(
    model: LoadedModel, matrix: np.ndarray
) -> tuple[np.ndarray, np.ndarray, str, np.ndarray | None]:
    import numpy as np
    import scipy.sparse as sp

    estimator = model.estimator
    name = type(estimator).__name__
    classifier = model.task == "classification"
    rows = matrix.shape[0]
    width = matrix.shape[1]
    forests = _forest_tables(model)
    inputs = np.ascontiguousarray(matrix, dtype="float32")
    per_group = []
    for forest in forests:
        count = len(forest.trees)
        if forest.by_leaf:
            leaves = np.empty((rows, count), dtype=np.int64)
            for t, tree in enumerate(forest.trees):
                leaves[:, t] = tree.tree_.apply(inputs)
            leaves += forest.offsets
            reached = sp.csr_matrix(
                (np.ones(rows * count), leaves.ravel(), np.arange(0, rows * count + 1, count)),
                shape=(rows, forest.table.shape[0]),
            )
        else:
            reached = sp.hstack(
                [tree.tree_.decision_path(inputs) for tree in forest.trees], format="csr"
            ).astype("float64")
        summed = np.asarray((reached @ forest.table).todense()).reshape(rows, forest.outputs, width)
        per_group.append((summed.transpose(1, 0, 2), forest.bias))
    index = np.arange(rows)
    if name in _BOOSTING_NAMES:
        # One group per class (one for binary and regression); the bias takes the initial
        # estimate, so each row sums to the decision function exactly.
        wide_all = np.stack([w[0] for w, _ in per_group])  # [groups, rows, width]
        if classifier:
            scores = np.asarray(estimator.decision_function(matrix), dtype="float64")
        else:
            scores = np.asarray(estimator.predict(matrix), dtype="float64")
        output = "log-odds" if classifier else "value"
        if scores.ndim == 2:
            pick = scores.argmax(axis=1)
            wide = wide_all[pick, index]
            total = scores[index, pick]
            output = "margin"
        else:
            pick = np.ones(rows, dtype="int64") if classifier else None
            wide, total = wide_all[0], scores
        bias = total - wide.sum(axis=1)
        return wide, bias, output, pick
    wide_all, bias_all = per_group[0]  # [outputs, rows, width], [outputs]
    if not classifier:
        return wide_all[0], np.full(rows, bias_all[0]), "value", None
    if wide_all.shape[0] == 2:
        pick = np.ones(rows, dtype="int64")
    else:
        totals = wide_all.sum(axis=2) + bias_all[:, None]  # [outputs, rows]
        pick = totals.argmax(axis=0)
    return wide_all[pick, index], bias_all[pick], "probability", pick


# -- linear models ----------------------------------------------------------------------------


def _linear(
    model: LoadedModel, matrix: np.ndarray
) -> tuple[np.ndarray, np.ndarray, str, np.ndarray | None]:
    import numpy as np

    estimator = model.estimator
    coef = np.atleast_2d(np.asarray(estimator.coef_, dtype="float64"))
    intercept = np.atleast_1d(np.asarray(estimator.intercept_, dtype="float64"))
    if intercept.size == 1 and coef.shape[0] > 1:
        intercept = np.repeat(intercept, coef.shape[0])
    if coef.shape[1] != matrix.shape[1]:
        raise ModelError(
            f"{type(estimator).__name__} has {coef.shape[1]} coefficients for "
            f"{matrix.shape[1]} transformed columns"
        )
    stored = (model.meta.get("explain") or {}).get("transformed_mean")
    mean = np.asarray(stored, dtype="float64") if stored else np.zeros(matrix.shape[1])
    if mean.shape != (matrix.shape[1],):
        mean = np.zeros(matrix.shape[1])
    centred = np.nan_to_num(matrix - mean)
    classifier = model.task == "classification"
    logistic = type(estimator).__name__ in ("LogisticRegression", "LogisticRegressionCV")
    output = "log-odds" if logistic else ("margin" if classifier else "value")
    if coef.shape[0] == 1:
        pick = np.ones(matrix.shape[0], dtype="int64") if classifier else None
        k = np.zeros(matrix.shape[0], dtype="int64")
    else:
        if not classifier:
            raise ModelError("cannot explain a multi-output linear regressor")
        scores = matrix @ coef.T + intercept
        k = pick = scores.argmax(axis=1)
        output = "margin"
    wide = coef[k] * centred
    bias = intercept[k] + coef[k] @ mean
    return wide, bias, output, pick
