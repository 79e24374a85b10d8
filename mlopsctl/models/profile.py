"""Data profiles: the training baseline stored in model.json, and the same summary of serving data.

A profile is plain JSON so that monitoring can compare serving data with the training data long
after the training rows are gone:

    numeric:     {"kind": "numeric", "count", "missing", "min", "max", "mean", "std",
                  "quantiles": [q0, q5, ..., q100], "edges": [...], "counts": [...]}
    categorical: {"kind": "categorical", "count", "missing", "distinct",
                  "frequencies": {value: count, ..., "__other__": count}}

``count`` is the number of rows (missing included), ``missing`` the share of them that is missing.
``edges`` are the deduplicated quantile edges and ``counts`` how many present values fall in each
bin ``[e_i, e_i+1)`` (the last bin closed). Population stability, a binned Kolmogorov-Smirnov
distance and a quantile-based Wasserstein distance can all be computed from these fields alone;
``bin_counts`` counts new data in a baseline's bins for exactly that.

Numeric profiles also carry ``sketch`` = {"edges": the 101 percentiles (not deduplicated),
"counts": 101 counts, "sums": 101 sums}, where ``counts[0]`` is how many values are <= edges[0]
(the minimum) and ``counts[i]`` how many lie in ``(edges[i-1], edges[i]]``, ``sums[i]`` their
total: the exact distribution function at 101 points and the mean inside each bin, which
monitoring turns into Kolmogorov-Smirnov and Wasserstein distances close to the ones on the raw
rows (mlopsctl/monitor/stats.py). Right-closed bins count ties at an edge the same way on both
sides, so discrete features compare cleanly. The field came later than the others: monitoring
reads a profile without it as if each 5% quantile bin held 5% of the rows.

Heavy libraries are imported inside the functions: monitoring imports this module to plan.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

N_BINS = 20
SKETCH_POINTS = 101
TOP_CATEGORIES = 100
OTHER = "__other__"


def profile_numeric(values: pd.Series | np.ndarray) -> dict[str, Any]:
    """Profile of one numeric column; infinities count as missing (they have no bin)."""
    import numpy as np

    array = np.asarray(values, dtype="float64")
    count = int(array.size)
    present = array[np.isfinite(array)]
    profile: dict[str, Any] = {
        "kind": "numeric",
        "count": count,
        "missing": _share(count - present.size, count),
    }
    if present.size == 0:
        profile.update(min=None, max=None, mean=None, std=None, quantiles=[], edges=[], counts=[])
        return profile
    quantiles = np.quantile(present, np.linspace(0.0, 1.0, N_BINS + 1))
    edges = np.unique(quantiles)
    if edges.size == 1:
        # A constant column still needs one bin so that new data can be counted against it.
        edges = np.array([edges[0], edges[0]])
        counts = np.array([present.size])
    else:
        counts, _ = np.histogram(present, bins=edges)
    profile.update(
        min=float(present.min()),
        max=float(present.max()),
        mean=float(present.mean()),
        std=float(present.std(ddof=1)) if present.size > 1 else 0.0,
        quantiles=[float(q) for q in quantiles],
        edges=[float(e) for e in edges],
        counts=[int(c) for c in counts],
        sketch=sketch_of(present),
    )
    return profile


def sketch_of(present: np.ndarray) -> dict[str, list[Any]]:
    """Percentile edges and right-closed counts of finite values (see the module docstring)."""
    import numpy as np

    ordered = np.sort(present)
    edges = np.quantile(ordered, np.linspace(0.0, 1.0, SKETCH_POINTS))
    cumulative = np.searchsorted(ordered, edges, side="right")
    counts = np.diff(cumulative, prepend=0)
    running = np.concatenate([[0.0], np.cumsum(ordered)])
    sums = np.diff(running[cumulative], prepend=0.0)
    return {
        "edges": [float(e) for e in edges],
        "counts": [int(c) for c in counts],
        "sums": [float(v) for v in sums],
    }


def profile_categorical(values: pd.Series, top: int = TOP_CATEGORIES) -> dict[str, Any]:
    """Profile of one categorical column; values are compared as strings, as the model does."""
    import pandas as pd

    series = pd.Series(values)
    count = int(series.size)
    present = series[series.notna()].astype(str)
    frequencies = present.value_counts(sort=True)
    # Ties broken by value so that the same data always gives the same profile.
    frequencies = frequencies.rename_axis("value").reset_index(name="n")
    frequencies = frequencies.sort_values(["n", "value"], ascending=[False, True], kind="stable")
    kept = frequencies.head(top)
    table = {str(v): int(n) for v, n in zip(kept["value"], kept["n"], strict=True)}
    other = int(frequencies["n"].iloc[top:].sum())
    if other:
        table[OTHER] = other
    return {
        "kind": "categorical",
        "count": count,
        "missing": _share(count - int(present.size), count),
        "distinct": len(frequencies),
        "frequencies": table,
    }


def profile_frame(frame: pd.DataFrame, columns: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Profiles of ``columns`` given as (name, kind) pairs, kind "numeric" or "categorical"."""
    out: dict[str, Any] = {}
    for name, kind in columns:
        if kind == "numeric":
            out[name] = profile_numeric(frame[name])
        else:
            out[name] = profile_categorical(frame[name])
    return out


def bin_counts(values: pd.Series | np.ndarray, edges: list[float]) -> list[int]:
    """How many present values of new data fall in each bin of a baseline's ``edges``.

    Values outside the baseline's range are counted in the outer bins: a drift test must see them,
    and the baseline has no bin beyond its own minimum and maximum.
    """
    import numpy as np

    if len(edges) < 2:
        return []
    array = np.asarray(values, dtype="float64")
    present = np.clip(array[np.isfinite(array)], edges[0], edges[-1])
    if edges[0] == edges[-1]:
        return [int(present.size)]
    counts, _ = np.histogram(present, bins=np.asarray(edges, dtype="float64"))
    return [int(c) for c in counts]


def _share(part: int, whole: int) -> float:
    return float(part) / whole if whole else 0.0
