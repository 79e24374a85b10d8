"""The paired bootstrap behind compare gates, on simulated data whose truth is known."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from mlopsctl.release.stats import Scored, decide, metric_value, paired_bootstrap

SIMULATIONS = 200


def _pair(rng: np.random.Generator, n: int, acc_a: float, acc_b: float) -> tuple[Scored, Scored]:
    """Two classifiers on the same n rows whose correctness is correlated (shared hard rows),
    with population accuracies acc_a and acc_b."""
    y = rng.integers(0, 2, n)
    hard = rng.random(n)
    right_a = hard < acc_a
    right_b = np.where(rng.random(n) < 0.5, hard < acc_b, rng.random(n) < acc_b)
    return _scored(y, right_a), _scored(y, right_b)


def _scored(y: np.ndarray, right: np.ndarray) -> Scored:
    pred = np.where(right, y, 1 - y)
    p = np.where(pred == 1, 0.8, 0.2)
    return Scored("classification", y, pred, np.stack([1 - p, p], axis=1), 2)


def test_interval_covers_the_true_difference_at_about_the_stated_rate() -> None:
    rng = np.random.default_rng(7)
    truth = 0.84 - 0.80
    covered = 0
    for i in range(SIMULATIONS):
        a, b = _pair(rng, 400, 0.84, 0.80)
        interval = paired_bootstrap("accuracy", a, b, level=0.95, resamples=1000, seed=i)
        covered += interval.low <= truth <= interval.high
    # Binomial sd at 200 simulations is 0.015; the percentile bootstrap runs a little short.
    assert 0.90 <= covered / SIMULATIONS <= 0.99


def test_equal_models_pass_a_must_improve_gate_no_more_than_the_error_rate() -> None:
    rng = np.random.default_rng(11)
    passes = 0
    for i in range(SIMULATIONS):
        a, b = _pair(rng, 400, 0.80, 0.80)
        interval = paired_bootstrap("accuracy", a, b, level=0.95, resamples=1000, seed=i)
        passes += decide(interval.low, interval.high, 0.0) == "pass"
    # One side of a 95% interval: 2.5% expected; 0.05 allows for simulation noise.
    assert passes / SIMULATIONS <= 0.05


def test_same_seed_same_interval_other_seed_other_interval() -> None:
    a, b = _pair(np.random.default_rng(3), 500, 0.85, 0.80)
    first = paired_bootstrap("log_loss", a, b, seed=5)
    again = paired_bootstrap("log_loss", a, b, seed=5)
    other = paired_bootstrap("log_loss", a, b, seed=6)
    assert (first.low, first.high) == (again.low, again.high)
    assert (first.low, first.high) != (other.low, other.high)


def test_decide() -> None:
    assert decide(0.01, 0.03, 0.0) == "pass"
    assert decide(-0.03, -0.01, 0.0) == "fail"
    assert decide(-0.01, 0.01, 0.0) == "inconclusive"


@pytest.mark.parametrize("metric", ["accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"])
def test_point_values_match_scikit_learn(metric: str) -> None:
    from sklearn import metrics

    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 300)
    p = np.clip(0.5 * y + rng.random(300) * 0.6, 0.01, 0.99).round(2)  # ties included
    pred = (p > 0.5).astype(int)
    scored = Scored("classification", y, pred, np.stack([1 - p, p], axis=1), 2)
    expected: dict[str, Any] = {
        "accuracy": metrics.accuracy_score(y, pred),
        "precision": metrics.precision_score(y, pred),
        "recall": metrics.recall_score(y, pred),
        "f1": metrics.f1_score(y, pred),
        "roc_auc": metrics.roc_auc_score(y, p),
        "log_loss": metrics.log_loss(y, np.stack([1 - p, p], axis=1)),
    }
    assert metric_value(metric, scored) == pytest.approx(expected[metric], rel=1e-9)


@pytest.mark.parametrize("metric", ["rmse", "mae", "r2"])
def test_regression_metrics_and_direction(metric: str) -> None:
    from sklearn import metrics

    rng = np.random.default_rng(4)
    y = rng.normal(size=2000)
    good = Scored("regression", y, y + rng.normal(0, 0.3, 2000))
    bad = Scored("regression", y, y + rng.normal(0, 0.6, 2000))
    expected = {
        "rmse": metrics.root_mean_squared_error(y, good.pred),
        "mae": metrics.mean_absolute_error(y, good.pred),
        "r2": metrics.r2_score(y, good.pred),
    }[metric]
    assert metric_value(metric, good) == pytest.approx(expected, rel=1e-9)
    # Improvement is positive for the better model whichever way the metric points.
    interval = paired_bootstrap(metric, good, bad, resamples=300, seed=0)
    assert interval.low > 0


def test_bootstrap_is_vectorised_fast_enough() -> None:
    import time

    a, b = _pair(np.random.default_rng(9), 100_000, 0.85, 0.84)
    start = time.perf_counter()
    paired_bootstrap("accuracy", a, b, resamples=1000, seed=0)
    # Generous against slow CI machines; bench/release.py holds the < 1 s goal.
    assert time.perf_counter() - start < 5


# -- roc_auc: DeLong's test ---------------------------------------------------------------


def _auc_pair(
    rng: np.random.Generator, n: int, shift_a: float, shift_b: float
) -> tuple[Scored, Scored]:
    """Two scorers of the same rows: positives shifted up by shift_a / shift_b, with noise
    correlated between the models (rho 0.5). True AUC = Phi(shift / sqrt(2))."""
    y = rng.integers(0, 2, n)
    shared, own_a, own_b = rng.normal(size=(3, n))
    noise_a = np.sqrt(0.5) * shared + np.sqrt(0.5) * own_a
    noise_b = np.sqrt(0.5) * shared + np.sqrt(0.5) * own_b

    def scored(score: np.ndarray) -> Scored:
        p = 1.0 / (1.0 + np.exp(-score))
        return Scored("classification", y, (p > 0.5).astype(int), np.stack([1 - p, p], 1), 2)

    return scored(y * shift_a + noise_a), scored(y * shift_b + noise_b)


def _delong_by_definition(y: np.ndarray, sa: np.ndarray, sb: np.ndarray) -> tuple[float, float]:
    """Delta and its variance straight from DeLong's placement values: an m x n comparison
    matrix per model, no ranks."""
    pos, neg = y == 1, y == 0
    m, n = pos.sum(), neg.sum()
    v10, v01, aucs = [], [], []
    for s in (sa, sb):
        psi = (s[pos][:, None] > s[neg][None, :]) + 0.5 * (s[pos][:, None] == s[neg][None, :])
        aucs.append(psi.mean())
        v10.append(psi.mean(axis=1))
        v01.append(psi.mean(axis=0))
    s10, s01 = np.cov(np.stack(v10)), np.cov(np.stack(v01))
    c = np.array([1.0, -1.0])
    return aucs[0] - aucs[1], c @ s10 @ c / m + c @ s01 @ c / n


def test_delong_matches_its_definition_with_ties() -> None:
    from statistics import NormalDist

    rng = np.random.default_rng(21)
    a, b = _auc_pair(rng, 300, 1.0, 0.6)
    # Rounded scores: many ties, which count as half a win.
    a.proba, b.proba = a.proba.round(2), b.proba.round(2)
    delta, variance = _delong_by_definition(a.y, a.proba[:, 1], b.proba[:, 1])
    interval = paired_bootstrap("roc_auc", a, b, level=0.9)
    z = NormalDist().inv_cdf(0.95)
    assert interval.method == "delong"
    assert interval.delta == pytest.approx(delta, abs=1e-12)
    assert interval.high - interval.delta == pytest.approx(z * np.sqrt(variance), rel=1e-9)
    assert interval.candidate == pytest.approx(metric_value("roc_auc", a), abs=1e-12)


def test_delong_interval_covers_the_true_auc_difference() -> None:
    from statistics import NormalDist

    phi = NormalDist().cdf
    truth = phi(1.0 / np.sqrt(2)) - phi(0.7 / np.sqrt(2))
    rng = np.random.default_rng(8)
    covered = 0
    for _ in range(SIMULATIONS):
        a, b = _auc_pair(rng, 400, 1.0, 0.7)
        interval = paired_bootstrap("roc_auc", a, b, level=0.95)
        covered += interval.low <= truth <= interval.high
    assert 0.90 <= covered / SIMULATIONS <= 0.99


def test_equal_auc_models_rarely_pass_a_must_improve_gate() -> None:
    rng = np.random.default_rng(12)
    passes = 0
    for _ in range(SIMULATIONS):
        a, b = _auc_pair(rng, 400, 0.8, 0.8)
        interval = paired_bootstrap("roc_auc", a, b, level=0.95)
        passes += decide(interval.low, interval.high, 0.0) == "pass"
    assert passes / SIMULATIONS <= 0.05


def test_delong_on_100k_rows_is_fast() -> None:
    import time

    a, b = _auc_pair(np.random.default_rng(9), 100_000, 0.8, 0.75)
    start = time.perf_counter()
    interval = paired_bootstrap("roc_auc", a, b)
    # bench/release.py holds the goal (< 1 s for what a 1,000-resample bootstrap would do).
    assert time.perf_counter() - start < 1.0
    assert interval.low > 0


@pytest.mark.parametrize("metric", ["precision", "recall", "f1"])
def test_multiclass_macro_metrics_match_scikit_learn_and_compare(metric: str) -> None:
    from sklearn import metrics

    rng = np.random.default_rng(5)
    n, k = 3000, 4
    y = rng.integers(0, k, n)
    noise = rng.integers(0, k, n)
    good_pred = np.where(rng.random(n) < 0.8, y, noise)
    bad_pred = np.where(rng.random(n) < 0.6, y, noise)
    proba = np.full((n, k), 1.0 / k)
    good = Scored("classification", y, good_pred, proba, k)
    bad = Scored("classification", y, bad_pred, proba, k)
    score = getattr(metrics, f"{metric}_score")
    expected = score(y, good_pred, labels=list(range(k)), average="macro", zero_division=0.0)
    assert metric_value(metric, good) == pytest.approx(expected, rel=1e-12)
    interval = paired_bootstrap(metric, good, bad, resamples=300, seed=0)
    assert interval.low > 0
