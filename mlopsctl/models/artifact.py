"""Model artifacts: a folder holding ``model.json`` and the fitted model in a safe format.

Layout (``model.json`` "format": "mlopsctl-model/v1"):

    flavor "sklearn":  model.skops       the whole fitted Pipeline (preprocessing + estimator)
    flavor "xgboost":  preprocess.skops  the fitted preprocessing Pipeline
                       model.ubj         the estimator, in XGBoost's own UBJSON format

``model.json`` records the sha256 of every file, the estimator class and hyperparameters, the task,
the classes, the target, the signature (features with dtype and kind), the training baseline
profile (mlopsctl/models/profile.py) that monitoring compares serving data with, the tail tables
outlier scores are computed from ("outliers", mlopsctl/models/outliers.py) and, for models that
can be explained, the training mean |contribution| per feature ("explain",
mlopsctl/models/explain.py), the baseline of attribution drift.

Loading is built so that an artifact from a shared bucket cannot run code on the reader: every
file is read once and checked against its recorded sha256 before any byte reaches a
deserialiser; the flavor recorded in model.json (never a file name) picks the loader; skops files
are loaded only when every type they need is in ``SKOPS_ALLOWED``, a list kept here and never
read from the artifact; pickle (flavors "pickle", "cloudpickle": model.pkl; "joblib":
model.joblib) is refused unless the caller passes ``trust_pickle=True``, and even then only the
verified bytes are unpickled.

Classifiers are trained on class indices 0..k-1 (XGBoost requires it); ``classes`` in model.json
maps them back, so every flavor predicts the original labels through ``LoadedModel``.

Heavy libraries are imported inside functions: components import this module to plan a run.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import json
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlopsctl.errors import IntegrityError, MlopsError, NotFound
from mlopsctl.models.profile import profile_categorical, profile_frame, profile_numeric

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

FORMAT = "mlopsctl-model/v1"
MODEL_JSON = "model.json"

# Types a skops file may contain beyond the ones skops itself trusts by default (which already
# cover scikit-learn's estimators and transformers). Each entry is an inner object of an estimator
# that mlopsctl's built-in pipelines produce; nothing here can run code when it is rebuilt.
SKOPS_ALLOWED = frozenset(
    {
        "numpy.dtype",
        "sklearn.tree._tree.Tree",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.neighbors._kd_tree.KDTree",
        "sklearn.neighbors._ball_tree.BallTree",
        "sklearn.metrics._dist_metrics.EuclideanDistance64",
        "sklearn.metrics._dist_metrics.ManhattanDistance64",
        "sklearn.metrics._dist_metrics.ChebyshevDistance64",
        "sklearn.metrics._dist_metrics.MinkowskiDistance64",
    }
)

# Which files each flavor needs; the flavor comes from model.json, never from what is on disk.
FLAVOR_FILES = {
    "sklearn": ("model.skops",),
    "xgboost": ("preprocess.skops", "model.ubj"),
}
_XGBOOST_CLASSES = frozenset({"XGBClassifier", "XGBRegressor", "XGBRFClassifier", "XGBRFRegressor"})
# Pickle flavors are loaded only on request (trust_pickle=True): unpickling runs whatever code
# the file names, so a model from a shared bucket must never reach it by default.
PICKLE_FILES = {"pickle": "model.pkl", "cloudpickle": "model.pkl", "joblib": "model.joblib"}
_PICKLE_FLAVORS = frozenset(PICKLE_FILES)


class ModelError(MlopsError):
    """A model artifact is malformed, or cannot be used for what was asked."""


class UnsafeModel(ModelError):
    """Loading the artifact would need a deserialiser or a type that mlopsctl does not trust."""


@dataclass(frozen=True)
class Feature:
    """One column of a model's signature."""

    name: str
    dtype: str  # the pandas dtype seen in training, for people and for schema checks
    kind: str  # "numeric" or "categorical": how the model treats it

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "dtype": self.dtype, "kind": self.kind}


# -- features ------------------------------------------------------------------------------


def prepare_features(frame: pd.DataFrame, features: Sequence[Feature]) -> pd.DataFrame:
    """The signature's columns, in order, coerced the one way training and serving share.

    Numeric features become float64 (missing as NaN); categorical features become Python strings
    in an object column (missing as NaN), so that a bool, an int code or a pandas category is
    encoded the same way wherever the data came from.
    """
    import numpy as np
    import pandas as pd

    missing = [f.name for f in features if f.name not in frame.columns]
    if missing:
        raise ModelError(
            f"input lacks feature column(s) {', '.join(missing)}",
            "send every feature of the model's signature (model.json 'features')",
        )
    columns: dict[str, Any] = {}
    for feature in features:
        column = frame[feature.name]
        if feature.kind == "numeric":
            try:
                columns[feature.name] = column.astype("float64")
            except (TypeError, ValueError) as exc:
                raise ModelError(
                    f"feature '{feature.name}' must be numeric: {exc}",
                    "send numbers (or null) for this column",
                ) from None
        else:
            text = column.astype(str).to_numpy(dtype=object)
            columns[feature.name] = np.where(column.isna().to_numpy(), np.nan, text)
    return pd.DataFrame(columns, index=frame.index)


def features_of(meta: dict[str, Any]) -> list[Feature]:
    return [Feature(f["name"], f.get("dtype", ""), f["kind"]) for f in meta.get("features", [])]


# -- saving --------------------------------------------------------------------------------


def save_model(
    pipeline: Any,
    path: str | Path,
    *,
    estimator_class: str,
    params: dict[str, Any],
    task: str,
    target: str,
    features: Sequence[Feature],
    classes: Sequence[Any] | None,
    frame: pd.DataFrame,
) -> dict[str, Any]:
    """Write a fitted ``pipeline`` (preprocessing steps + the estimator last) to folder ``path``.

    ``frame`` is the training data (features and target) the baseline profile is computed from.
    Returns the model.json content. Raises UnsafeModel when the fitted model holds a type that
    ``load_model_dir`` would refuse, so an unloadable artifact is never produced.
    """
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    estimator = pipeline[-1]
    flavor = flavor_of(estimator)
    if flavor == "xgboost":
        _write_skops(pipeline[:-1], out / "preprocess.skops")
        estimator.save_model(str(out / "model.ubj"))
    else:
        _write_skops(pipeline, out / "model.skops")

    prepared = prepare_features(frame, features)
    if task == "classification":
        target_profile = profile_categorical(frame[target])
    else:
        target_profile = profile_numeric(frame[target])
    meta: dict[str, Any] = {
        "format": FORMAT,
        "flavor": flavor,
        "files": {name: file_digest(out / name) for name in FLAVOR_FILES[flavor]},
        "estimator_class": estimator_class,
        "params": params,
        "task": task,
        "target": target,
        "features": [f.as_dict() for f in features],
        "profile": {
            "rows": len(frame),
            "features": profile_frame(prepared, [(f.name, f.kind) for f in features]),
            "target": target_profile,
            **_prediction_profile(pipeline, prepared, task, classes),
        },
        "libraries": library_versions(),
    }
    if classes is not None:
        meta["classes"] = [_json_scalar(c) for c in classes]
    meta.update(_explanation_baselines(pipeline, meta, prepared, features))
    # model.json last: a folder without it is visibly incomplete.
    (out / MODEL_JSON).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return meta


def _prediction_profile(
    pipeline: Any, prepared: pd.DataFrame, task: str, classes: Sequence[Any] | None
) -> dict[str, Any]:
    """{"prediction": profile} of the model's own outputs on its training rows, the baseline of
    prediction drift: a binary classifier's positive-class probability ("of": "score", as
    serving logs it), otherwise the predicted label (classification) or value (regression).
    Empty when the fitted pipeline cannot predict here; monitoring then says so."""
    import numpy as np

    try:
        if task != "classification":
            values = np.asarray(pipeline.predict(prepared), dtype="float64").ravel()
            return {"prediction": {**profile_numeric(values), "of": "value"}}
        if classes is not None and len(classes) == 2 and hasattr(pipeline, "predict_proba"):
            proba = normalised_proba(pipeline.predict_proba(prepared))
            return {"prediction": {**profile_numeric(proba[:, 1]), "of": "score"}}
        raw = np.asarray(pipeline.predict(prepared)).astype("int64").ravel()
        labels = np.asarray(classes)[raw] if classes is not None else raw
        return {"prediction": {**profile_categorical(labels), "of": "label"}}
    except (AttributeError, TypeError, ValueError, IndexError):
        return {}


def _explanation_baselines(
    pipeline: Any, meta: dict[str, Any], prepared: pd.DataFrame, features: Sequence[Feature]
) -> dict[str, Any]:
    """{"outliers": the tail tables outlier scores are computed from (models/outliers.py),
    "explain": the mean |contribution| per feature on the training rows, the baseline of
    attribution drift, and what linear models' contributions are measured from
    (models/explain.py); absent when the model cannot be explained}."""
    from mlopsctl.models import explain, outliers

    out: dict[str, Any] = {"outliers": outliers.outlier_baseline(prepared, features)}
    model = LoadedModel(meta, pipeline[:-1], pipeline[-1])
    attribution = explain.attribution_baseline(model, prepared)
    if attribution is not None:
        out["explain"] = attribution
    return out


def flavor_of(estimator: Any) -> str:
    return "xgboost" if type(estimator).__module__.split(".")[0] == "xgboost" else "sklearn"


def _write_skops(obj: Any, dest: Path) -> None:
    import skops.io as sio

    data = canonical_skops(sio.dumps(obj))
    refused = sorted(set(sio.get_untrusted_types(data=data)) - SKOPS_ALLOWED)
    if refused:
        raise UnsafeModel(
            f"cannot save the model safely: it contains {', '.join(refused)}, "
            "which mlopsctl does not trust when loading models",
            "use a scikit-learn or XGBoost estimator",
        )
    dest.write_bytes(data)


def canonical_skops(data: bytes) -> bytes:
    """The same skops file, byte for byte the same whatever process wrote it. skops names
    objects by id() (memory addresses) and some files by uuid4, and stamps zip entries with the
    time: the same model saved twice would get two digests, so neither the step cache nor the
    registry could tell that a retrained model is the very same one. Ids are renumbered and
    files renamed in order of first appearance (a one-to-one renaming, so shared references
    stay shared), and entries get a fixed time and order."""
    import io

    with zipfile.ZipFile(io.BytesIO(data)) as source:
        schema = json.loads(source.read("schema.json"))
        ids: dict[int, int] = {}
        files: dict[str, str] = {}

        def walk(node: Any) -> Any:
            if isinstance(node, dict):
                out: dict[str, Any] = {}
                for key, value in node.items():
                    if key == "__id__" and isinstance(value, int):
                        out[key] = ids.setdefault(value, len(ids) + 1)
                    elif key == "file" and isinstance(value, str) and value in names:
                        suffix = os.path.splitext(value)[1]
                        out[key] = files.setdefault(value, f"{len(files) + 1}{suffix}")
                    else:
                        out[key] = walk(value)
                return out
            if isinstance(node, list):
                return [walk(item) for item in node]
            return node

        names = set(source.namelist())
        schema = walk(schema)
        entries = {new: (source.getinfo(old), source.read(old)) for old, new in files.items()}
        leftover = names - set(files) - {"schema.json"}
        if leftover:  # a layout this function does not know: keep the file as skops wrote it
            return data
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as target:
            schema_info = source.getinfo("schema.json")
            entries["schema.json"] = (schema_info, json.dumps(schema, indent=2).encode())
            for name in sorted(entries):
                info, payload = entries[name]
                fixed = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                fixed.compress_type = info.compress_type
                fixed.external_attr = 0o644 << 16
                target.writestr(fixed, payload)
    return buffer.getvalue()


def library_versions() -> dict[str, str | None]:
    from importlib import metadata

    versions: dict[str, str | None] = {}
    for key, dist in (
        ("sklearn", "scikit-learn"),
        ("xgboost", "xgboost"),
        ("skops", "skops"),
        ("numpy", "numpy"),
        ("pandas", "pandas"),
    ):
        try:
            versions[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[key] = None
    return versions


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def _json_scalar(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


# -- loading -------------------------------------------------------------------------------


def read_model_json(path: str | Path) -> dict[str, Any]:
    """model.json of the artifact at ``path`` (parsed JSON only; nothing is deserialised)."""
    file = Path(path) / MODEL_JSON
    try:
        meta = json.loads(file.read_text())
    except FileNotFoundError:
        raise NotFound(
            f"{path} is not a model artifact: {MODEL_JSON} is missing",
            "point at the folder a train or tune step wrote",
        ) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{file} is not valid JSON: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise ModelError(
            f"{file} has format {found!r}; this mlopsctl reads {FORMAT!r}",
            "retrain the model with this version of mlopsctl",
        )
    return meta


def load_model_dir(path: str | Path, *, trust_pickle: bool = False) -> LoadedModel:
    """Load the artifact in folder ``path`` after checking every file against model.json.

    IntegrityError when a file is missing or differs from its recorded sha256; UnsafeModel when
    loading would need a type outside ``SKOPS_ALLOWED``, or pickle without ``trust_pickle``.
    """
    folder = Path(path)
    meta = read_model_json(folder)
    flavor = meta.get("flavor")
    if flavor in _PICKLE_FLAVORS:
        kind = "a pickle" if flavor == "pickle" else f"a {flavor} pickle"
        if not trust_pickle:
            raise UnsafeModel(
                f"model {folder} is {kind}; loading it can run arbitrary code",
                "pass --trust (trust_pickle=True) only for artifacts you made",
            )
        name = PICKLE_FILES[flavor]
        blobs = _verified_files(folder, meta)
        if name not in blobs:
            raise ModelError(f"{folder}/{MODEL_JSON} records no {name} for flavor {flavor!r}")
        preprocess, estimator = _split_pipeline(
            _load_pickle(blobs[name], flavor, folder / name), folder / name
        )
        return LoadedModel(meta, preprocess, estimator)
    if flavor not in FLAVOR_FILES:
        raise ModelError(
            f"model {folder} has unknown flavor {flavor!r}",
            f"known flavors: {', '.join(FLAVOR_FILES)}",
        )
    blobs = _verified_files(folder, meta)
    for name in FLAVOR_FILES[flavor]:
        if name not in blobs:
            raise ModelError(f"{folder}/{MODEL_JSON} records no {name} for flavor {flavor!r}")

    if flavor == "xgboost":
        preprocess = _load_skops(blobs["preprocess.skops"], folder / "preprocess.skops")
        estimator = _load_xgboost(blobs["model.ubj"], meta, folder / "model.ubj")
    else:
        pipeline = _load_skops(blobs["model.skops"], folder / "model.skops")
        if not hasattr(pipeline, "steps") or len(pipeline.steps) < 2:
            raise ModelError(f"{folder}/model.skops does not hold a preprocessing pipeline")
        preprocess, estimator = pipeline[:-1], pipeline[-1]
    return LoadedModel(meta, preprocess, estimator)


def _verified_files(folder: Path, meta: dict[str, Any]) -> dict[str, bytes]:
    """Every file model.json lists, read once and checked, so what is loaded is what was hashed."""
    files = meta.get("files")
    if not isinstance(files, dict) or not files:
        raise ModelError(f"{folder}/{MODEL_JSON} lists no files")
    blobs: dict[str, bytes] = {}
    for name, expected in files.items():
        if (
            not isinstance(name, str)
            or name in ("", ".", "..", MODEL_JSON)
            or "/" in name
            or "\\" in name
            or not isinstance(expected, str)
        ):
            raise ModelError(f"{folder}/{MODEL_JSON} lists an invalid file entry {name!r}")
        try:
            data = (folder / name).read_bytes()
        except FileNotFoundError:
            raise IntegrityError(
                f"model file {folder}/{name} is missing",
                "fetch the artifact again from the store",
            ) from None
        if f"sha256:{hashlib.sha256(data).hexdigest()}" != expected:
            raise IntegrityError(
                f"model file {folder}/{name} does not match its sha256 in {MODEL_JSON}",
                "the artifact changed after it was saved; fetch it again or retrain",
            )
        blobs[name] = data
    return blobs


def _load_skops(data: bytes, where: Path) -> Any:
    import skops.io as sio

    try:
        needed = sio.get_untrusted_types(data=data)
    except (ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise ModelError(f"{where} is not a readable skops file: {exc}") from None
    refused = sorted(set(needed) - SKOPS_ALLOWED)
    if refused:
        raise UnsafeModel(
            f"{where} contains types mlopsctl does not trust: {', '.join(refused)}",
            "only load models trained by mlopsctl's built-in components",
        )
    try:
        return sio.loads(data, trusted=needed)
    except (ValueError, TypeError, KeyError, AttributeError, zipfile.BadZipFile) as exc:
        raise ModelError(f"cannot load {where}: {exc}") from None


def _load_pickle(data: bytes, flavor: str, where: Path) -> Any:
    """Unpickle bytes that were already checked against model.json; only ever reached with
    trust_pickle=True."""
    import io
    import pickle

    try:
        if flavor == "joblib":
            import joblib

            return joblib.load(io.BytesIO(data))
        return pickle.loads(data)
    except (
        pickle.UnpicklingError,
        EOFError,
        AttributeError,
        ImportError,
        IndexError,
        KeyError,
        TypeError,
        ValueError,
    ) as exc:
        raise ModelError(f"cannot load {where}: {_one_line(exc)}") from None


class Passthrough:
    """The preprocessing of a pickled bare estimator: the prepared features as they are."""

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        return frame


def _split_pipeline(obj: Any, where: Path) -> tuple[Any, Any]:
    """(preprocessing, estimator) of a pickled object: a Pipeline is split like the sklearn
    flavor's; anything else with predict() is a bare estimator."""
    steps = getattr(obj, "steps", None)
    if isinstance(steps, list) and len(steps) >= 2:
        return obj[:-1], obj[-1]
    if callable(getattr(obj, "predict", None)):
        return Passthrough(), obj
    raise ModelError(
        f"{where} holds a {type(obj).__name__}, not a model",
        "pickle a fitted scikit-learn Pipeline or estimator",
    )


def _load_xgboost(data: bytes, meta: dict[str, Any], where: Path) -> Any:
    import xgboost

    module, _, name = str(meta.get("estimator_class", "")).rpartition(".")
    if module.split(".")[0] != "xgboost" or name not in _XGBOOST_CLASSES:
        raise ModelError(
            f"{where}: flavor 'xgboost' needs an XGBoost estimator class, "
            f"model.json has {meta.get('estimator_class')!r}"
        )
    estimator = getattr(xgboost, name)()
    try:
        estimator.load_model(bytearray(data))
    except (xgboost.core.XGBoostError, TypeError, ValueError) as exc:
        raise ModelError(f"cannot load {where}: {exc}") from None
    return estimator


class LoadedModel:
    """A verified model: predictions from a DataFrame holding the signature's features."""

    def __init__(self, meta: dict[str, Any], preprocess: Any, estimator: Any) -> None:
        import numpy as np

        self.meta = meta
        self.flavor: str = meta["flavor"]
        self.task: str = meta.get("task", "regression")
        self.target: str | None = meta.get("target")
        self.features = features_of(meta)
        self.classes: np.ndarray | None = (
            np.asarray(meta["classes"]) if meta.get("classes") is not None else None
        )
        self.preprocess = preprocess
        self.estimator = estimator

    @property
    def has_proba(self) -> bool:
        return self.task == "classification" and hasattr(self.estimator, "predict_proba")

    def transform(self, frame: pd.DataFrame) -> Any:
        return self.preprocess.transform(prepare_features(frame, self.features))

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Predicted labels (classification: the original class values) or values."""
        import numpy as np

        raw = np.asarray(self.estimator.predict(self.transform(frame)))
        if self.classes is not None:
            return self.classes[raw.astype("int64").ravel()]
        return raw.astype("float64").ravel()

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Class probabilities, one column per entry of ``classes``, in that order."""

        if not self.has_proba:
            raise ModelError(
                f"model {self.meta.get('estimator_class')} gives no class probabilities",
                "use predict(), or train a classifier that has predict_proba",
            )
        return normalised_proba(self.estimator.predict_proba(self.transform(frame)))


def normalised_proba(proba: Any) -> np.ndarray:
    """Probabilities as float64 rows summing to 1: XGBoost computes in float32, whose rounding
    metrics such as log_loss otherwise warn about."""
    import numpy as np

    array = np.asarray(proba, dtype="float64")
    totals = array.sum(axis=1, keepdims=True)
    return np.divide(array, totals, out=np.zeros_like(array), where=totals > 0)


# -- import paths --------------------------------------------------------------------------


def check_import_path(path: str, what: str = "estimator class") -> str | None:
    """Why ``path`` ('package.module.Name') cannot be imported, or None when it can.

    Reads module sources instead of importing them, so that a plan-time check costs
    milliseconds rather than the seconds scikit-learn or XGBoost take to import. Falls back to a
    real import only when the source cannot answer (a lazy ``__getattr__``, a star import, a
    compiled module).
    """
    parts = path.split(".") if isinstance(path, str) else []
    if len(parts) < 2 or not all(p.isidentifier() for p in parts):
        return (
            f"{what} {path!r} is not an import path; "
            "write it like 'sklearn.ensemble.RandomForestClassifier'"
        )
    top, module_parts, name = parts[0], parts[:-1], parts[-1]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return _not_installed(top)

    origin = spec.origin
    locations = list(spec.submodule_search_locations or [])
    for depth in range(1, len(module_parts)):
        part = module_parts[depth]
        if not locations:
            return _import_problem(path, what)  # an attribute of a plain module: ask Python
        status, sub_origin, sub_locations = _find_submodule(locations, part)
        if status == "compiled":
            return _import_problem(path, what)
        if status == "missing":
            parent = ".".join(module_parts[:depth])
            names, conclusive = _source_names(origin)
            if part in names or not conclusive:
                return _import_problem(path, what)
            candidates = _submodule_names(locations) | {n for n in names if not n.startswith("_")}
            return f"module '{parent}.{part}' not found{_did_you_mean(part, candidates, parent)}"
        origin, locations = sub_origin, sub_locations

    names, conclusive = _source_names(origin)
    if name in names:
        return None
    if not conclusive:
        return _import_problem(path, what)
    module = ".".join(module_parts)
    public = {n for n in names if not n.startswith("_")}
    return f"{what} '{path}' not found in module {module}{_did_you_mean(name, public)}"


def import_object(path: str, what: str = "estimator class") -> Any:
    """The object named by ``path``, imported for real; ModelError when it cannot be."""
    problem = check_import_path(path, what)
    if problem is None:
        problem = _import_problem(path, what)
    if problem is not None:
        raise ModelError(problem)
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _find_submodule(locations: list[str], part: str) -> tuple[str, str | None, list[str]]:
    """("found", source file or None, its search locations) for submodule ``part``; "compiled"
    for an extension module, whose names no source tells; "missing" when there is none."""
    for location in locations:
        folder = Path(location) / part
        init = folder / "__init__.py"
        if init.is_file():
            return "found", str(init), [str(folder)]
        single = Path(location) / f"{part}.py"
        if single.is_file():
            return "found", str(single), []
        if folder.is_dir():
            return "found", None, [str(folder)]  # a namespace package
        if any(Path(location).glob(f"{part}.*.so")) or any(Path(location).glob(f"{part}.*.pyd")):
            return "compiled", None, []
    return "missing", None, []


def _submodule_names(locations: list[str]) -> set[str]:
    names: set[str] = set()
    for location in locations:
        try:
            entries = os.listdir(location)
        except OSError:
            continue
        for entry in entries:
            stem = entry[:-3] if entry.endswith(".py") else entry
            if stem.isidentifier() and not stem.startswith("_"):
                names.add(stem)
    return names


def _source_names(origin: str | None) -> tuple[set[str], bool]:
    """Names a module's source defines at top level, and whether that list is complete."""
    if not origin or not origin.endswith(".py"):
        return set(), False
    try:
        tree = ast.parse(Path(origin).read_bytes(), filename=origin)
    except (OSError, SyntaxError, ValueError):
        return set(), False
    names: set[str] = set()
    complete = True

    def add_targets(node: ast.expr) -> None:
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, (ast.Tuple, ast.List)):
            for element in node.elts:
                add_targets(element)

    def add_all(value: ast.expr | None) -> None:
        if isinstance(value, (ast.List, ast.Tuple)):
            for element in value.elts:
                if isinstance(element, ast.Constant) and isinstance(element.value, str):
                    names.add(element.value)

    def visit(statements: list[ast.stmt]) -> None:
        nonlocal complete
        for node in statements:
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                names.add(node.name)
                if node.name == "__getattr__":
                    complete = False
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    add_targets(target)
                    if isinstance(target, ast.Name) and target.id == "__all__":
                        add_all(node.value)
            elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
                add_targets(node.target)
                if isinstance(node.target, ast.Name) and node.target.id == "__all__":
                    add_all(node.value)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    names.add(alias.asname or alias.name.split(".")[0])
            elif isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if alias.name == "*":
                        complete = False
                    else:
                        names.add(alias.asname or alias.name)
            elif isinstance(node, ast.If) and _is_type_checking(node.test):
                visit(node.orelse)  # names imported only for type checkers do not exist
            else:
                # if/try/with blocks at module level still define module names.
                for field in ("body", "orelse", "finalbody"):
                    block = getattr(node, field, None)
                    if isinstance(block, list):
                        visit(block)
                for handler in getattr(node, "handlers", []) or []:
                    visit(handler.body)

    visit(tree.body)
    return names, complete


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _import_problem(path: str, what: str) -> str | None:
    module, _, name = path.rpartition(".")
    try:
        imported = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = exc.name or module
        if module == missing or module.startswith(f"{missing}."):
            if "." not in missing:
                return _not_installed(missing)
            parent, _, part = missing.rpartition(".")
            siblings = _submodule_names(_search_locations(parent))
            return f"module '{missing}' not found{_did_you_mean(part, siblings, parent)}"
        return f"cannot import module {module}: {_one_line(exc)}"
    except ImportError as exc:
        return f"cannot import module {module}: {_one_line(exc)}"
    try:
        getattr(imported, name)
    except ImportError as exc:  # a lazy module attribute that refuses to load
        return f"cannot import {what} '{path}': {_one_line(exc)}"
    except AttributeError:
        pass
    else:
        return None
    public = {n for n in dir(imported) if not n.startswith("_")}
    return f"{what} '{path}' not found in module {module}{_did_you_mean(name, public)}"


def _search_locations(module: str) -> list[str]:
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return []
    return list(spec.submodule_search_locations or []) if spec else []


def _not_installed(top: str) -> str:
    import pkgutil

    installed = {m.name for m in pkgutil.iter_modules() if not m.name.startswith("_")}
    return f"module '{top}' is not installed{_did_you_mean(top, installed)}"


def _did_you_mean(name: str, candidates: set[str], parent: str = "") -> str:
    import difflib

    close = difflib.get_close_matches(name, sorted(candidates), n=1)
    if not close:
        return ""
    return f"; did you mean '{parent}.{close[0]}'?" if parent else f"; did you mean '{close[0]}'?"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
