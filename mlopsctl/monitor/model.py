"""The monitored model's part in a check: its version record and model.json (the training
profile, the prediction baseline, the offline metrics), what to read besides the features
(prediction outputs, labels, ids) and the model itself, loaded only when predictions must be
computed.

Prediction drift compares the model's outputs with ``profile.prediction`` (the model's own
outputs on its training rows: a binary classifier's positive-class probability, otherwise the
label or value). The outputs come from the data when it carries them (serving logs: columns
``prediction`` and ``score``), otherwise from the model, run batch by batch. Models trained
before that field existed have no prediction baseline: the check is skipped with a note.

Performance needs labels: ``ground_truth.path`` (joined on ``id_column``) or, without a path,
``target_column`` in the current data itself (performance.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlopsctl.errors import IntegrityError, UsageError
from mlopsctl.models.artifact import features_of
from mlopsctl.monitor import checks

if TYPE_CHECKING:
    from mlopsctl.config import Project
    from mlopsctl.records.version import VersionRecord
    from mlopsctl.store.base import ObjectStore


def model_meta(store: ObjectStore, ref: str) -> tuple[VersionRecord, dict[str, Any]]:
    """The version record and its model.json, read from the head of the artifact blob (the
    model itself is loaded only when predictions must be computed) and checked against the
    sha256 the version recorded."""
    from mlopsctl import registry

    record = registry.resolve(store, ref)
    meta, digest = registry.model_facts(store, record["artifact"]["digest"])
    expected = record["artifact"].get("model_json")
    if expected and digest != expected:
        raise IntegrityError(
            f"model.json of {record['name']}:{record['version']} does not match its version record",
            "the artifact was altered; do not use it",
        )
    if not meta.get("profile", {}).get("features"):
        raise UsageError(
            f"{record['name']}:{record['version']} has no training profile",
            "retrain it with mlopsctl, or give a baseline dataset",
        )
    return record, meta


def plan_extra(
    spec: dict[str, Any],
    store: ObjectStore,
    project: Project,
    model_ref: str | None,
    meta: dict[str, Any] | None,
    profile: dict[str, Any],
) -> tuple[checks.Extra, list[str]]:
    """What to read besides the features: prediction outputs, labels, ids; and notes."""
    extra = checks.Extra()
    notes: list[str] = []
    pred_spec = spec.get("prediction") or {}
    truth = spec.get("ground_truth")
    want_prediction = pred_spec.get("enabled", True) and meta is not None
    if want_prediction:
        # The baseline's own outputs when it has them (the training profile's, or with
        # previous_window the window before's: None when it holds none), else the training
        # outputs model.json keeps.
        own = "prediction" in profile
        trained = (meta or {}).get("profile", {}).get("prediction")
        base = profile["prediction"] if own else trained
        if not base:
            notes.append(
                "prediction drift skipped: this model version has no prediction baseline "
                "(trained before mlopsctl kept one)"
                if not own or profile["prediction"] is trained
                else "prediction drift skipped: the baseline window holds no predictions"
            )
        else:
            kind = base["kind"]
            tests = checks.NUMERIC_TESTS if kind == "numeric" else checks.CATEGORICAL_TESTS
            test = pred_spec.get("test") or checks.default_test(kind, int(profile.get("rows", 0)))
            if test not in tests:
                raise UsageError(
                    f"prediction test '{test}' does not apply to a {kind} output",
                    f"use one of: {', '.join(tests)}",
                )
            threshold = float(pred_spec.get("threshold") or tests[test])
            column = checks.Column("prediction", kind, base, test, threshold)
            if kind == "numeric":
                column.sketch = checks.fresh_sketch(base)
            extra.prediction = column
    if (extra.prediction is not None or truth) and meta is not None:
        extra.prediction_column = pred_spec.get("column", "prediction")
        extra.score_column = pred_spec.get("score_column", "score")
    if truth:
        if truth.get("path"):
            extra.id_column = truth.get("id_column") or "request_id"
            from mlopsctl.monitor.performance import load_truth

            extra.truth_ids, extra.collected["truth"] = load_truth(truth, project, store)
        else:
            extra.truth_column = truth.get("target_column") or (meta or {}).get("target")
            if not extra.truth_column:
                raise UsageError(
                    "ground_truth needs target_column", "name the column holding the labels"
                )
    if model_ref and meta is not None and (extra.prediction is not None or truth):
        extra.model = _LazyModel(model_ref, store, meta)
    return extra, notes


class _LazyModel:
    """The model, loaded (and verified) on first use: data that carry their own predictions
    never pay for deserialising it."""

    def __init__(self, ref: str, store: ObjectStore, meta: dict[str, Any]) -> None:
        self.ref = ref
        self.store = store
        self.meta = meta
        self.features = features_of(meta)
        self._loaded: Any = None

    def _model(self) -> Any:
        if self._loaded is None:
            from mlopsctl.registry import load_model

            self._loaded = load_model(self.ref, store=self.store)
        return self._loaded

    @property
    def has_proba(self) -> bool:
        return bool(self._model().has_proba)

    @property
    def classes(self) -> Any:
        return self._model().classes

    def predict(self, frame: Any) -> Any:
        return self._model().predict(frame)

    def predict_proba(self, frame: Any) -> Any:
        return self._model().predict_proba(frame)
