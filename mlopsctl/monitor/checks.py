"""From a baseline profile and streamed current data to a monitoring result.

One pass over the current data accumulates, per feature, what every test needs and nothing more:
numeric features are counted in the baseline's 101 percentile bins (plus the count and distance
sum outside its range, min and max); categorical features as value counts (at most
``MAX_CATEGORIES`` distinct values are tracked; the rest are pooled); missing values are counted.
Memory therefore does not grow with the rows, except for two bounded extras:

* with a dataset baseline (raw reference rows) and at most ``exact_rows`` current rows, the raw
  numeric values are kept too, and KS and Wasserstein are computed exactly (the same numbers as
  scipy); beyond that bound the binned versions are used and the result says "sketch";
* with ground truth, the (id, prediction) pairs of labelled rows, to compute the metric.

Default tests depend on the baseline's size, as in Evidently: up to ``SMALL_ROWS`` rows,
Kolmogorov-Smirnov (numeric) and chi-square (categorical) p-values at 0.05 with a
Benjamini-Hochberg correction across the features tested that way; above it, normalised
Wasserstein (numeric) and Jensen-Shannon distance (categorical) at 0.1. A distance drifts when it
is at or above its threshold; a p-value test drifts when its adjusted p-value is below it.
The dataset drifts when the share of drifted features is at least ``drift_share`` (0.5).

Data quality (spec ``quality``): a feature fails when its missing share rose by more than
``missing_increase`` (0.05), when more than ``out_of_range`` (0.05) of its values lie outside the
training minimum..maximum, or more than ``unseen_categories`` (0.05) of its values were never
seen in training (not judged when the training profile pooled rare values into ``__other__``);
the schema test fails when a feature column is missing or holds the wrong type. Extra columns
are listed, never failed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlopsctl.errors import UsageError
from mlopsctl.logformat import FIXED_COLUMNS
from mlopsctl.models.explain import CONTRIB_PREFIX
from mlopsctl.monitor import data, stats

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

SMALL_ROWS = 1000
MAX_CATEGORIES = 10_000
EXACT_ROWS = 100_000
POOLED = "__pooled__"
OTHER = "__other__"

NUMERIC_TESTS = {"ks": 0.05, "wasserstein": 0.1, "psi": 0.1, "jensenshannon": 0.1}
CATEGORICAL_TESTS = {"chi2": 0.05, "jensenshannon": 0.1, "linf": 0.1, "psi": 0.1}
PVALUE_TESTS = frozenset({"ks", "chi2"})
QUALITY_DEFAULTS = {"missing_increase": 0.05, "out_of_range": 0.05, "unseen_categories": 0.05}
KINDS = {"numerical": "numeric", "categorical": "categorical"}


def default_test(kind: str, baseline_rows: int) -> str:
    small = baseline_rows <= SMALL_ROWS
    if kind == "numeric":
        return "ks" if small else "wasserstein"
    return "chi2" if small else "jensenshannon"


@dataclass
class Column:
    """What one column's test needs, accumulated batch by batch."""

    name: str
    kind: str  # numeric | categorical
    profile: dict[str, Any]
    test: str
    threshold: float
    reference: Any = None  # raw reference values (dataset baseline), or None
    sketch: stats.NumericSketch | None = None
    counts: dict[str, int] = field(default_factory=dict)
    rows: int = 0
    missing: int = 0
    raw: list[Any] | None = None  # current raw values while within exact_rows
    status: str = "ok"  # ok | missing-column | wrong-type

    def add(self, values: pa.ChunkedArray | pa.Array, keep_raw: bool) -> None:
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        self.rows += len(values)
        if self.kind == "numeric":
            try:
                array = pc.cast(values, pa.float64())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                self.status = "wrong-type"
                return
            numbers = float_values(array)
            present = numbers[np.isfinite(numbers)]
            self.missing += int(numbers.size - present.size)
            if self.sketch is not None:
                self.sketch.add(present)
            if keep_raw and self.raw is not None:
                self.raw.append(present)
            return
        textual = pa.types.is_string(values.type) or pa.types.is_large_string(values.type)
        if pa.types.is_floating(values.type):
            values = pc.if_else(pc.is_nan(values), None, values)  # NaN is missing, as in pandas
        self.missing += int(values.null_count)
        table = pc.value_counts(values.drop_null())
        keys = table.field("values").to_pylist()
        if not textual:
            # The training profile holds pandas' astype(str) of each value ('True', '1.0'), which
            # is Python's str(); Arrow's own cast writes 'true' and '1'. Only the distinct values
            # are converted, so this costs nothing per row.
            keys = [str(key) for key in keys]
        numbers = table.field("counts").to_pylist()
        counts = self.counts
        for key, number in zip(keys, numbers, strict=True):
            if key in counts:
                counts[key] += number
            elif len(counts) < MAX_CATEGORIES:
                counts[key] = number
            else:
                counts[POOLED] = counts.get(POOLED, 0) + number


def float_values(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A float64 arrow array as numpy (nulls as NaN), without copying when it has no nulls.
    Read off the buffer directly: pyarrow's own to_numpy would import pandas (0.2 s)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if array.null_count:
        array = pc.fill_null(array, float("nan"))
    if len(array) == 0:
        return np.empty(0)
    values = np.frombuffer(array.buffers()[1], dtype=np.float64)
    return values[array.offset : array.offset + len(array)]


@dataclass
class Settings:
    defaults: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    drift_share: float = 0.5
    quality: dict[str, Any] = field(default_factory=dict)
    exact_rows: int = EXACT_ROWS

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Settings:
        return cls(
            defaults=dict(spec.get("defaults") or {}),
            overrides=dict(spec.get("features") or {}),
            drift_share=float(spec.get("drift_share", 0.5)),
            quality=dict(spec.get("quality") or {}),
            exact_rows=int(spec.get("exact_rows", EXACT_ROWS)),
        )


def plan_columns(
    profile: dict[str, Any],
    settings: Settings,
    kinds: dict[str, str] | None = None,
    reference: dict[str, Any] | None = None,
) -> list[Column]:
    """One Column per profiled feature, with its test and threshold decided."""
    baseline_rows = int(profile.get("rows") or 0)
    unknown = sorted(set(settings.overrides) - set(profile["features"]))
    if unknown:
        raise UsageError(
            f"features {', '.join(unknown)} are not in the baseline",
            "features holds overrides for the baseline's columns: "
            + ", ".join(profile["features"]),
        )
    columns = []
    for name, feature in profile["features"].items():
        override = settings.overrides.get(name) or {}
        if override.get("ignore"):
            continue
        kind = feature["kind"]
        if override.get("type"):
            kind = KINDS[override["type"]]
        elif kinds and name in kinds:
            kind = kinds[name]
        if kind != feature["kind"]:
            raise UsageError(
                f"feature '{name}' is {feature['kind']} in the baseline, not {kind}",
                "drop its type override, or profile the baseline again",
            )
        family = "numerical" if kind == "numeric" else "categorical"
        tests = NUMERIC_TESTS if kind == "numeric" else CATEGORICAL_TESTS
        test = override.get("test") or settings.defaults.get(family) or "auto"
        if test == "auto":
            test = default_test(kind, baseline_rows)
        if test not in tests:
            raise UsageError(
                f"test '{test}' does not apply to {family} feature '{name}'",
                f"use one of: {', '.join(tests)}",
            )
        threshold = override.get("threshold")
        if threshold is None and not override.get("test"):
            threshold = settings.defaults.get("threshold")
        if threshold is None:
            threshold = tests[test]
        column = Column(name, kind, feature, test, float(threshold))
        if kind == "numeric":
            column.sketch = fresh_sketch(feature)
            if reference is not None and name in reference:
                column.reference = reference[name]
                column.raw = []
        columns.append(column)
    return columns


def fresh_sketch(profile: dict[str, Any]) -> stats.NumericSketch | None:
    base = stats.baseline_sketch(profile)
    return None if base is None else stats.NumericSketch(base.edges)


# -- the pass over the data ------------------------------------------------------------------


@dataclass
class Extra:
    """Columns read besides the features: predictions, labels, ids."""

    prediction: Column | None = None
    prediction_column: str | None = None  # in the data; None: computed by the model
    model: Any = None  # LoadedModel, when predictions must be computed
    truth_column: str | None = None  # labels in the current data itself
    id_column: str | None = None
    truth_ids: Any = None  # pyarrow array of ids that have ground truth
    score_column: str | None = None
    collected: dict[str, Any] = field(default_factory=dict)
    outliers: Any = None  # signals.OutlierCheck: the outlier share
    attribution: Any = None  # signals.AttributionCheck: mean |contribution| per feature


def wanted_columns(columns: list[Column], extra: Extra, time_column: str | None) -> list[str]:
    wanted = data.logged_names([c.name for c in columns])
    for optional in (
        extra.prediction_column,
        extra.score_column,
        extra.truth_column,
        extra.id_column,
        time_column,
    ):
        if optional and optional not in wanted:
            wanted.append(optional)
    if extra.model is not None:
        names = data.logged_names([f.name for f in extra.model.features])
        wanted += [name for name in names if name not in wanted]
    for check in (extra.outliers, extra.attribution):
        if check is not None:
            wanted += [name for name in check.columns() if name not in wanted]
    return wanted


def tables_from_files(
    files: Iterable[Path], columns: list[Column], wanted: list[str], header: set[str]
) -> Iterator[pa.Table]:
    """Batches of every file in turn; ``header`` collects every column name seen."""
    numeric = {c.name for c in columns if c.kind == "numeric"}
    categorical = {c.name for c in columns if c.kind == "categorical"}
    for path in files:
        header.update(data.column_names(path))
        text = data.csv_text_columns(path, sorted(numeric))
        yield from data.iter_batches(path, wanted, categorical | text, numeric - text)


def tables_from_frame(frame: Any, header: set[str]) -> Iterator[pa.Table]:
    """Batches of an in-memory pandas DataFrame or pyarrow Table."""
    import pyarrow as pa

    table = (
        frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
    )
    header.update(table.column_names)
    for batch in table.to_batches(max_chunksize=262_144):
        yield pa.Table.from_batches([batch], schema=table.schema)


def accumulate(
    tables: Iterable[pa.Table],
    columns: list[Column],
    extra: Extra,
    *,
    exact_rows: int = EXACT_ROWS,
    time_column: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[int, set[str]]:
    """Feed every batch to the columns; returns (rows checked, columns present). With a
    ``time_column``, only rows in [since, until) count."""
    seen: set[str] = set()
    rows = 0
    for table in tables:
        if time_column and (since is not None or until is not None):
            table = data.filter_window(table, time_column, since, until)
        if table.num_rows == 0:
            continue
        rows += table.num_rows
        keep_raw = rows <= exact_rows
        present = set(table.column_names)
        seen |= present
        for column in columns:
            source = data.feature_column(present, column.name)
            if source in present:
                seen.add(column.name)
                column.add(table.column(source), keep_raw)
            if not keep_raw:
                column.raw = None
        for check in (extra.outliers, extra.attribution):
            if check is not None:
                check.add(table)
        _extras(table, extra)
    return rows, seen


def _extras(table: pa.Table, extra: Extra) -> None:
    """Prediction drift on every row; (label, prediction) pairs of the labelled rows."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    joined = bool(extra.id_column and extra.truth_ids is not None)
    if extra.prediction is None and not joined and not extra.truth_column:
        return
    predicted: pa.Array | pa.ChunkedArray | None = None
    scores: pa.Array | pa.ChunkedArray | None = None
    if extra.prediction_column and extra.prediction_column in table.column_names:
        predicted = table.column(extra.prediction_column)
        if extra.score_column and extra.score_column in table.column_names:
            scores = pc.cast(table.column(extra.score_column), pa.float64())
    elif extra.model is not None:
        present = set(table.column_names)
        names = [f.name for f in extra.model.features]
        frame = pa.table(
            [table.column(data.feature_column(present, n)) for n in names], names=names
        ).to_pandas()
        predicted = pa.array(np.asarray(extra.model.predict(frame)).tolist())
        if extra.model.has_proba and len(extra.model.classes) == 2:
            scores = pa.array(extra.model.predict_proba(frame)[:, 1], pa.float64())
    if extra.prediction is not None:
        source = scores if extra.prediction.profile.get("of") == "score" else predicted
        if source is not None:
            target = pa.float64() if extra.prediction.kind == "numeric" else pa.string()
            extra.prediction.add(pc.cast(source, target), False)
    if not joined and not extra.truth_column:
        return
    bucket = extra.collected
    if joined:
        if extra.id_column not in table.column_names:
            raise UsageError(
                f"id column '{extra.id_column}' is not in the current data",
                "fix ground_truth.id_column",
            )
        ids = pc.cast(table.column(extra.id_column), pa.string())
        labelled = pc.is_in(ids, value_set=extra.truth_ids)
        bucket.setdefault("ids", []).extend(ids.filter(labelled).to_pylist())
    else:
        if extra.truth_column not in table.column_names:
            raise UsageError(
                f"target column '{extra.truth_column}' is not in the current data",
                "fix ground_truth.target_column, or give ground_truth.path to join labels",
            )
        labelled = pa.array(np.ones(table.num_rows, dtype=bool))
        bucket.setdefault("actual", []).extend(table.column(extra.truth_column).to_pylist())
    if predicted is not None:
        bucket.setdefault("predicted", []).extend(predicted.filter(labelled).to_pylist())
    if scores is not None:
        bucket.setdefault("scores", []).extend(scores.filter(labelled).to_pylist())


# -- judging -------------------------------------------------------------------------------


def judge_column(column: Column, adjusted: float | None = None) -> dict[str, Any]:
    """The test result of one column (p-value tests get their adjusted p-value later)."""
    import numpy as np

    out: dict[str, Any] = {
        "name": column.name,
        "type": "numerical" if column.kind == "numeric" else "categorical",
        "test": column.test,
        "threshold": column.threshold,
        "statistic": None,
        "p_value": None,
        "drifted": False,
        "method": "sketch",
        "rows": column.rows,
        "missing": {
            "baseline": float(column.profile.get("missing") or 0.0),
            "current": column.missing / column.rows if column.rows else 0.0,
        },
        "status": column.status,
    }
    if column.status != "ok" or column.rows == 0:
        out["note"] = {
            "ok": "no rows",
            "missing-column": "the column is missing from the current data",
            "wrong-type": "the column does not hold numbers",
        }[column.status]
        return out
    if column.kind == "numeric":
        base = stats.baseline_sketch(column.profile)
        current = column.sketch
        if base is None or current is None or current.n == 0:
            out["note"] = "no values to compare"
            return out
        raw = np.concatenate(column.raw) if column.raw is not None and column.raw else None
        exact = raw is not None and column.reference is not None
        n_base = int(base.n)
        if column.test == "ks":
            if exact and raw is not None:
                d = stats.ks_statistic(column.reference, raw)
            else:
                d = stats.sketch_ks(base, current)
            out["statistic"] = d
            out["p_value"] = stats.ks_pvalue(d, n_base, current.n)
        elif column.test == "wasserstein":
            scale = stats.sketch_std(column.profile)
            if exact and raw is not None:
                distance = stats.wasserstein(column.reference, raw)
                scale = float(np.std(column.reference))
            else:
                distance = stats.sketch_wasserstein(base, current)
            out["statistic"] = distance / scale if scale > 0 else distance
            if scale <= 0:
                out["note"] = "constant in the baseline: not normalised"
        elif column.test == "psi":
            out["statistic"] = stats.psi(base.coarse(), current.coarse())
        else:
            out["statistic"] = stats.jensenshannon(base.coarse(), current.coarse())
        out["method"] = "exact" if exact and column.test in ("ks", "wasserstein") else "binned"
        if not exact and column.test in ("ks", "wasserstein"):
            out["method"] = "sketch"
        out["range"] = {
            "baseline": [column.profile.get("min"), column.profile.get("max")],
            "current": [current.low, current.high],
        }
        out["out_of_range"] = (current.below + current.above) / current.n
        out["chart"] = _numeric_chart(base, current)
    else:
        labels, base_counts, current_counts, unseen = _aligned(column)
        total = sum(current_counts)
        if total == 0:
            out["note"] = "no values to compare"
            return out
        b, c = np.asarray(base_counts, dtype="float64"), np.asarray(current_counts, "float64")
        if column.test == "chi2":
            out["statistic"], out["p_value"] = stats.chi2_homogeneity(b, c)
        elif column.test == "psi":
            out["statistic"] = stats.psi(b, c)
        elif column.test == "linf":
            out["statistic"] = stats.linf(b, c)
        else:
            out["statistic"] = stats.jensenshannon(b, c)
        out["method"] = "counts"
        out["unseen"] = unseen / total if unseen is not None else None
        out["chart"] = _categorical_chart(labels, b, c)
    if column.test in PVALUE_TESTS:
        p = out["p_value"] if adjusted is None else adjusted
        out["p_adjusted"] = p
        out["drifted"] = bool(p < column.threshold)
    else:
        out["drifted"] = bool(out["statistic"] >= column.threshold)
    return out


def _aligned(column: Column) -> tuple[list[str], list[int], list[int], int | None]:
    """Labels, baseline counts, current counts over one category list; and how many current
    values the baseline never saw (None when it pooled rare values, so cannot tell)."""
    base: dict[str, int] = dict(column.profile.get("frequencies") or {})
    pooled = OTHER in base
    labels = list(base)
    current = [0] * len(labels)
    index = {label: i for i, label in enumerate(labels)}
    unseen = 0
    extra: dict[str, int] = {}
    for value, number in column.counts.items():
        if value in index and value != OTHER:
            current[index[value]] += number
        elif pooled:
            current[index[OTHER]] += number
        else:
            unseen += number
            extra[value] = extra.get(value, 0) + number
    for value in sorted(extra, key=lambda v: (-extra[v], v)):
        labels.append(value)
        current.append(extra[value])
    base_counts = [base.get(label, 0) if label in index else 0 for label in labels]
    return labels, base_counts, current, None if pooled else unseen


def _numeric_chart(base: stats.NumericSketch, current: stats.NumericSketch) -> dict[str, Any]:
    """Shares of both samples in 30 equal-width bins over the union of their ranges, read off
    the two piecewise-linear distribution functions."""
    import numpy as np

    lo = min(float(base.edges[0]), current.low)
    hi = max(float(base.edges[-1]), current.high)
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        hi = lo + 1.0
    grid = np.linspace(lo, hi, 31)

    def curve(sketch: stats.NumericSketch, low: float, high: float) -> np.ndarray:
        x = np.concatenate([[low], sketch.edges, [high]])
        y = np.concatenate([[0.0], sketch.cdf(), [1.0]])
        order = np.argsort(x, kind="stable")
        x, y = x[order], y[order]
        last = np.append(x[1:] != x[:-1], True)
        x, y = x[last], np.maximum.accumulate(y[last])
        return np.diff(np.interp(grid, x, y, left=0.0, right=1.0))

    base_low = float(base.edges[0])
    return {
        "kind": "histogram",
        "edges": [float(v) for v in grid],
        "baseline": [float(v) for v in curve(base, base_low, float(base.edges[-1]))],
        "current": [
            float(v)
            for v in curve(current, min(current.low, base_low), max(current.high, base.edges[-1]))
        ],
        "baseline_range": [float(base.edges[0]), float(base.edges[-1])],
    }


def _categorical_chart(labels: list[str], base: np.ndarray, current: np.ndarray) -> dict[str, Any]:
    import numpy as np

    b, c = stats.shares(base), stats.shares(current)
    order = np.argsort(-np.maximum(b, c), kind="stable")
    keep = order[:12]
    rest = order[12:]
    out_labels = [labels[i] for i in keep]
    b_out, c_out = [float(b[i]) for i in keep], [float(c[i]) for i in keep]
    if rest.size:
        out_labels.append(f"({rest.size} more)")
        b_out.append(float(b[rest].sum()))
        c_out.append(float(c[rest].sum()))
    return {"kind": "bars", "labels": out_labels, "baseline": b_out, "current": c_out}


def judge(
    columns: list[Column],
    settings: Settings,
    seen: Iterable[str],
    all_columns: Iterable[str],
    rows: int,
) -> dict[str, Any]:
    """Feature results (drifted first), dataset drift and data quality."""
    seen = set(seen)
    for column in columns:
        if column.name not in seen and column.status == "ok":
            column.status = "missing-column"
    results = [judge_column(c) for c in columns]
    tested = [r for r in results if r["test"] in PVALUE_TESTS and r["p_value"] is not None]
    if tested:
        adjusted = stats.benjamini_hochberg([r["p_value"] for r in tested])
        for result, p in zip(tested, adjusted, strict=True):
            result["p_adjusted"] = p
            result["drifted"] = bool(p < result["threshold"])
    judged = [r for r in results if r["statistic"] is not None]
    drifted = [r["name"] for r in judged if r["drifted"]]
    share = len(drifted) / len(judged) if judged else 0.0
    quality = _quality(columns, results, settings, set(all_columns), rows)
    results.sort(key=lambda r: (not r["drifted"], r["status"] == "ok"))
    return {
        "features": results,
        "drifted_features": drifted,
        "drift_share": share,
        "drift": bool(judged) and share >= settings.drift_share,
        "drift_share_threshold": settings.drift_share,
        "quality": quality,
    }


def _quality(
    columns: list[Column],
    results: list[dict[str, Any]],
    settings: Settings,
    all_columns: set[str],
    rows: int,
) -> list[dict[str, Any]]:
    limits = {**QUALITY_DEFAULTS, **{k: v for k, v in settings.quality.items() if k != "fail"}}
    missing_cols = [c.name for c in columns if c.status == "missing-column"]
    wrong = [c.name for c in columns if c.status == "wrong-type"]
    known = {c.name for c in columns} | FIXED_COLUMNS  # the prediction log's own columns
    extra = sorted(c for c in all_columns - known if not c.startswith(CONTRIB_PREFIX))
    if not rows:
        extra = []
    checks: list[dict[str, Any]] = [
        {
            "test": "schema",
            "failed": bool(missing_cols or wrong),
            "missing_columns": missing_cols,
            "wrong_types": wrong,
            "extra_columns": extra,
        }
    ]
    increases = [
        {
            "name": r["name"],
            "baseline": r["missing"]["baseline"],
            "current": r["missing"]["current"],
        }
        for r in results
        if r["status"] == "ok"
        and r["missing"]["current"] - r["missing"]["baseline"] > limits["missing_increase"]
    ]
    checks.append(
        {
            "test": "missing_increase",
            "threshold": limits["missing_increase"],
            "failed": bool(increases),
            "features": increases,
        }
    )
    outside = [
        {"name": r["name"], "share": r["out_of_range"], "range": r["range"]}
        for r in results
        if r.get("out_of_range") is not None and r["out_of_range"] > limits["out_of_range"]
    ]
    checks.append(
        {
            "test": "out_of_range",
            "threshold": limits["out_of_range"],
            "failed": bool(outside),
            "features": outside,
        }
    )
    unseen = [
        {"name": r["name"], "share": r["unseen"]}
        for r in results
        if r.get("unseen") is not None and r["unseen"] > limits["unseen_categories"]
    ]
    pooled = [r["name"] for r in results if r["type"] == "categorical" and r.get("unseen") is None]
    entry: dict[str, Any] = {
        "test": "unseen_categories",
        "threshold": limits["unseen_categories"],
        "failed": bool(unseen),
        "features": unseen,
    }
    if pooled:
        entry["note"] = (
            f"not judged for {', '.join(pooled)}: training kept only the top "
            "categories, so a value outside them may have been seen"
        )
    checks.append(entry)
    return checks
