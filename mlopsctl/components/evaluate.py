"""evaluate: score a model artifact on a test table; write the metrics and per-row predictions.

Predictions are keyed by the test table's index (``row_id``), which split carries over from the
ingested data, so two models evaluated on the same test set can be compared row by row (paired
tests in release gates). Columns: row_id, y_true, y_pred and, for classifiers, ``proba`` (the
positive class, binary) or ``proba_<class>`` per class (multiclass).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from mlopsctl.errors import MlopsError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from mlopsctl.components.base import StepContext
    from mlopsctl.models.artifact import LoadedModel

NAME = "evaluate"
DESCRIPTION = "Score a model on a test table: metrics and per-row predictions"
INPUTS = {"model": "a model artifact (folder)", "test": "the test table (Parquet)"}
OUTPUTS = {"metrics": "file", "predictions": "file"}
PARAMS: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "target": {
            "type": "string",
            "minLength": 1,
            "description": "the label column in the test table (default: the model's target)",
        },
    },
}
LIBRARIES = ("scikit-learn", "xgboost", "skops", "numpy", "pandas", "pyarrow")
FILE_PARAMS: tuple[str, ...] = ()
CODE_MODULES = (
    "mlopsctl.components.frames",
    "mlopsctl.components.metrics",
    "mlopsctl.models.artifact",
)


def run(ctx: StepContext) -> None:
    from mlopsctl.components.frames import read_table, require_columns, write_table
    from mlopsctl.models.artifact import load_model_dir

    model = load_model_dir(ctx.inputs["model"])
    target = ctx.params.get("target") or model.target
    if not target:
        raise MlopsError("the model records no target", "set 'target' in the step's with: block")
    test = read_table(ctx.inputs["test"], "test data")
    require_columns(test, [target], "test data", "target")
    labelled = test[test[target].notna()]
    if len(labelled) < len(test):
        ctx.log(f"evaluate: {len(test) - len(labelled)} row(s) without a target are left out")
    if len(labelled) == 0:
        raise MlopsError(f"the test data has no rows with a value for '{target}'")

    metrics, predictions, notes = score(model, labelled, target)
    ctx.outputs["metrics"].parent.mkdir(parents=True, exist_ok=True)
    ctx.outputs["metrics"].write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    write_table(predictions, ctx.outputs["predictions"])
    ctx.metrics.update(metrics)
    ctx.info.update(task=model.task, target=target, rows=len(labelled))
    if model.classes is not None and len(model.classes) == 2:
        ctx.info["positive_class"] = model.classes[1].item()
    if notes:
        ctx.info["notes"] = notes
        for note in notes:
            ctx.log(f"evaluate: {note}")


def score(
    model: LoadedModel, frame: pd.DataFrame, target: str
) -> tuple[dict[str, float], pd.DataFrame, list[str]]:
    """(metrics, predictions table, notes) of ``model`` on the labelled rows of ``frame``."""
    import pandas as pd

    from mlopsctl.components import metrics as _metrics

    y_true = frame[target].to_numpy()
    y_pred = model.predict(frame)
    table: dict[str, Any] = {"row_id": frame.index.to_numpy(), "y_true": y_true, "y_pred": y_pred}
    if model.task != "classification" or model.classes is None:
        try:
            truth = y_true.astype("float64")
        except (TypeError, ValueError):
            raise MlopsError(
                f"target '{target}' is not numeric; the model is a regressor"
            ) from None
        predictions = pd.DataFrame(table)
        return _metrics.regression_metrics(truth, y_pred), predictions, []

    classes = model.classes
    proba = model.predict_proba(frame) if model.has_proba else None
    if proba is not None:
        if len(classes) == 2:
            table["proba"] = proba[:, 1]
        else:
            for i, label in enumerate(classes):
                table[f"proba_{label}"] = proba[:, i]
    metrics, notes = _metrics.classification_metrics(
        _indices(classes, y_true), _indices(classes, y_pred), proba, len(classes)
    )
    return metrics, pd.DataFrame(table), notes


def _indices(classes: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Position of each label among the model's classes; -1 for one the model never saw."""
    import pandas as pd

    # Labels come back from Parquet with their own dtype (e.g. int64 vs the JSON ints of
    # model.json); comparing as a pandas Index of the classes handles both.
    return pd.Index(classes).get_indexer(pd.Index(labels))
