"""Drift statistics, vectorised numpy, in two forms: on raw samples (exact, the same numbers as
scipy) and on the binned summaries a stored profile keeps (close to the exact ones).

Exact, from two samples (agree with scipy to 1e-6, tests/unit/test_monitor_stats.py):
  ks_statistic             = scipy.stats.ks_2samp(a, b).statistic
  ks_pvalue(d, n, m)       = scipy.stats.ks_2samp(a, b, method="asymp").pvalue (the Kolmogorov
                             distribution of sqrt(n*m/(n+m)) * D; scipy's default switches to an
                             exact path count below 10,000 rows, which differs a little)
  wasserstein              = scipy.stats.wasserstein_distance(a, b)
From counts over the same categories/bins (exact by definition):
  jensenshannon(p, q)      = scipy.spatial.distance.jensenshannon(p, q) (natural log)
  chi2_homogeneity(a, b)   = scipy.stats.chi2_contingency([a, b], correction=False)[:2]
  psi(p, q)                = sum((q - p) * ln(q / p)), shares clipped below at 1e-4 (Evidently's)
  linf(p, q)               = max |p - q| of the shares

From a profile sketch (binned, mlopsctl/models/profile.py): the baseline's distribution function
is known exactly at its 101 percentiles, with the sum of the values in each bin; the current
data are counted (and summed) in the same right-closed bins, with the mass below the baseline
minimum and above its maximum kept apart (count and distance sum). Then
  * KS is the largest gap between the two distribution functions at the 101 edges and just
    below the minimum: the exact KS when both samples only take edge values, otherwise a lower
    bound that misses at most the gap inside one percentile bin;
  * Wasserstein-1 is the integral of |F - G|: over each bin where F - G keeps its sign it is
    exact (integration by parts needs only the counts and sums), where it changes sign both
    functions are taken as linear across the bin; E[(min - X)+] and E[(X - max)+] of the
    current rows outside the baseline range are exact. In practice it agrees with scipy's to
    about 1e-4 of a standard deviation. (Profiles without sums take each bin's rows as spread
    evenly across it);
  * PSI and Jensen-Shannon use 20 bins of 5 percentiles each (values outside the range fall in
    the outer bins, as the training profile's own histogram does).
tests/unit/test_monitor_stats.py checks that these give the same verdicts as the exact tests on
data with known shifts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

PSI_FLOOR = 1e-4
COARSE = 5  # sketch bins (percentiles) per PSI/JS bin: 20 bins of 5%


# -- exact, on samples -----------------------------------------------------------------------


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov D: the largest gap between the empirical CDFs."""
    import numpy as np

    a, b = np.sort(a), np.sort(b)
    points = np.concatenate([a, b])
    fa = np.searchsorted(a, points, side="right") / a.size
    fb = np.searchsorted(b, points, side="right") / b.size
    return float(np.max(np.abs(fa - fb)))


def ks_pvalue(d: float, n: int, m: int) -> float:
    """Two-sided p-value of D for samples of n and m rows (the asymptotic Kolmogorov law with
    the effective size rounded, as scipy's method="asymp" does)."""
    import numpy as np
    from scipy.stats import kstwo

    if n == 0 or m == 0:
        return 1.0
    effective = float(np.round(n * m / (n + m)))
    return float(min(1.0, max(0.0, kstwo.sf(d, effective))))


def wasserstein(a: np.ndarray, b: np.ndarray) -> float:
    """Wasserstein-1 distance between two samples: the area between their CDFs."""
    import numpy as np

    a, b = np.sort(a), np.sort(b)
    points = np.sort(np.concatenate([a, b]))
    widths = np.diff(points)
    fa = np.searchsorted(a, points[:-1], side="right") / a.size
    fb = np.searchsorted(b, points[:-1], side="right") / b.size
    return float(np.sum(np.abs(fa - fb) * widths))


# -- on counts -------------------------------------------------------------------------------


def shares(counts: np.ndarray) -> np.ndarray:
    import numpy as np

    counts = np.asarray(counts, dtype="float64")
    total = counts.sum()
    return counts / total if total > 0 else np.zeros_like(counts)


def jensenshannon(p_counts: np.ndarray, q_counts: np.ndarray) -> float:
    """Jensen-Shannon distance (the square root of the divergence, natural log), 0..sqrt(ln 2)."""
    import numpy as np

    p, q = shares(p_counts), shares(q_counts)
    m = (p + q) / 2.0

    def kl(x: np.ndarray) -> float:
        used = x > 0
        return float(np.sum(x[used] * np.log(x[used] / m[used])))

    return float(np.sqrt(max(0.0, (kl(p) + kl(q)) / 2.0)))


def psi(p_counts: np.ndarray, q_counts: np.ndarray) -> float:
    """Population stability index of the current shares q against the baseline shares p."""
    import numpy as np

    p = np.clip(shares(p_counts), PSI_FLOOR, None)
    q = np.clip(shares(q_counts), PSI_FLOOR, None)
    return float(np.sum((q - p) * np.log(q / p)))


def linf(p_counts: np.ndarray, q_counts: np.ndarray) -> float:
    import numpy as np

    return float(np.max(np.abs(shares(p_counts) - shares(q_counts)), initial=0.0))


def chi2_homogeneity(a_counts: np.ndarray, b_counts: np.ndarray) -> tuple[float, float]:
    """Pearson's chi-square test that two samples share one categorical distribution
    (the 2 x k contingency table, no continuity correction): (statistic, p-value)."""
    import numpy as np
    from scipy.special import chdtrc

    table = np.vstack([a_counts, b_counts]).astype("float64")
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 0.0, 1.0
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    statistic = float(np.sum((table - expected) ** 2 / expected))
    return statistic, float(chdtrc(table.shape[1] - 1, statistic))


def benjamini_hochberg(pvalues: list[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (false discovery rate), in the input order."""
    import numpy as np

    p = np.asarray(pvalues, dtype="float64")
    n = p.size
    if n == 0:
        return []
    order = np.argsort(p)
    scaled = p[order] * n / np.arange(1, n + 1)
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(n)
    out[order] = np.clip(adjusted, 0.0, 1.0)
    return [float(x) for x in out]


# -- on a profile sketch ---------------------------------------------------------------------


class NumericSketch:
    """A numeric column summarised against a baseline's 101 sketch edges (see module doc):
    ``counts[i]`` values in (edges[i-1], edges[i]] (``counts[0]``: <= edges[0], the minimum,
    including values below it), ``above`` values > edges[-1]; ``below``/``below_sum`` and
    ``above_sum`` the count and total distance of values outside the range."""

    __slots__ = (
        "_ambiguous",
        "_scale",
        "_table",
        "above",
        "above_sum",
        "below",
        "below_sum",
        "counts",
        "edges",
        "high",
        "low",
        "summed",
        "sums",
    )

    def __init__(self, edges: np.ndarray) -> None:
        import numpy as np

        self.edges = edges
        self._table, self._ambiguous, self._scale = _lookup(edges)
        self.counts = np.zeros(edges.size, dtype="int64")
        self.sums = np.zeros(edges.size, dtype="float64")
        self.summed = True  # False: sums stand in for a profile that kept none
        self.above = 0
        self.below = 0
        self.below_sum = 0.0
        self.above_sum = 0.0
        self.low = float("inf")
        self.high = float("-inf")

    @property
    def n(self) -> int:
        return int(self.counts.sum()) + self.above

    def add(self, present: np.ndarray) -> None:
        """Count finite values (the caller drops missing ones)."""
        import numpy as np

        if present.size == 0:
            return
        edges = self.edges
        if self._table is None:
            index = np.searchsorted(edges, present, side="left")
        else:
            # A lookup table of equal-width cells replaces most binary searches (the slow part:
            # a branch mispredicted per level): only values in a cell holding an edge, or
            # beyond the range, are searched.
            cell = (present - edges[0]) * self._scale
            cell += 1.0
            # Clipped at 0 first, truncation is the floor, and below-minimum values land in 0.
            np.clip(cell, 0.0, float(self._table.size - 1), out=cell)
            cell_index = cell.astype(np.intp)
            index = self._table[cell_index]
            unsure = self._ambiguous[cell_index]
            if unsure.any():
                index[unsure] = np.searchsorted(edges, present[unsure], side="left")
        binned = np.bincount(index, minlength=edges.size + 1)
        self.counts += binned[: edges.size]
        self.sums += np.bincount(index, weights=present, minlength=edges.size + 1)[: edges.size]
        self.above += int(binned[edges.size])
        lo, hi = float(present.min()), float(present.max())
        self.low, self.high = min(self.low, lo), max(self.high, hi)
        if lo < edges[0]:
            outside = present[present < edges[0]]
            self.below += int(outside.size)
            self.below_sum += float(np.sum(edges[0] - outside))
        if hi > edges[-1]:
            outside = present[present > edges[-1]]
            self.above_sum += float(np.sum(outside - edges[-1]))

    def cdf(self) -> np.ndarray:
        """Share of values <= each edge."""
        import numpy as np

        n = self.n
        return np.cumsum(self.counts) / n if n else np.zeros(self.edges.size)

    def coarse(self) -> np.ndarray:
        """Counts in 20 bins of 5 percentiles; out-of-range values in the outer bins."""
        import numpy as np

        counts = self.counts.astype("float64").copy()
        counts[-1] += self.above
        # bin 0 holds the minimum itself: it joins the first 5% bin
        head = counts[0] + counts[1 : 1 + COARSE].sum()
        rest = counts[1 + COARSE :]
        usable = rest.size - rest.size % COARSE
        body = rest[:usable].reshape(-1, COARSE).sum(axis=1)
        if rest.size % COARSE:
            body[-1] += rest[usable:].sum()
        return np.concatenate([[head], body])


LOOKUP_CELLS = 4096


def _lookup(edges: np.ndarray) -> tuple[Any, Any, float]:
    """(table, ambiguous, scale) for binning by cell: cell c (shifted by one so that cell 0 is
    everything below the minimum) covers [lo + (c-1)/scale, lo + c/scale); where no edge lies
    in a cell (widened a little against rounding), every value in it has the same bin,
    ``table[c]``; ``ambiguous[c]`` marks the rest. (None, None, 0) for a constant column."""
    import numpy as np

    lo, hi = float(edges[0]), float(edges[-1])
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi <= lo:
        return None, None, 0.0
    cells = LOOKUP_CELLS
    scale = cells / (hi - lo)
    left = lo + np.arange(cells) / scale
    slack = (hi - lo) * 1e-9
    first = np.searchsorted(edges, left - slack, side="left")
    last = np.searchsorted(edges, left + 1.0 / scale + slack, side="left")
    # Sentinels: below the minimum (bin 0, certain) and past the last cell (searched).
    table = np.concatenate([[0], first, [edges.size]]).astype(np.intp)
    ambiguous = np.concatenate([[False], first != last, [True]])
    return table, ambiguous, scale


def baseline_sketch(profile: dict[str, Any]) -> NumericSketch | None:
    """The baseline of a numeric profile as a sketch; None when the column had no values.
    Profiles older than the sketch field give one from their 21 quantiles, 5% each."""
    import numpy as np

    present = round(profile["count"] * (1.0 - profile["missing"]))
    stored = profile.get("sketch")
    if stored and stored.get("edges"):
        sketch = NumericSketch(np.asarray(stored["edges"], dtype="float64"))
        sketch.counts = np.asarray(stored["counts"], dtype="int64")
        if stored.get("sums"):
            sketch.sums = np.asarray(stored["sums"], dtype="float64")
        else:
            sketch.sums = sketch.counts * _midpoints(sketch.edges)
            sketch.summed = False
    elif profile.get("quantiles"):
        edges = np.asarray(profile["quantiles"], dtype="float64")
        sketch = NumericSketch(edges)
        counts = np.full(edges.size, present / (edges.size - 1))
        counts[0] = 0.0
        sketch.counts = counts  # float shares: every use divides by the total anyway
        sketch.sums = counts * _midpoints(edges)
        sketch.summed = False
    else:
        return None
    sketch.low, sketch.high = float(sketch.edges[0]), float(sketch.edges[-1])
    return sketch


def _midpoints(edges: np.ndarray) -> np.ndarray:
    """Bin centres (the minimum for bin 0): the sums of rows spread evenly in their bins."""
    import numpy as np

    return np.concatenate([[edges[0]], (edges[:-1] + edges[1:]) / 2.0])


def sketch_ks(base: NumericSketch, current: NumericSketch) -> float:
    import numpy as np

    if base.n == 0 or current.n == 0:
        return 0.0
    gaps = np.abs(base.cdf() - current.cdf())
    return float(max(np.max(gaps), current.below / current.n))


def sketch_wasserstein(base: NumericSketch, current: NumericSketch) -> float:
    import numpy as np

    if base.n == 0 or current.n == 0:
        return 0.0
    edges = base.edges
    left, widths = edges[:-1], np.diff(edges)
    d = base.cdf() - current.cdf()
    d0, d1 = d[:-1], d[1:]

    # Over a bin (a, b], integrating by parts: the integral of F - G is
    # (b - a) * d(b) - (sum over the bin of (x - a)) / n, taken for each side: exact from the
    # counts and sums alone, and the integral of |F - G| wherever F - G keeps its sign.
    # Against a baseline without sums, both sides take rows as spread evenly in each bin, so
    # that a bias of that guess does not show up as drift.
    def offsets(sketch: NumericSketch) -> np.ndarray:
        if base.summed:
            return (sketch.sums[1:] - left * sketch.counts[1:]) / sketch.n
        return sketch.counts[1:] * widths / 2.0 / sketch.n

    signed = widths * d1 - (offsets(base) - offsets(current))
    # Where F - G changes sign inside a bin, both are taken as linear across it.
    total = np.abs(d0) + np.abs(d1)
    crossing = widths * np.divide(
        d0**2 + d1**2, 2.0 * total, out=np.zeros_like(total), where=total > 0
    )
    inside = np.where(d0 * d1 >= 0, np.abs(signed), crossing)
    return float(np.sum(inside) + (current.below_sum + current.above_sum) / current.n)


def sketch_std(profile: dict[str, Any]) -> float:
    """Population standard deviation (ddof=0) of the baseline, as Evidently normalises by."""
    std = profile.get("std") or 0.0
    present = profile["count"] * (1.0 - profile["missing"])
    if present > 1:
        return float(std) * ((present - 1) / present) ** 0.5
    return float(std)
