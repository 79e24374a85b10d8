"""Performance once ground truth arrives: labels joined to predictions, one metric computed with
evaluate's own code (mlopsctl/components/_metrics.py), compared with fixed bounds and with the
model version's recorded offline metric.

Labels are read whole (one id and one label per row: small next to the features); predictions
are collected during the pass over the current data only for rows that have a label.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlopsctl.errors import UsageError

if TYPE_CHECKING:
    from mlopsctl.config import Project
    from mlopsctl.records.version import VersionRecord
    from mlopsctl.store.base import ObjectStore


def load_truth(
    truth: dict[str, Any], project: Project, store: ObjectStore
) -> tuple[Any, dict[str, Any]]:
    """(pyarrow array of ids that have a label, {id: label}) from ground_truth.path."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from mlopsctl.monitor import data

    id_column = truth.get("id_column") or "request_id"
    target = truth.get("target_column") or "actual"
    labels: dict[str, Any] = {}
    for path in data.iter_files(
        truth["path"], root=project.root, store=store, s3_options=project.s3_options
    ):
        names = data.column_names(path)
        for needed in (id_column, target):
            if needed not in names:
                raise UsageError(
                    f"ground truth {path.name} has no column '{needed}'",
                    "fix ground_truth.id_column / target_column",
                )
        for table in data.iter_batches(path, [id_column, target], {id_column}, set()):
            ids = pc.cast(table.column(id_column), pa.string()).to_pylist()
            labels.update(zip(ids, table.column(target).to_pylist(), strict=True))
    return pa.array(list(labels), pa.string()), labels


def evaluate(
    truth: dict[str, Any],
    extra: Any,
    meta: dict[str, Any] | None,
    record: VersionRecord | None,
) -> dict[str, Any]:
    import numpy as np

    from mlopsctl.components import metrics as _metrics

    collected = extra.collected
    task = (meta or {}).get("task", "classification")
    metric = truth.get("metric") or ("accuracy" if task == "classification" else "rmse")
    out: dict[str, Any] = {
        "metric": metric,
        "value": None,
        "baseline": None,
        "drop": None,
        "rows": 0,
        "min": truth.get("min"),
        "max": truth.get("max"),
        "max_drop": truth.get("max_drop"),
        "failed": False,
        "reasons": [],
    }
    predicted = collected.get("predicted") or []
    if "truth" in collected:
        table = collected["truth"]
        actual = [table.get(i) for i in collected.get("ids", [])]
    else:
        actual = collected.get("actual") or []
    if not predicted or len(predicted) != len(actual):
        out["note"] = "no labelled rows with predictions"
        return out
    keep = [a is not None for a in actual]
    actual = [a for a, k in zip(actual, keep, strict=True) if k]
    predicted = [p for p, k in zip(predicted, keep, strict=True) if k]
    scores = collected.get("scores")
    if scores is not None and len(scores) == len(keep):
        scores = [s for s, k in zip(scores, keep, strict=True) if k]
    else:
        scores = None
    out["rows"] = len(actual)
    if task == "classification":
        classes = [str(c) for c in (meta or {}).get("classes") or sorted({str(a) for a in actual})]
        index = {c: i for i, c in enumerate(classes)}
        y_true = np.asarray([index.get(_label(a), -1) for a in actual])
        y_pred = np.asarray([index.get(_label(p), -1) for p in predicted])
        proba = None
        if scores is not None and len(classes) == 2:
            positive = np.asarray(scores, dtype="float64")
            proba = np.column_stack([1.0 - positive, positive])
        values, notes = _metrics.classification_metrics(y_true, y_pred, proba, len(classes))
        if notes:
            out["notes"] = notes
    else:
        values = _metrics.regression_metrics(
            np.asarray(actual, dtype="float64"), np.asarray(predicted, dtype="float64")
        )
    if metric not in values:
        out["note"] = f"{metric} could not be computed on these rows"
        return out
    value = float(values[metric])
    out["value"] = value
    lower_better = _metrics.direction_of(metric) == "minimize"
    recorded = (record.get("metrics") if record else None) or {}
    if metric in recorded:
        out["baseline"] = float(recorded[metric])
        out["drop"] = value - out["baseline"] if lower_better else out["baseline"] - value
    reasons = out["reasons"]
    if truth.get("min") is not None and value < float(truth["min"]):
        reasons.append(f"{metric} {value:.4g} is below the minimum {truth['min']}")
    if truth.get("max") is not None and value > float(truth["max"]):
        reasons.append(f"{metric} {value:.4g} is above the maximum {truth['max']}")
    max_drop = truth.get("max_drop")
    if max_drop is not None and out["drop"] is not None and out["drop"] > float(max_drop):
        reasons.append(
            f"{metric} {value:.4g} is {out['drop']:.4g} worse than offline "
            f"{out['baseline']:.4g} (max_drop {max_drop})"
        )
    out["failed"] = bool(reasons)
    return out


def _label(value: Any) -> str:
    """Labels compared as text; a float label that is a whole number reads like the int."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
