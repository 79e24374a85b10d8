"""Paired bootstrap of a metric difference between two models scored on the same rows.

Every resample draws the same row indices for both models, so what varies between rows (hard
and easy examples) cancels out of the difference: the interval is the one of the *difference*,
much narrower than two separate intervals would suggest. Resamples are drawn as an index matrix
in batches, never one Python iteration per resample.

Metrics are written as functions of column sums over the resampled rows ("components"), so one
gather and one sum per batch serve every metric but roc_auc.

roc_auc is compared with DeLong's test for two correlated ROC curves instead (DeLong, DeLong and
Clarke-Pearson 1988, in the midrank form of Sun and Xu 2014; what R's pROC `roc.test` uses for
paired curves by default): the variance of the AUC difference comes exactly from each row's
placement values, in O(n log n), where a bootstrap has to re-rank every resample (3.6 s for
1,000 x 100k rows). The interval is the normal one, delta +/- z * se; `resamples` does not apply.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlopsctl.errors import UsageError

if TYPE_CHECKING:
    import numpy as np

# Cells per batch (resamples x rows): large enough to amortise numpy's overhead, small enough
# that the index matrix and its gather stay in cache-friendly tens of megabytes.
_BATCH_CELLS = 2_500_000
_EPS = 1e-15

COMPARABLE = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "rmse", "mae", "r2")


@dataclass
class Scored:
    """One model's predictions on the evaluation rows, in row order.

    Classification: ``y`` and ``pred`` are class indices (-1: a label the model never saw),
    ``proba`` is (n, k). Regression: ``y`` and ``pred`` are floats, ``proba`` is None."""

    task: str
    y: Any
    pred: Any
    proba: Any = None
    n_classes: int = 0

    def subset(self, mask: Any) -> Scored:
        proba = None if self.proba is None else self.proba[mask]
        return Scored(self.task, self.y[mask], self.pred[mask], proba, self.n_classes)


SumsStat = Callable[["np.ndarray", int], "np.ndarray"]


def _components(metric: str, s: Scored) -> tuple[np.ndarray, SumsStat]:
    """(n, K) per-row components and the metric as a function of their column sums (B, K)."""
    import numpy as np

    if s.task == "classification":
        if metric == "accuracy":
            return (s.y == s.pred).astype("float64")[:, None], lambda t, n: t[:, 0] / n
        if metric == "log_loss":
            if s.proba is None:
                raise UsageError("log_loss needs predict_proba, which the model lacks")
            rows = np.arange(len(s.y))
            p_true = np.where(s.y >= 0, s.proba[rows, np.clip(s.y, 0, None)], 0.0)
            loss = -np.log(np.clip(p_true, _EPS, 1.0))
            return loss[:, None], lambda t, n: t[:, 0] / n
        if metric in ("precision", "recall", "f1") and s.n_classes > 2:
            return _macro_components(metric, s)
        if metric in ("precision", "recall", "f1"):
            tp = ((s.y == 1) & (s.pred == 1)).astype("float64")
            pos, pred_pos = (s.y == 1).astype("float64"), (s.pred == 1).astype("float64")
            comps = np.stack([tp, pos, pred_pos], axis=1)
            if metric == "precision":
                return comps, lambda t, n: _ratio(t[:, 0], t[:, 2])
            if metric == "recall":
                return comps, lambda t, n: _ratio(t[:, 0], t[:, 1])
            return comps, lambda t, n: _ratio(2 * t[:, 0], t[:, 1] + t[:, 2])
    else:
        err = s.pred - s.y
        if metric == "mae":
            return np.abs(err)[:, None], lambda t, n: t[:, 0] / n
        if metric == "rmse":
            return (err**2)[:, None], lambda t, n: np.sqrt(t[:, 0] / n)
        if metric == "r2":
            comps = np.stack([err**2, s.y, s.y**2], axis=1)

            def r2(t: np.ndarray, n: int) -> np.ndarray:
                total = t[:, 2] - t[:, 1] ** 2 / n
                return 1.0 - _ratio(t[:, 0], total)

            return comps, r2
    raise UsageError(
        f"cannot compare models on {metric!r} for a {s.task} model",
        f"comparable metrics: {', '.join(COMPARABLE)}",
    )


def _macro_components(metric: str, s: Scored) -> tuple[np.ndarray, SumsStat]:
    """Multiclass precision/recall/f1 as macro averages over every class the model knows
    (scikit-learn's average="macro" with labels=range(k), zero_division=0): per class the
    true positives, actual and predicted counts."""
    import numpy as np

    k = s.n_classes
    classes = np.arange(k)
    actual = s.y[:, None] == classes
    predicted = s.pred[:, None] == classes
    comps = np.concatenate([actual & predicted, actual, predicted], axis=1).astype("float64")

    def macro(t: np.ndarray, n: int) -> np.ndarray:
        tp, pos, pred_pos = t[:, :k], t[:, k : 2 * k], t[:, 2 * k :]
        if metric == "precision":
            per_class = _ratio(tp, pred_pos)
        elif metric == "recall":
            per_class = _ratio(tp, pos)
        else:
            per_class = _ratio(2 * tp, pos + pred_pos)
        return per_class.mean(axis=1)

    return comps, macro


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    import numpy as np

    # sklearn's zero_division=0.0: a resample without positives scores 0, not NaN.
    return np.divide(num, den, out=np.zeros_like(num, dtype="float64"), where=den > 0)


def higher_is_better(metric: str) -> bool:
    from mlopsctl.components.metrics import LOWER_IS_BETTER

    return metric not in LOWER_IS_BETTER


@dataclass
class Interval:
    candidate: float  # metric of the candidate on all rows
    champion: float
    delta: float  # improvement: candidate minus champion, sign flipped for lower-is-better
    low: float
    high: float
    level: float
    resamples: int  # 0 for DeLong's test
    method: str = "bootstrap"  # or "delong" (roc_auc)


def paired_bootstrap(
    metric: str,
    candidate: Scored,
    champion: Scored,
    *,
    level: float = 0.95,
    resamples: int = 1000,
    seed: int | None = 0,
) -> Interval:
    """Interval of the improvement of ``candidate`` over ``champion`` on ``metric``, both scored
    on the same rows; positive means the candidate is better. A paired percentile bootstrap,
    except for roc_auc: DeLong's test (see the module docstring)."""
    import numpy as np

    n = len(candidate.y)
    if n != len(champion.y):
        raise ValueError("paired bootstrap needs both models scored on the same rows")
    if n == 0:
        raise UsageError("no rows to compare the models on")
    sign = 1.0 if higher_is_better(metric) else -1.0
    rng = np.random.default_rng(seed)
    if metric == "roc_auc":
        return _delong(candidate, champion, level)
    comps_a, stat_a = _components(metric, candidate)
    comps_b, stat_b = _components(metric, champion)
    k = comps_a.shape[1]
    comps = np.concatenate([comps_a, comps_b], axis=1)
    full = comps.sum(axis=0)[None, :]
    a_all, b_all = float(stat_a(full[:, :k], n)[0]), float(stat_b(full[:, k:], n)[0])
    deltas = _sums_bootstrap(comps, k, metric, stat_a, stat_b, resamples, rng)
    deltas = sign * deltas
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(deltas, [tail, 1.0 - tail])
    return Interval(
        candidate=a_all,
        champion=b_all,
        delta=sign * (a_all - b_all),
        low=float(low),
        high=float(high),
        level=level,
        resamples=resamples,
    )


def _sums_bootstrap(
    comps: np.ndarray,
    k: int,
    metric: str,
    stat_a: SumsStat,
    stat_b: SumsStat,
    resamples: int,
    rng: np.random.Generator,
) -> np.ndarray:
    import numpy as np

    n = len(comps)
    deltas = np.empty(resamples)
    batch = max(1, _BATCH_CELLS // n)
    mean_metric = k == 1 and metric in ("accuracy", "log_loss", "mae")
    # Rows of 0/1 components (precision, recall, f1) take a handful of distinct values: gather
    # a one-byte code per row and count codes, instead of gathering every float component.
    patterns, codes = comps, np.zeros(0, dtype=np.int8)
    if not mean_metric:
        patterns, inverse = np.unique(comps, axis=0, return_inverse=True)
        codes = inverse.reshape(-1).astype(np.int8)
    coded = not mean_metric and len(patterns) <= 64
    diff = comps[:, 0] - comps[:, 1] if mean_metric else None
    for start in range(0, resamples, batch):
        size = min(batch, resamples - start)
        idx = rng.integers(0, n, size=(size, n), dtype=np.int32)
        if diff is not None:
            # The difference of means is the mean of differences: one gather.
            deltas[start : start + size] = diff[idx].sum(axis=1) / n
            continue
        if coded:
            drawn = codes[idx]
            counts = np.stack(
                [(drawn == c).sum(axis=1) for c in range(len(patterns))], axis=1
            ).astype("float64")
        else:
            flat = idx.astype(np.int64) + (np.arange(size, dtype=np.int64) * n)[:, None]
            counts = np.bincount(flat.ravel(), minlength=size * n).reshape(size, n)
            counts = counts.astype("float64")
        sums = counts @ (patterns if coded else comps)
        deltas[start : start + size] = stat_a(sums[:, :k], n) - stat_b(sums[:, k:], n)
    return deltas


def _binary_scores(a: Scored, b: Scored) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if a.n_classes != 2 or a.proba is None or b.proba is None:
        raise UsageError(
            "a compare gate on roc_auc needs binary classifiers with predict_proba",
            "compare multiclass models on accuracy, log_loss or macro precision, recall or f1",
        )
    keep = (a.y >= 0) & (b.y >= 0)
    y = a.y[keep] == 1
    if y.all() or not y.any():
        raise UsageError("roc_auc is undefined: the evaluation rows hold a single class")
    return y, a.proba[keep, 1], b.proba[keep, 1]


def _delong(a: Scored, b: Scored, level: float) -> Interval:
    import math
    from statistics import NormalDist

    import numpy as np

    y, scores_a, scores_b = _binary_scores(a, b)
    m, n = int(y.sum()), int((~y).sum())
    aucs, v10, v01 = [], [], []
    for scores in (scores_a, scores_b):
        pos, neg = scores[y], scores[~y]
        ranks_all = _midranks(np.concatenate([pos, neg]))
        ranks_pos, ranks_neg = _midranks(pos), _midranks(neg)
        aucs.append((ranks_all[:m].sum() - m * (m + 1) / 2.0) / (m * n))
        # Placement values: the share of negatives each positive beats (ties half), and the
        # share of positives each negative loses to.
        v10.append((ranks_all[:m] - ranks_pos) / n)
        v01.append(1.0 - (ranks_all[m:] - ranks_neg) / m)
    s10 = np.cov(np.stack(v10)) if m > 1 else np.zeros((2, 2))
    s01 = np.cov(np.stack(v01)) if n > 1 else np.zeros((2, 2))
    contrast = np.array([1.0, -1.0])
    variance = float(contrast @ s10 @ contrast / m + contrast @ s01 @ contrast / n)
    se = math.sqrt(max(variance, 0.0))
    z = NormalDist().inv_cdf(1.0 - (1.0 - level) / 2.0)
    delta = float(aucs[0] - aucs[1])
    return Interval(
        candidate=float(aucs[0]),
        champion=float(aucs[1]),
        delta=delta,
        low=delta - z * se,
        high=delta + z * se,
        level=level,
        resamples=0,
        method="delong",
    )


def _midranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of their positions (scipy's rankdata)."""
    import numpy as np

    order = np.argsort(values, kind="stable")
    ordered = values[order]
    bounds = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1], True])
    means = (bounds[:-1] + bounds[1:] + 1) / 2.0
    ranks = np.empty(len(values))
    ranks[order] = np.repeat(means, np.diff(bounds))
    return ranks


def _tie_groups(scores: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, int]:
    """Per row: 2 x (rank of its distinct score) + label, so one count of these codes per
    resample holds the positives and negatives at every score level, in score order."""
    import numpy as np

    levels, rank = np.unique(scores, return_inverse=True)
    return (rank.reshape(-1).astype(np.int64) * 2 + y.astype(np.int64)), 2 * len(levels)


def _grouped_auc(counts: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC from (B, 2L) counts of (score level, label), ties counted as half."""
    import numpy as np

    neg = counts[:, 0::2].astype("float64")
    pos = counts[:, 1::2].astype("float64")
    below = np.cumsum(neg, axis=1) - neg
    wins = (pos * (below + 0.5 * neg)).sum(axis=1)
    return _ratio(wins, pos.sum(axis=1) * neg.sum(axis=1))


def metric_value(metric: str, scored: Scored) -> float:
    """The metric on all rows, computed the way the bootstrap computes it."""
    import numpy as np

    if metric == "roc_auc":
        keep = scored.y >= 0
        if scored.proba is None or scored.n_classes != 2:
            raise UsageError("roc_auc here needs a binary classifier with predict_proba")
        groups, width = _tie_groups(scored.proba[keep, 1], scored.y[keep] == 1)
        return float(_grouped_auc(np.bincount(groups, minlength=width)[None, :])[0])
    comps, stat = _components(metric, scored)
    return float(stat(comps.sum(axis=0)[None, :], len(scored.y))[0])


def decide(low: float, high: float, bound: float) -> str:
    """pass: the whole interval clears the bound; fail: the whole interval misses it;
    inconclusive: the data cannot tell."""
    if low > bound:
        return "pass"
    if high < bound:
        return "fail"
    return "inconclusive"
