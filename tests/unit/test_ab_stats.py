"""The A/B statistics on simulated experiments with a known effect (seeded, vectorised with
numpy: each test runs hundreds or thousands of experiments in well under a second)."""

from __future__ import annotations

import numpy as np
import pytest

from mlopsctl.release import abstats
from mlopsctl.release.abstats import Sums

ALPHA = 0.05


def _proportion_sums(rng: np.random.Generator, sims: int, n: int, p: float) -> Sums:
    k = rng.binomial(n, p, size=sims).astype("float64")
    return Sums(np.full(sims, float(n)), k, k)


def test_proportion_interval_covers_the_true_effect_at_the_nominal_rate() -> None:
    rng = np.random.default_rng(1)
    sims, n, p0, p1 = 500, 4000, 0.10, 0.12
    est = abstats.estimate(
        "proportion", _proportion_sums(rng, sims, n, p1), _proportion_sums(rng, sims, n, p0)
    )
    low, high, _ = abstats.fixed_interval(est, ALPHA)
    covered = float(((low <= p1 - p0) & (p1 - p0 <= high)).mean())
    assert 0.925 <= covered <= 0.975, covered
    # The always-valid sequence is wider: it covers at least as often.
    tau2 = abstats.mixture_tau2(est.se, 2 * n, 2 * n, ALPHA)
    s_low, s_high, _ = abstats.msprt(est.delta, est.se, tau2, ALPHA)
    assert float(((s_low <= p1 - p0) & (p1 - p0 <= s_high)).mean()) >= covered
    assert np.all(s_high - s_low > high - low)


def test_welch_interval_on_heavy_tailed_means_covers_at_the_nominal_rate() -> None:
    rng = np.random.default_rng(2)
    sims, n1, n0 = 500, 1500, 2500
    sigma = 1.0
    y0 = rng.lognormal(0.0, sigma, size=(sims, n0))
    y1 = rng.lognormal(0.0, sigma, size=(sims, n1)) * 1.05
    truth = 0.05 * np.exp(sigma**2 / 2)  # E[1.05 X] - E[X]
    est = abstats.estimate("mean", Sums.of(y1), Sums.of(y0))
    assert np.all(np.isfinite(est.df)) and np.all(est.df > 1000)  # Welch's df, unequal arms
    low, high, _ = abstats.fixed_interval(est, ALPHA)
    covered = float(((low <= truth) & (truth <= high)).mean())
    assert 0.925 <= covered <= 0.975, covered


def test_delta_method_ratio_interval_covers_the_true_ratio_difference() -> None:
    rng = np.random.default_rng(3)
    sims, n = 500, 2000

    def arm(rate: float) -> Sums:
        visits = rng.poisson(3.0, size=(sims, n)) + 1  # denominator per unit
        clicks = rng.binomial(visits, rate)  # numerator per unit
        return Sums.of(clicks, d=visits)

    est = abstats.estimate("ratio", arm(0.22), arm(0.20))
    low, high, _ = abstats.fixed_interval(est, ALPHA)
    covered = float(((low <= 0.02) & (high >= 0.02)).mean())
    assert 0.925 <= covered <= 0.975, covered


def test_cuped_keeps_the_estimate_unbiased_and_cuts_the_variance() -> None:
    rng = np.random.default_rng(4)
    sims, n = 500, 2000
    x0, x1 = rng.normal(10, 3, (sims, n)), rng.normal(10, 3, (sims, n))
    y0 = x0 + rng.normal(0, 1, (sims, n))
    y1 = x1 + rng.normal(0, 1, (sims, n)) + 0.1
    plain = abstats.estimate("mean", Sums.of(y1), Sums.of(y0))
    cuped = abstats.estimate("mean", Sums.of(y1, x1), Sums.of(y0, x0), cuped=True)
    assert abs(float(np.mean(cuped.delta)) - 0.1) < 0.005
    assert float(np.mean(cuped.se**2)) < 0.2 * float(np.mean(plain.se**2))  # corr 0.95
    low, high, _ = abstats.fixed_interval(cuped, ALPHA)
    covered = float(((low <= 0.1) & (high >= 0.1)).mean())
    assert 0.925 <= covered <= 0.975, covered


def test_aa_peeked_daily_for_30_days_sequential_stays_below_alpha_naive_does_not() -> None:
    """A/A tests, looked at every day for 30 days: stopping at the first day the naive z-test
    says p < 0.05 finds an effect far more often than 5% of the time; the mixture SPRT's
    confidence sequence, at the same looks, stays below 5%."""
    rng = np.random.default_rng(5)
    sims, days, per_day, p = 2000, 30, 200, 0.10
    k0 = np.cumsum(rng.binomial(per_day, p, size=(sims, days)), axis=1).astype("float64")
    k1 = np.cumsum(rng.binomial(per_day, p, size=(sims, days)), axis=1).astype("float64")
    n = np.broadcast_to(per_day * np.arange(1, days + 1, dtype="float64"), (sims, days))
    est = abstats.estimate("proportion", Sums(n, k1, k1), Sums(n, k0, k0))
    _, _, p_fixed = abstats.fixed_interval(est, ALPHA)
    naive = float((p_fixed < ALPHA).any(axis=1).mean())
    tau2 = abstats.mixture_tau2(est.se, 2 * n, 2 * per_day * days, ALPHA)
    low, high, p_seq = abstats.msprt(est.delta, est.se, tau2, ALPHA)
    low, high, p_seq = abstats.always_valid(low, high, p_seq, axis=1)
    sequential = float(((low > 0) | (high < 0)).any(axis=1).mean())
    assert sequential <= ALPHA, sequential
    assert naive > 2 * ALPHA, naive  # the demonstration: peeking inflates the naive test
    # The p-value and the sequence agree: p <= alpha exactly when 0 is outside.
    assert np.array_equal((p_seq[:, -1] <= ALPHA), (low[:, -1] > 0) | (high[:, -1] < 0))


def test_sequential_test_finds_a_real_effect() -> None:
    rng = np.random.default_rng(6)
    sims, days, per_day = 300, 30, 500
    k0 = np.cumsum(rng.binomial(per_day, 0.10, size=(sims, days)), axis=1).astype("float64")
    k1 = np.cumsum(rng.binomial(per_day, 0.12, size=(sims, days)), axis=1).astype("float64")
    n = np.broadcast_to(per_day * np.arange(1, days + 1, dtype="float64"), (sims, days))
    est = abstats.estimate("proportion", Sums(n, k1, k1), Sums(n, k0, k0))
    tau2 = abstats.mixture_tau2(est.se, 2 * n, 2 * per_day * days, ALPHA)
    low, high, _ = abstats.always_valid(*abstats.msprt(est.delta, est.se, tau2, ALPHA), axis=1)
    assert float((low[:, -1] > 0).mean()) > 0.9
    assert float(((low[:, -1] <= 0.02) & (high[:, -1] >= 0.02)).mean()) >= 0.95


def test_srm_found_at_50_5_to_49_5_with_200000_units() -> None:
    _, p = abstats.srm([99_000, 101_000], [50, 50])
    assert p < 1e-4
    rng = np.random.default_rng(7)
    treated = rng.binomial(200_000, 0.5, size=1000)
    _, p = abstats.srm(np.stack([200_000 - treated, treated], axis=1), [50, 50])
    assert float((p < 0.001).mean()) <= 0.005  # a fair split is rarely flagged
    # Unequal weights: 90/10 is expected, not a mismatch.
    _, p = abstats.srm([180_200, 19_800], [90, 10])
    assert p > 0.01


def test_required_units_give_the_planned_power() -> None:
    var = 0.1 * 0.9
    n = abstats.required_units(var, var, (0.5, 0.5), 0.01, ALPHA, 0.8)
    # The textbook two-proportion size: 2 (1.96 + 0.8416)^2 p (1 - p) / d^2 per arm.
    assert n == pytest.approx(2 * 2 * (1.959964 + 0.841621) ** 2 * var / 0.0001, rel=1e-3)
    se = np.sqrt(var / (n / 2) * 2)
    assert abstats.power_at(float(se), 0.01, ALPHA) == pytest.approx(0.8, abs=0.005)
    # A 90/10 split needs more units for the same power.
    assert abstats.required_units(var, var, (0.9, 0.1), 0.01, ALPHA, 0.8) > 2 * n


def test_verdict_and_winsorize() -> None:
    assert abstats.verdict(0.1, 0.3, 0.0) == "pass"
    assert abstats.verdict(-0.3, -0.1, 0.0) == "fail"
    assert abstats.verdict(-0.1, 0.1, 0.0) == "inconclusive"
    values = np.concatenate([np.zeros(980), np.arange(20) * 1000.0])
    clipped, low, high = abstats.winsorize(values, 0.99)
    assert low == 0.0 and high < 19_000 and clipped.max() == high
