"""Per-row outlier scores against the training data, from tables kept in model.json.

    outlier_scores(model, frame) -> float64 [rows] in [0, 1]; a row is an outlier at >= THRESHOLD
    outlier_baseline(prepared, features) -> the "outliers" block model.json keeps (training time)
    Scorer(meta).score(frame) -> (scores, index of each row's most extreme feature)
    Scorer(meta).scores(frame) -> the scores alone, looking up only the values that can move them

The score is one minus a tail p-value. Each feature gets a two-sided tail probability of the
row's value under the training distribution: numeric features from training quantiles (the
tails finely: levels 0.0001 ... 0.9999), 2 × min(P(X ≤ x), P(X ≥ x)), with the quantile at level
L placed at the plotting position (1 + L(n − 1)) / (n + 1) of the n training values, so the
training minimum and maximum get 1/(n + 1); beyond them the tail decays exponentially at the
rate the outermost five or so training values set (no cliff at the training range: a value a
hair outside it is not yet an outlier, one far outside is). Categorical features: the training
share of all categories at most as common as the row's, plus the chance of an unseen category
(Good-Turing: (categories seen once + 1) / (n + 1)); an unseen category gets that chance alone.
Missing values are not judged here (data quality counts them).

A row's p-value is the smallest feature p-value times the number of features (Bonferroni, capped
at 1), and its score is 1 − that. So for rows drawn like the training rows, P(score ≥ 0.99) is at
most about 1 % however the features are correlated: ``THRESHOLD`` = 0.99 flags about one in a
hundred training-like rows at most, and a monitor's outlier share well above that is news.

Models trained before the "outliers" block existed are scored from their training profile (the
101-point quantile sketch of numeric features, the top-100 category frequencies), which resolves
the tails less finely but gives the same kind of score.

Vectorised numpy; a one-row score costs a few tens of microseconds per feature. Scores alone
(`Scorer.scores`, what the serving log keeps) skip every value inside its feature's central band:
a p-value of at least 1 / features is capped to a score of 0 whatever the others are, so only
the values beyond the band's edges (a few in a hundred for training-like rows) are looked up.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mlopsctl.models.profile import OTHER

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from mlopsctl.models.artifact import Feature, LoadedModel

METHOD = "tail-pvalue/v1"
THRESHOLD = 0.99
# The column serving logs the score in, and monitoring reads it from.
LOG_COLUMN = "outlier_score"
LEVELS = (
    0.0,
    0.0001,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.25,
    0.5,
    0.75,
    0.9,
    0.95,
    0.98,
    0.99,
    0.995,
    0.9975,
    0.999,
    0.9995,
    0.9999,
    1.0,
)
TOP_CATEGORIES = 1000
TAIL_POINTS = 5  # about how many training values set the decay rate beyond the range
SMALL_ROWS = 256  # up to this many rows, all numeric features are scored in one go
BROADCAST_ROWS = 16  # ...and up to this many, every value is compared with every table point

_CACHE: weakref.WeakKeyDictionary[Any, Scorer] = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


def outlier_baseline(prepared: pd.DataFrame, features: Sequence[Feature]) -> dict[str, Any]:
    """The "outliers" block of model.json, from the prepared training features (one pass)."""
    import numpy as np

    out: dict[str, Any] = {}
    for feature in features:
        column = prepared[feature.name]
        if feature.kind == "numeric":
            values = np.asarray(column, dtype="float64")
            present = values[np.isfinite(values)]
            entry: dict[str, Any] = {"kind": "numeric", "rows": int(present.size)}
            if present.size:
                entry["levels"] = list(LEVELS)
                entry["values"] = [float(v) for v in np.quantile(present, LEVELS)]
            out[feature.name] = entry
        else:
            counts = column[column.notna()].astype(str).value_counts(sort=True)
            table = counts.rename_axis("value").reset_index(name="n")
            table = table.sort_values(["n", "value"], ascending=[False, True], kind="stable")
            kept = table.head(TOP_CATEGORIES)
            out[feature.name] = {
                "kind": "categorical",
                "rows": int(counts.sum()),
                "counts": {str(v): int(n) for v, n in zip(kept["value"], kept["n"], strict=True)},
                "other": int(table["n"].iloc[TOP_CATEGORIES:].sum()),
                "singletons": int((counts == 1).sum()),
            }
    return {"method": METHOD, "threshold": THRESHOLD, "features": out}


def outlier_scores(model: LoadedModel | dict[str, Any], frame: pd.DataFrame) -> np.ndarray:
    """Outlier score of every row of ``frame`` in [0, 1] (>= THRESHOLD: an outlier). ``model``
    is a LoadedModel or its model.json (a dict); ``frame`` holds the signature's features."""
    return scorer_for(model).score(frame)[0]


def scorer_for(model: LoadedModel | dict[str, Any]) -> Scorer:
    """The model's Scorer, built once per loaded model."""
    if isinstance(model, dict):
        return Scorer(model)
    with _CACHE_LOCK:
        cached = _CACHE.get(model)
    if cached is None:
        cached = Scorer(model.meta)
        with _CACHE_LOCK:
            _CACHE[model] = cached
    return cached


class Scorer:
    """Compiled tail tables of one model (or of a bare baseline profile):
    ``Scorer(meta)`` reads meta["outliers"], else meta["profile"]; ``Scorer.from_profile``
    reads a profile {"rows", "features"} alone."""

    def __init__(self, meta: dict[str, Any]) -> None:
        block = meta.get("outliers") or {}
        kinds = {f["name"]: f["kind"] for f in meta.get("features") or []}
        self.threshold = float(block.get("threshold") or THRESHOLD)
        if block.get("features"):
            self.source = "model"
            self._build(block["features"], kinds, from_profile=False)
        else:
            self.source = "profile"
            self._build((meta.get("profile") or {}).get("features") or {}, kinds, True)

    @classmethod
    def from_profile(cls, profile: dict[str, Any]) -> Scorer:
        return cls({"profile": profile})

    def _build(self, tables: dict[str, Any], kinds: dict[str, str], from_profile: bool) -> None:
        self.names: list[str] = []
        self._numeric: dict[str, _NumericTail] = {}
        self._categorical: dict[str, _CategoricalTail] = {}
        for name, entry in tables.items():
            if kinds and name not in kinds:
                continue
            kind = entry.get("kind") or kinds.get(name)
            if kind == "numeric":
                tail = _numeric_from_profile(entry) if from_profile else _numeric(entry)
                if tail is not None:
                    self._numeric[name] = tail
                    self.names.append(name)
            elif kind == "categorical":
                cat = _categorical_from_profile(entry) if from_profile else _categorical(entry)
                if cat is not None:
                    self._categorical[name] = cat
                    self.names.append(name)
        position = {name: j for j, name in enumerate(self.names)}
        self._numeric_at = [position[name] for name in self._numeric]
        self._column_of = {name: j for j, name in enumerate(self._numeric)}
        self._table = _NumericTable(list(self._numeric.values())) if self._numeric else None

    @property
    def numeric(self) -> list[str]:
        return list(self._numeric)

    @property
    def categorical(self) -> list[str]:
        return list(self._categorical)

    def pvalues(self, frame: Any) -> np.ndarray:
        """Per-feature two-sided tail p-values [rows, len(names)]; 1 where a value is missing
        or the column is absent. ``frame``: a DataFrame or a mapping of column arrays."""
        import numpy as np

        rows = _rows(frame)
        out = np.ones((rows, len(self.names)))
        small = rows <= SMALL_ROWS
        if small and self._table is not None:
            # A few rows (a request): every numeric feature at once, in a dozen numpy calls.
            out[:, self._numeric_at] = self._table.pvalues(self._numeric_matrix(frame, rows))
        elif self._table is not None:
            for j, (name, tail) in zip(self._numeric_at, self._numeric.items(), strict=True):
                if name in frame:
                    out[:, j] = tail.pvalue(_floats(frame[name]))
        for j, name in enumerate(self.names):
            if name in self._categorical and name in frame:
                out[:, j] = self._categorical[name].pvalue(frame[name], small)
        return out

    def _numeric_matrix(self, frame: Any, rows: int) -> np.ndarray:
        """The numeric features as float64 [rows, features]; NaN where absent or missing."""
        import numpy as np

        matrix = np.full((rows, len(self._column_of)), np.nan)
        present = [name for name in self._column_of if name in frame]
        if not present:
            return matrix
        columns = [self._column_of[name] for name in present]
        if hasattr(frame, "columns"):
            try:
                matrix[:, columns] = frame[present].to_numpy(dtype="float64", na_value=np.nan)
                return matrix
            except (TypeError, ValueError):
                pass  # a column that does not hold numbers: one by one, as missing values
        for name, column in zip(present, columns, strict=True):
            matrix[:, column] = _floats(frame[name])
        return matrix

    def score(self, frame: Any) -> tuple[np.ndarray, np.ndarray]:
        """(scores [rows], index into ``names`` of each row's most extreme feature)."""
        import numpy as np

        p = self.pvalues(frame)
        if p.shape[1] == 0:
            return np.zeros(p.shape[0]), np.zeros(p.shape[0], dtype=int)
        worst = p.argmin(axis=1)
        smallest = p[np.arange(p.shape[0]), worst]
        adjusted = np.minimum(1.0, smallest * len(self.names))
        return 1.0 - adjusted, worst

    def scores(self, frame: Any, numeric: np.ndarray | None = None) -> np.ndarray:
        """``score(frame)[0]`` (to 1e-12), at a fraction of its cost for many rows: a numeric
        value inside its feature's central band has a p-value of at least 1 / len(names), which
        the Bonferroni cap turns into a score of 0 whatever the row's other values, so only the
        values beyond the band (and categorical features) are looked up. ``numeric``: the
        numeric features as float64 [rows, len(self.numeric)] when the caller holds them so
        (NaN: missing); ``frame`` then needs only the categorical ones."""
        import numpy as np

        rows = int(numeric.shape[0]) if numeric is not None else _rows(frame)
        count = len(self.names)
        if count == 0:
            return np.zeros(rows)
        smallest = np.ones(rows)
        if self._table is not None:
            matrix = self._numeric_matrix(frame, rows) if numeric is None else numeric
            smallest = self._table.smallest(np.ascontiguousarray(matrix, dtype="float64"), count)
        for name, tail in self._categorical.items():
            if name in frame:
                np.minimum(smallest, tail.pvalue(frame[name], rows <= SMALL_ROWS), out=smallest)
        return 1.0 - np.minimum(1.0, smallest * count)


def _rows(frame: Any) -> int:
    if hasattr(frame, "shape"):
        return int(frame.shape[0])
    for column in frame.values():
        return len(column)
    return 0


def _floats(column: Any) -> np.ndarray:
    import numpy as np

    try:
        return np.asarray(column, dtype="float64")
    except (TypeError, ValueError):
        import pandas as pd

        return np.asarray(pd.to_numeric(pd.Series(column), errors="coerce"), dtype="float64")


class _NumericTail:
    """Tail probabilities of one numeric feature: P(X <= x) and P(X >= x) interpolated over
    the distinct quantile values, exponential decay beyond the training range."""

    def __init__(self, levels: Sequence[float], values: Sequence[float], rows: int) -> None:
        import numpy as np

        n = max(int(rows), 1)
        level = np.asarray(levels, dtype="float64")
        value = np.asarray(values, dtype="float64")
        position = (1.0 + level * (n - 1)) / (n + 1)  # plotting positions, in (0, 1)
        order = np.argsort(value, kind="stable")
        value, position = value[order], np.maximum.accumulate(position[order])
        self.x, first = np.unique(value, return_index=True)
        last = np.append(first[1:] - 1, value.size - 1)
        self.below = position[last]  # P(X <= x) at each distinct value
        self.above = 1.0 - position[first]  # P(X >= x) = 1 - P(X < x)
        self.edge = 1.0 / (n + 1)
        self.low_rate = self._rate(side=-1, n=n)
        self.high_rate = self._rate(side=1, n=n)

    def _rate(self, side: int, n: int) -> float:
        """1 / scale of the exponential tail beyond the minimum (side -1) or maximum (+1): the
        tail probability falls from the one of the innermost point holding about TAIL_POINTS
        values to 1/(n + 1) over that distance."""
        target = min(0.5, TAIL_POINTS / (n + 1))
        if side > 0:
            tail, x = self.above, self.x
        else:
            tail, x = self.below[::-1], self.x[::-1]
        inner = [i for i in range(x.size - 1) if tail[i] >= target]
        if not inner or x.size < 2:
            return math.inf  # a constant feature: anything else is an outlier at once
        i = inner[-1]
        distance = abs(x[-1] - x[i])
        ratio = tail[i] / self.edge
        if distance <= 0 or ratio <= 1:
            return math.inf
        return math.log(ratio) / distance

    def pvalue(self, values: np.ndarray) -> np.ndarray:
        import numpy as np

        present = np.isfinite(values)
        whole = bool(present.all())  # (then no copy of the values, nor of the result)
        v = values if whole else values[present]
        below = np.interp(v, self.x, self.below, left=0.0, right=1.0)
        above = np.interp(v, self.x, self.above, left=1.0, right=0.0)
        low, high = v < self.x[0], v > self.x[-1]
        with np.errstate(over="ignore", invalid="ignore"):
            if low.any():
                below[low] = self.edge * np.exp(-(self.x[0] - v[low]) * self.low_rate)
            if high.any():
                above[high] = self.edge * np.exp(-(v[high] - self.x[-1]) * self.high_rate)
        # min(1, 2 min(below, above)) in place; NaN (0 x inf in a tail) is none
        p = np.minimum(below, above, out=below)
        p *= 2.0
        np.minimum(p, 1.0, out=p)
        p[np.isnan(p)] = 0.0
        if whole:
            return p
        out = np.ones(values.size)
        out[present] = p
        return out


class _CategoricalTail:
    """p(value) = chance of an unseen category + the training share of all categories at most
    as common as this one."""

    def __init__(self, counts: dict[str, int], rows: int, other: int, singletons: int) -> None:
        n = max(int(rows), 1)
        self.unseen = min(1.0, (singletons + other + 1) / (n + 1))
        ordered = sorted(counts.items(), key=lambda item: item[1])
        self.table: dict[str, float] = {}
        cumulative = other / n
        i = 0
        while i < len(ordered):
            j = i
            while j < len(ordered) and ordered[j][1] == ordered[i][1]:
                cumulative += ordered[j][1] / n
                j += 1
            for value, _ in ordered[i:j]:
                self.table[value] = min(1.0, self.unseen + cumulative)
            i = j

    def pvalue(self, column: Any, small: bool = False) -> np.ndarray:
        import numpy as np

        if small:
            return np.array([self._one(value) for value in column], dtype="float64")
        import pandas as pd

        series = pd.Series(column)
        missing = series.isna().to_numpy()
        text = series.astype(str)
        mapped = text.map(self.table).to_numpy(dtype="float64", na_value=np.nan)
        out = np.where(np.isnan(mapped), self.unseen, mapped)
        out[missing] = 1.0
        return out

    def _one(self, value: Any) -> float:
        if value is None or (isinstance(value, float) and value != value):
            return 1.0
        try:
            import pandas as pd

            if value is pd.NA or value is pd.NaT:
                return 1.0
        except ImportError:  # pragma: no cover - pandas is a dependency
            pass
        return self.table.get(value if isinstance(value, str) else str(value), self.unseen)


class _NumericTable:
    """Every numeric feature's tail tables side by side (padded), so that a few rows are scored
    on all features at once; the same numbers as ``_NumericTail.pvalue`` feature by feature."""

    def __init__(self, tails: list[_NumericTail]) -> None:
        import numpy as np

        count = len(tails)
        width = max(t.x.size for t in tails) + 1  # room for the point after the last
        self.x = np.full((count, width), np.inf)
        self.below = np.empty((count, width))
        self.above = np.empty((count, width))
        for f, tail in enumerate(tails):
            n = tail.x.size
            self.x[f, :n] = tail.x
            self.below[f, :n], self.below[f, n:] = tail.below, tail.below[-1]
            self.above[f, :n], self.above[f, n:] = tail.above, tail.above[-1]
        self.size = np.array([t.x.size for t in tails])
        self.low = np.array([t.x[0] for t in tails])
        self.high = np.array([t.x[-1] for t in tails])
        self.edge = np.array([t.edge for t in tails])
        self.low_rate = np.array([t.low_rate for t in tails])
        self.high_rate = np.array([t.high_rate for t in tails])
        self.features = np.arange(count)[None, :]
        # Flat copies for one-dimensional takes (much cheaper than [f, j] indexing), and each
        # segment's rise, so that interpolating costs two takes per table.
        self.width = width
        self._x = self.x.ravel()
        self._below = self.below.ravel()
        self._above = self.above.ravel()
        self._below_rise = np.append(np.diff(self._below), 0.0)
        self._above_rise = np.append(np.diff(self._above), 0.0)
        self._band_cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def pvalues(self, values: np.ndarray) -> np.ndarray:
        """p-values of values [rows, features] (1 where a value is missing or infinite)."""
        import numpy as np

        present = np.isfinite(values)
        v = np.where(present, values, 0.0)
        if v.shape[0] <= BROADCAST_ROWS:
            count = (v[:, :, None] >= self.x[None]).sum(axis=2)
        else:  # rows x features x width booleans would cost more than a search per feature
            count = np.empty(v.shape, dtype="int64")
            for f in range(v.shape[1]):
                count[:, f] = np.searchsorted(self.x[f], v[:, f], side="right")
        p = self._interpolate(v, count, self.features, self)
        return np.where(present, p, 1.0)

    def smallest(self, values: np.ndarray, names: int) -> np.ndarray:
        """Each row's smallest p-value over values [rows, features] (C order) where it is below
        1 / ``names``; 1 for a row whose values all lie inside their features' central bands
        (each p-value there is at least 1 / ``names``, so the exact one cannot change a score
        capped at 0). The values looked up give the numbers `pvalues` gives them."""
        import numpy as np

        low, high = self._bands(names)
        outside = (values < low) | (values > high)  # (NaN: missing, never outside)
        at = np.flatnonzero(outside)
        smallest = np.ones(values.shape[0])
        if at.size:
            v = values.ravel().take(at)
            finite = np.isfinite(v)  # an infinite value counts as missing, as in `pvalues`
            at, v = at[finite], v[finite]
            row, feature = np.divmod(at, values.shape[1])
            count = (v[:, None] >= self.x.take(feature, axis=0)).sum(axis=1)
            part = _Take(self, feature)
            np.minimum.at(smallest, row, self._interpolate(v, count, feature, part))
        return smallest

    def _bands(self, names: int) -> tuple[np.ndarray, np.ndarray]:
        """Per feature, the first and last table points inside which every p-value is at
        least 1 / ``names`` (with a margin for rounding); a feature with none gets an empty band
        (+inf, -inf): its every value is looked up."""
        import numpy as np

        cached = self._band_cache.get(names)
        if cached is not None:
            return cached
        half = 0.5 / names * (1.0 + 1e-9)  # p = 2 min(below, above) >= 1 / names
        low = np.full(len(self.size), np.inf)
        high = np.full(len(self.size), -np.inf)
        for f, n in enumerate(self.size.tolist()):
            x = self.x[f, :n]
            inner = np.flatnonzero((self.below[f, :n] >= half) & (self.above[f, :n] >= half))
            # below only rises and above only falls along the points, so those between the
            # first and the last inner point are inner too (interpolation keeps to their range)
            if inner.size and np.isfinite(x).all():
                low[f], high[f] = x[inner[0]], x[inner[-1]]
        self._band_cache[names] = (low, high)
        return low, high

    def _interpolate(self, v: np.ndarray, count: np.ndarray, feature: Any, per: Any) -> Any:
        """p-values of finite values ``v`` of ``feature`` (an index array broadcasting with
        ``v``) given ``count``, how many table points of its feature are at most each value;
        ``per``: the per-feature vectors (size, low, high, edge, rates), broadcasting alike."""
        import numpy as np

        j = np.minimum(np.maximum(count - 1, 0), np.maximum(per.size - 2, 0))
        at = j + feature * self.width  # into the flat tables
        x0 = self._x.take(at)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            t = np.clip((v - x0) / (self._x.take(at + 1) - x0), 0.0, 1.0)
            t[np.isnan(t)] = 0.0
            below = self._below.take(at) + t * self._below_rise.take(at)
            above = self._above.take(at) + t * self._above_rise.take(at)
            low, high = v < per.low, v > per.high
            if low.any():
                below = np.where(low, per.edge * np.exp(-(per.low - v) * per.low_rate), below)
                above = np.where(low, 1.0, above)
            if high.any():
                above = np.where(high, per.edge * np.exp(-(v - per.high) * per.high_rate), above)
                below = np.where(high, 1.0, below)
        # Probabilities: NaN (0 x inf in a tail) is none; the rest are at least 0.
        p = np.minimum(1.0, 2.0 * np.minimum(below, above))
        p[np.isnan(p)] = 0.0
        return p


class _Take:
    """A table's per-feature vectors taken at the features of some values, one per value."""

    def __init__(self, table: _NumericTable, feature: np.ndarray) -> None:
        self.size = table.size.take(feature)
        self.low = table.low.take(feature)
        self.high = table.high.take(feature)
        self.edge = table.edge.take(feature)
        self.low_rate = table.low_rate.take(feature)
        self.high_rate = table.high_rate.take(feature)


def _numeric(entry: dict[str, Any]) -> _NumericTail | None:
    if not entry.get("values"):
        return None
    return _NumericTail(entry["levels"], entry["values"], int(entry.get("rows") or 0))


def _categorical(entry: dict[str, Any]) -> _CategoricalTail | None:
    counts = entry.get("counts") or {}
    if not counts:
        return None
    return _CategoricalTail(
        {str(k): int(v) for k, v in counts.items()},
        int(entry.get("rows") or sum(counts.values())),
        int(entry.get("other") or 0),
        int(entry.get("singletons") or 0),
    )


def _present_rows(entry: dict[str, Any]) -> int:
    count = int(entry.get("count") or 0)
    return max(round(count * (1.0 - float(entry.get("missing") or 0.0))), 1)


def _numeric_from_profile(entry: dict[str, Any]) -> _NumericTail | None:
    sketch = entry.get("sketch") or {}
    if sketch.get("edges"):
        edges = sketch["edges"]
        levels = [i / (len(edges) - 1) for i in range(len(edges))]
        return _NumericTail(levels, edges, _present_rows(entry))
    quantiles = entry.get("quantiles") or []
    if len(quantiles) < 2:
        return None
    levels = [i / (len(quantiles) - 1) for i in range(len(quantiles))]
    return _NumericTail(levels, quantiles, _present_rows(entry))


def _categorical_from_profile(entry: dict[str, Any]) -> _CategoricalTail | None:
    frequencies = dict(entry.get("frequencies") or {})
    if not frequencies:
        return None
    other = int(frequencies.pop(OTHER, 0))
    singletons = sum(1 for n in frequencies.values() if int(n) == 1)
    rows = sum(int(n) for n in frequencies.values()) + other
    return _CategoricalTail(
        {str(k): int(v) for k, v in frequencies.items()}, rows, other, singletons
    )
