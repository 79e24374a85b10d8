"""Model quality metrics shared by evaluate and tune, computed with scikit-learn.

Classification works on class indices (0..k-1, the model's sorted classes; -1 for a label the
model never saw). Binary precision/recall/f1 are those of the positive class, the second class
(1, True, or the later label in sort order); multiclass ones are macro averages. roc_auc uses the
positive-class probability (binary) or one-vs-rest macro averaging (multiclass). A metric that is
undefined on the given rows (roc_auc with a single class present) is left out with a note rather
than recorded as NaN.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

CLASSIFICATION = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
REGRESSION = ("rmse", "mae", "r2")
LOWER_IS_BETTER = frozenset({"log_loss", "rmse", "mae"})


def direction_of(metric: str) -> str:
    return "minimize" if metric in LOWER_IS_BETTER else "maximize"


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray | None, n_classes: int
) -> tuple[dict[str, float], list[str]]:
    """(metrics, notes) from class indices ``y_true``/``y_pred`` and probabilities (n, k)."""
    import numpy as np
    from sklearn import metrics

    notes: list[str] = []
    out = {"accuracy": float(metrics.accuracy_score(y_true, y_pred))}
    if n_classes == 2:
        # On indicator vectors a label the model never saw simply counts as negative.
        true_pos, pred_pos = y_true == 1, y_pred == 1
        for name, score in (
            ("precision", metrics.precision_score),
            ("recall", metrics.recall_score),
            ("f1", metrics.f1_score),
        ):
            out[name] = float(score(true_pos, pred_pos, zero_division=0.0))
    else:
        labels = list(range(n_classes))
        for name, score in (
            ("precision", metrics.precision_score),
            ("recall", metrics.recall_score),
            ("f1", metrics.f1_score),
        ):
            out[name] = float(
                score(y_true, y_pred, labels=labels, average="macro", zero_division=0.0)
            )
    if proba is None:
        notes.append("roc_auc and log_loss need predict_proba, which the estimator lacks")
        return out, notes

    known = y_true >= 0
    if not known.all():
        notes.append(
            f"{int((~known).sum())} row(s) have a label the model never saw; "
            "roc_auc and log_loss leave them out"
        )
    y_known, p_known = y_true[known], proba[known]
    if len(np.unique(y_known)) < 2:
        notes.append("roc_auc is undefined: the rows hold fewer than two classes")
    else:
        try:
            if n_classes == 2:
                out["roc_auc"] = float(metrics.roc_auc_score(y_known == 1, p_known[:, 1]))
            else:
                out["roc_auc"] = float(
                    metrics.roc_auc_score(
                        y_known,
                        p_known,
                        multi_class="ovr",
                        average="macro",
                        labels=list(range(n_classes)),
                    )
                )
        except ValueError as exc:
            notes.append(f"roc_auc is undefined: {' '.join(str(exc).split())}")
    if len(y_known):
        out["log_loss"] = float(metrics.log_loss(y_known, p_known, labels=list(range(n_classes))))
    return out, notes


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    from sklearn import metrics

    return {
        "rmse": float(metrics.root_mean_squared_error(y_true, y_pred)),
        "mae": float(metrics.mean_absolute_error(y_true, y_pred)),
        "r2": float(metrics.r2_score(y_true, y_pred)),
    }
