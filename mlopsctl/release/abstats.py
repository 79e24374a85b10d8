"""The statistics of an A/B test on business outcomes, on sufficient statistics per arm.

Every function takes sums (units, sum of y, sum of y squared, ...) rather than the units
themselves, so one call judges one experiment or, with numpy arrays in place of numbers, many
simulated experiments (or many looks) at once.

* Sample-ratio mismatch: Pearson's chi-square of the units per arm against the configured
  weights (`srm`).
* The difference treatment - control and its standard error: two proportions (Wald, unpooled),
  Welch's t on per-unit means, a ratio of sums by the delta method (`estimate`); CUPED (Deng et
  al. 2013) subtracts theta * (x - mean x) with theta pooled over both arms, where x is a
  pre-period value of the unit.
* Fixed horizon: the 1 - alpha interval (t with Welch-Satterthwaite degrees of freedom for
  means, z otherwise), the units needed to find ``mde`` with ``power`` (`required_units`) and the
  power the units so far have (`power_at`).
* Always valid: the normal mixture SPRT (Robbins 1970; Johari, Pekelis and Walsh, "Always valid
  inference", 2017; the asymptotic form of Waudby-Smith et al. 2023 that Eppo and Optimizely
  use). With the estimate ``d ~ N(theta, V)`` and a N(0, tau^2) mixture over the effect, the
  likelihood ratio against theta_0 is
  ``L = sqrt(V / (V + tau^2)) * exp(tau^2 (d - theta_0)^2 / (2 V (V + tau^2)))``, a martingale
  under theta_0, so by Ville's inequality P(L ever reaches 1/alpha) <= alpha, however often one
  looks. The always-valid p-value is the running minimum of 1/L(0), and the confidence sequence
  is every theta_0 with L < 1/alpha:
  ``d +- sqrt(V (V + tau^2) / tau^2 * (log((V + tau^2) / V) + 2 log(1/alpha)))``, intersected
  over the looks. tau^2 is tuned to be tightest at a planned number of units (`mixture_tau2`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# Degrees of freedom past which Welch's t is the normal distribution for our purposes. The
# distributions come from scipy.special: scipy.stats costs seconds to import on a loaded machine.
_Z_DF = 1e6


@dataclass
class Sums:
    """Sufficient statistics of one arm for one metric over its units: ``n`` units, the sums of
    the unit's value ``y`` and its square; for CUPED the pre-period value ``x`` (sums of x, x^2,
    x*y); for a ratio metric the denominator ``d`` (sums of d, d^2, y*d). Numbers or numpy
    arrays of one shape."""

    n: Any
    y: Any
    yy: Any
    x: Any = 0.0
    xx: Any = 0.0
    xy: Any = 0.0
    d: Any = 0.0
    dd: Any = 0.0
    yd: Any = 0.0

    @classmethod
    def of(cls, y: Any, x: Any = None, d: Any = None) -> Sums:
        """The sums of per-unit arrays (1-D: one arm; 2-D: one arm of many experiments, units
        along the last axis)."""
        import numpy as np

        y = np.asarray(y, dtype="float64")
        sums = cls(y.shape[-1] * np.ones(y.shape[:-1]), y.sum(-1), (y * y).sum(-1))
        if x is not None:
            x = np.asarray(x, dtype="float64")
            sums.x, sums.xx, sums.xy = x.sum(-1), (x * x).sum(-1), (x * y).sum(-1)
        if d is not None:
            d = np.asarray(d, dtype="float64")
            sums.d, sums.dd, sums.yd = d.sum(-1), (d * d).sum(-1), (y * d).sum(-1)
        if y.ndim == 1:
            sums.n = float(y.shape[0])
        return sums


@dataclass
class Estimate:
    """treatment - control (``delta``), its standard error and the arms' values; ``df`` is
    Welch's degrees of freedom (inf: a z interval); ``theta`` the CUPED coefficient."""

    control: Any
    treatment: Any
    delta: Any
    se: Any
    df: Any
    var_control: Any  # the per-unit variance, for sample sizes
    var_treatment: Any
    theta: Any = None


def _var(n: Any, s: Any, ss: Any) -> Any:
    import numpy as np

    with np.errstate(divide="ignore", invalid="ignore"):
        return np.maximum((ss - s * s / n) / (n - 1), 0.0)


def _cov(n: Any, sa: Any, sb: Any, sab: Any) -> Any:
    import numpy as np

    with np.errstate(divide="ignore", invalid="ignore"):
        return (sab - sa * sb / n) / (n - 1)


def estimate(kind: str, treatment: Sums, control: Sums, *, cuped: bool = False) -> Estimate:
    """The difference for a ``proportion`` (y is 0/1), a ``mean`` or a ``ratio`` (sum y / sum
    d) metric; with ``cuped``, y adjusted by the pre-period x (proportion and mean only)."""
    import numpy as np

    t, c = treatment, control
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == "ratio":
            r1, r0 = t.y / t.d, c.y / c.d
            v1 = _delta_var(t, r1)
            v0 = _delta_var(c, r0)
            se = np.sqrt(v1 + v0)
            # Per-unit variances of the linearised ratio, for sample sizes.
            return Estimate(r0, r1, r1 - r0, se, np.inf, v0 * c.n, v1 * t.n)
        m1, m0 = t.y / t.n, c.y / c.n
        var1, var0 = _var(t.n, t.y, t.yy), _var(c.n, c.y, c.yy)
        theta = None
        if cuped:
            n = t.n + c.n
            sx, sy = t.x + c.x, t.y + c.y
            vx = _var(n, sx, t.xx + c.xx)
            cxy = _cov(n, sx, sy, t.xy + c.xy)
            theta = np.where(vx > 0, cxy / np.where(vx > 0, vx, 1.0), 0.0)
            mx = sx / n
            m1 = m1 - theta * (t.x / t.n - mx)
            m0 = m0 - theta * (c.x / c.n - mx)
            var1 = np.maximum(
                var1 - 2 * theta * _cov(t.n, t.x, t.y, t.xy) + theta**2 * _var(t.n, t.x, t.xx),
                0.0,
            )
            var0 = np.maximum(
                var0 - 2 * theta * _cov(c.n, c.x, c.y, c.xy) + theta**2 * _var(c.n, c.x, c.xx),
                0.0,
            )
        a, b = var1 / t.n, var0 / c.n
        se = np.sqrt(a + b)
        if kind == "proportion":
            df: Any = np.inf
        else:
            df = (a + b) ** 2 / (a * a / (t.n - 1) + b * b / (c.n - 1))
            df = np.where(np.isfinite(df), df, np.inf)
    return Estimate(m0, m1, m1 - m0, se, df, var0, var1, theta)


def _delta_var(s: Sums, ratio: Any) -> Any:
    """Var(sum y / sum d) by the delta method:
    (var y - 2 R cov(y, d) + R^2 var d) / (n mean(d)^2)."""
    import numpy as np

    mean_d = s.d / s.n
    inner = _var(s.n, s.y, s.yy) - 2 * ratio * _cov(s.n, s.y, s.d, s.yd)
    inner = inner + ratio**2 * _var(s.n, s.d, s.dd)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.maximum(inner, 0.0) / (s.n * mean_d**2)


# -- fixed horizon -------------------------------------------------------------------------------


def fixed_interval(est: Estimate, alpha: float) -> tuple[Any, Any, Any]:
    """(low, high, two-sided p of delta = 0): t with Welch's df where finite, else z."""
    import numpy as np
    from scipy.special import ndtr, ndtri, stdtr, stdtrit

    df = np.asarray(est.df, dtype="float64")
    finite = np.isfinite(df) & (df < _Z_DF)
    safe_df = np.where(finite, df, 1.0)
    q = np.where(finite, stdtrit(safe_df, 1 - alpha / 2), ndtri(1 - alpha / 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.abs(est.delta) / est.se
        p = np.where(finite, 2 * stdtr(safe_df, -z), 2 * ndtr(-z))
    return est.delta - q * est.se, est.delta + q * est.se, p


def required_units(
    var_control: float,
    var_treatment: float,
    shares: tuple[float, float],
    mde: float,
    alpha: float,
    power: float,
) -> int:
    """Units (both arms) a two-sided test at ``alpha`` needs to find a difference of ``mde``
    with probability ``power``, the arms getting ``shares`` (control, treatment) of the units:
    N = (z_{1-alpha/2} + z_power)^2 (var_c / w_c + var_t / w_t) / mde^2."""
    from scipy.special import ndtri

    w0, w1 = shares
    z = float(ndtri(1 - alpha / 2) + ndtri(power))
    spread = var_control / w0 + var_treatment / w1
    if mde == 0 or not math.isfinite(spread):
        return 0
    return math.ceil(z * z * spread / (mde * mde))


def power_at(se: float, mde: float, alpha: float) -> float:
    """The chance a two-sided test at ``alpha`` with standard error ``se`` finds ``mde``."""
    from scipy.special import ndtr, ndtri

    if not se > 0:
        return float("nan")
    return float(ndtr(abs(mde) / se - ndtri(1 - alpha / 2)))


# -- always valid --------------------------------------------------------------------------------


def mixture_tau2(se: Any, units: Any, horizon: float, alpha: float) -> Any:
    """The mixture variance tau^2 whose confidence sequence is tightest at ``horizon`` units:
    rho^2 = (2 log(1/alpha) + log(2 log(1/alpha) + 1)) / horizon (Waudby-Smith et al.), scaled
    by the per-unit variance n * se^2 (the plug-in of the asymptotic test)."""
    log_a = 2 * math.log(1 / alpha)
    rho2 = (log_a + math.log(log_a + 1)) / max(1.0, float(horizon))
    return rho2 * units * se * se


def msprt(delta: Any, se: Any, tau2: Any, alpha: float, null: float = 0.0) -> tuple[Any, Any, Any]:
    """(low, high, p) at one look: the 1 - alpha confidence sequence of the normal mixture SPRT
    and 1 / L (at most 1) against delta = ``null``. Take the running intersection and minimum
    over looks (`always_valid`)."""
    import numpy as np

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        v = se * se
        total = v + tau2
        half = np.sqrt(v * total / tau2 * (np.log(total / v) + 2 * math.log(1 / alpha)))
        log_l = 0.5 * np.log(v / total) + tau2 * (delta - null) ** 2 / (2 * v * total)
        p = np.minimum(1.0, np.exp(-log_l))
    ok = np.isfinite(half) & (se > 0)
    low = np.where(ok, delta - half, -np.inf)
    high = np.where(ok, delta + half, np.inf)
    return low, high, np.where(ok, p, 1.0)


def always_valid(low: Any, high: Any, p: Any, axis: int = -1) -> tuple[Any, Any, Any]:
    """The running intersection of the looks' sequences and the running minimum of their
    p-values, along ``axis`` (the looks in time order)."""
    import numpy as np

    return (
        np.maximum.accumulate(np.asarray(low, dtype="float64"), axis=axis),
        np.minimum.accumulate(np.asarray(high, dtype="float64"), axis=axis),
        np.minimum.accumulate(np.asarray(p, dtype="float64"), axis=axis),
    )


# -- sample-ratio mismatch -----------------------------------------------------------------------


def srm(counts: Any, weights: Any) -> tuple[Any, Any]:
    """(chi-square, p) of the unit counts per arm (last axis) against the weights."""
    import numpy as np
    from scipy.special import chdtrc

    counts = np.asarray(counts, dtype="float64")
    w = np.asarray(weights, dtype="float64")
    expected = counts.sum(-1, keepdims=True) * w / w.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = np.where(expected > 0, (counts - expected) ** 2 / expected, 0.0).sum(-1)
    return stat, chdtrc(counts.shape[-1] - 1, stat)


# -- verdicts ------------------------------------------------------------------------------------


def verdict(low: float, high: float, bound: float) -> str:
    """pass: the whole interval above the bound; fail: wholly below; else inconclusive."""
    if low > bound:
        return "pass"
    if high < bound:
        return "fail"
    return "inconclusive"


def winsorize(values: Any, quantile: float) -> tuple[Any, float, float]:
    """Values clipped to their [1 - q, q] quantiles (q > 0.5), and the two caps."""
    import numpy as np

    values = np.asarray(values, dtype="float64")
    if values.size == 0:
        return values, math.nan, math.nan
    q = max(quantile, 1 - quantile)
    low, high = np.quantile(values, [1 - q, q])
    return np.clip(values, low, high), float(low), float(high)
