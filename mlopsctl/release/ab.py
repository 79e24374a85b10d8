"""A/B tests on business outcomes: the prediction logs of two arms joined with the outcomes that
came back, per unit (the sticky key), judged with abstats, and a recorded decision.

What is read (the layout README "Serving" documents; `mlopsctl serve` writes it):
  * ``logs/predictions/<model>/date=D/``: one row per predicted row, with ``request_id``,
    ``row`` (absent in older logs: 0), ``ts``, ``version`` and the unit column (the
    deployment's ``--key`` column, logged under its name, or a feature);
  * ``logs/feedback/<model>/date=D/``: outcomes by ``request_id`` and ``row``; of duplicates the
    one with the latest ``ts`` wins (ties: the later file, later in it), even when it is null
    or not a number: that retracts the earlier ones, and the row has no outcome (the rule of
    ``mlopsctl datasets build`` too); outcomes for request ids no logged prediction in the
    window has are counted and reported (``feedback.unknown``).
Only the ``date=`` partitions that can hold rows of the window are read (a local store's files
where they lie, any other store's downloaded a few at a time); DuckDB reads only the columns it
needs from the Parquet files, joins and aggregates them per unit, and numpy judges the per-unit
arrays (bench/ab.py: 10 million predictions and a million outcomes against pandas' merge and
groupby).

The unit of analysis is the unit, not the request: a unit belongs to the arm (model version) of
its first request in the window; a unit seen on both arms is left out and counted
(``mixed_units``). Per unit: its exposures (logged rows), the sum of its outcome values (text
outcomes: true/yes are 1, false/no 0), how many outcomes came back, and whether any was above 0
(a conversion). With ``outcome_window`` (delayed outcomes), a unit counts only once its window
after its first request has closed, and only outcomes inside that window count.

Metrics (``primary`` and any ``guardrails``): ``proportion`` (the share of units that
converted), ``mean`` (outcome value per unit; ``winsorize: q`` clips it to its [1-q, q]
quantiles), ``ratio`` (sum of a numerator over sum of a denominator among value, conversions,
outcomes and exposures; the delta method). ``cuped: COLUMN`` adjusts proportion and mean metrics
by the unit's mean of a logged pre-period column.

The analysis is repeated at every day (hour, for windows under two days) of the window, the
looks the interval-over-time chart shows. ``mode: sequential`` (the default) judges with the
always-valid mixture SPRT's confidence sequence, so a daily run from CI, stopping at the first
decision, does not inflate false positives; ``mode: fixed`` judges with the plain interval, and
only once the units reach the minimum sample size for ``mde`` at ``power``.

Decision: ``invalid`` when the units per arm do not match the weights (sample-ratio mismatch,
chi-square p below ``srm_alpha``) or an arm has no units, never a pass; ``fail`` when a metric's
whole interval lies past its bound (primary: below ``min_improvement``; guardrail: worse than
``max_regression``); ``pass`` when every metric's interval clears its bound; else
``inconclusive``.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlopsctl import registry
from mlopsctl.errors import MlopsError, UsageError
from mlopsctl.events import record_event
from mlopsctl.logformat import FEEDBACK, PREDICTIONS
from mlopsctl.release import abstats
from mlopsctl.release.analysis import CheckResult, Look, Window, register_check
from mlopsctl.release.gates import GateResult, candidate_ref, champion_alias
from mlopsctl.serving.arms import arms_of, read_deployment
from mlopsctl.serving.feedback import download_files, partition_keys
from mlopsctl.timeutil import parse_duration, parse_time, stamp, utc_now

if TYPE_CHECKING:
    from collections.abc import Mapping

    from mlopsctl.store.base import ObjectStore

KINDS = ("proportion", "mean", "ratio")
AMOUNTS = ("value", "conversions", "outcomes", "exposures")
DEFAULT_ALPHA = 0.05
DEFAULT_SRM_ALPHA = 0.001
DEFAULT_POWER = 0.8
DEFAULT_HORIZON = 10_000
MAX_LOOKS = 90
DECISIONS = ("pass", "fail", "inconclusive", "invalid")


# -- the gate's configuration ----------------------------------------------------------------


@dataclass
class Metric:
    name: str
    kind: str
    role: str  # primary or guardrail
    numerator: str = "value"
    denominator: str = "exposures"
    winsorize: float | None = None
    lower_is_better: bool = False
    min_improvement: float | None = None
    max_regression: float | None = None

    @property
    def bound(self) -> float:
        """The improvement (treatment - control, sign-flipped when lower is better) to clear."""
        if self.max_regression is not None:
            return -float(self.max_regression)
        return float(self.min_improvement or 0.0)

    @property
    def bound_text(self) -> str:
        if self.max_regression is not None:
            return f"no worse than {self.max_regression:g}"
        return f"better by more than {self.min_improvement or 0.0:g}"


@dataclass
class Config:
    name: str
    metrics: list[Metric]
    unit: str | None = None
    alpha: float = DEFAULT_ALPHA
    srm_alpha: float = DEFAULT_SRM_ALPHA
    mode: str = "sequential"
    mde: float | None = None
    power: float = DEFAULT_POWER
    horizon: int | None = None
    cuped: str | None = None
    outcome_window: timedelta | None = None
    window: timedelta | None = None
    since: datetime | None = None
    weights: dict[str, float] | None = None
    deployment: str | None = None
    control: str | None = None
    treatment: str | None = None
    on_inconclusive: str = "fail"


def _metric(entry: Any, role: str, where: str) -> Metric:
    if not isinstance(entry, dict):
        raise UsageError(f"{where} must be a mapping like {{name: conversion, metric: proportion}}")
    kind = str(entry.get("metric") or "")
    if kind not in KINDS:
        raise UsageError(f"{where}.metric {kind!r} is not one of {', '.join(KINDS)}")
    for key in ("numerator", "denominator"):
        if entry.get(key) is not None and entry[key] not in AMOUNTS:
            raise UsageError(f"{where}.{key} must be one of {', '.join(AMOUNTS)}")
    if entry.get("min_improvement") is not None and entry.get("max_regression") is not None:
        raise UsageError(f"{where} has both min_improvement and max_regression: keep one")
    winsorize = entry.get("winsorize")
    if winsorize is not None and not 0.5 < float(winsorize) < 1:
        raise UsageError(f"{where}.winsorize is a quantile between 0.5 and 1, like 0.99")
    max_regression = entry.get("max_regression")
    if role == "guardrail" and max_regression is None and entry.get("min_improvement") is None:
        max_regression = 0.0
    return Metric(
        name=str(entry.get("name") or kind),
        kind=kind,
        role=role,
        numerator=str(entry.get("numerator") or "value"),
        denominator=str(entry.get("denominator") or "exposures"),
        winsorize=float(winsorize) if winsorize is not None else None,
        lower_is_better=bool(entry.get("lower_is_better", False)),
        min_improvement=entry.get("min_improvement"),
        max_regression=max_regression,
    )


def config_of(gate: dict[str, Any]) -> Config:
    """The ab gate's keys (release.schema.json) as a Config; UsageError naming a bad one."""
    name = str(gate.get("name") or "ab")
    if "primary" not in gate:
        raise UsageError(f"ab gate {name!r} has no primary metric", "add primary: {metric: ...}")
    metrics = [_metric(gate["primary"], "primary", "primary")]
    for i, entry in enumerate(gate.get("guardrails") or []):
        metrics.append(_metric(entry, "guardrail", f"guardrails[{i}]"))
    mode = str(gate.get("mode") or "sequential")
    if mode not in ("sequential", "fixed"):
        raise UsageError(f"ab gate {name!r}: mode {mode!r} is not sequential or fixed")
    if mode == "fixed" and gate.get("mde") is None:
        raise UsageError(
            f"ab gate {name!r} is fixed-horizon without mde",
            "give mde (the smallest difference worth finding) so the sample size can be planned",
        )
    since = None
    if gate.get("since") is not None:
        try:
            since = parse_time(str(gate["since"]))
        except ValueError:
            raise UsageError(f"ab gate {name!r}: since {gate['since']!r} is not a time") from None
    weights = gate.get("weights")
    if weights is not None:
        if set(weights) != {"control", "treatment"} or min(map(float, weights.values())) <= 0:
            raise UsageError(
                f"ab gate {name!r}: weights are {{control: W, treatment: W}}, both above 0"
            )
        weights = {k: float(v) for k, v in weights.items()}
    window = gate.get("window")
    outcome_window = gate.get("outcome_window")
    return Config(
        name=name,
        metrics=metrics,
        unit=gate.get("unit"),
        alpha=float(gate.get("alpha", DEFAULT_ALPHA)),
        srm_alpha=float(gate.get("srm_alpha", DEFAULT_SRM_ALPHA)),
        mode=mode,
        mde=float(gate["mde"]) if gate.get("mde") is not None else None,
        power=float(gate.get("power", DEFAULT_POWER)),
        horizon=int(gate["horizon"]) if gate.get("horizon") is not None else None,
        cuped=gate.get("cuped"),
        outcome_window=parse_duration(outcome_window, "outcome_window") if outcome_window else None,
        window=parse_duration(window, "window") if window else None,
        since=since,
        weights=weights,
        deployment=gate.get("deployment"),
        control=str(gate["control"]) if gate.get("control") is not None else None,
        treatment=str(gate["treatment"]) if gate.get("treatment") is not None else None,
        on_inconclusive=str(gate.get("on_inconclusive", "fail")),
    )


# -- reading the store -------------------------------------------------------------------------


def _day(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d")


@dataclass
class Units:
    """Per-unit facts, indexed 0..U-1 (the control's units first), and per-(unit, look bucket)
    amounts."""

    arm: Any  # 1 treatment, 0 control: sorted
    first_ms: Any
    mixed: Any
    x: Any  # the CUPED column's mean over the unit's rows (nan: none)
    exposures: tuple[Any, Any, Any]  # (unit, bucket, count)
    outcomes: tuple[Any, Any, Any, Any, Any]  # (unit, bucket, sum, count, max)
    counts: dict[str, int] = field(default_factory=dict)
    unit_column: str = "request_id"


# Every log file at once: columns matched by name (versions with other features write other
# schemas), no columns made up from the date= folders.
_READ = "read_parquet($files, union_by_name = true, hive_partitioning = false)"


def _columns(con: Any, files: list[str]) -> dict[str, str]:
    rows = con.execute(f"DESCRIBE SELECT * FROM {_READ}", {"files": files}).fetchall()
    return {str(r[0]): str(r[1]) for r in rows}


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _number(column: str, kind: str) -> str:
    """SQL for an outcome as a number: numbers as they are, booleans 0/1, text cast (true/yes
    are 1, false/no 0), anything else null."""
    if kind.startswith(("DOUBLE", "FLOAT", "INTEGER", "BIGINT", "SMALLINT", "TINYINT", "DECIMAL")):
        return f"CAST({column} AS DOUBLE)"
    if kind == "BOOLEAN":
        return f"CAST({column} AS DOUBLE)"
    text = f"CAST({column} AS VARCHAR)"
    # The cast first (it ignores case and surrounding spaces): the words only where it fails.
    return (
        f"COALESCE(TRY_CAST({text} AS DOUBLE), CASE lower(trim({text})) WHEN 'true' THEN 1.0 "
        "WHEN 'yes' THEN 1.0 WHEN 'false' THEN 0.0 WHEN 'no' THEN 0.0 END)"
    )


def read_units(
    store: ObjectStore,
    model: str,
    *,
    control: int,
    treatment: int,
    since: datetime,
    until: datetime,
    step: timedelta,
    unit: str | None,
    cuped: str | None,
    outcome_window: timedelta | None,
) -> Units:
    """Join the window's prediction logs and outcomes per unit (see the module docstring)."""
    import duckdb
    import numpy as np

    pred_keys = partition_keys(store, f"{PREDICTIONS}/{model}/", _day(since), _day(until))
    feed_keys = partition_keys(store, f"{FEEDBACK}/{model}/", _day(since), _day(until))
    since_ms = int(since.timestamp() * 1000)
    until_ms = int(until.timestamp() * 1000)
    step_ms = max(1, int(step.total_seconds() * 1000))
    window_ms = int(outcome_window.total_seconds() * 1000) if outcome_window else None
    empty = np.empty(0, dtype="int64")
    units = Units(
        arm=empty,
        first_ms=empty,
        mixed=np.empty(0, dtype=bool),
        x=np.empty(0),
        exposures=(empty, empty, empty),
        outcomes=(empty, empty, np.empty(0), empty, np.empty(0)),
        unit_column=unit or "request_id",
    )
    units.counts = {"prediction_files": len(pred_keys), "feedback_files": len(feed_keys)}
    if not pred_keys:
        return units
    with tempfile.TemporaryDirectory(prefix="mlopsctl-ab-") as tmp:
        pred_files = download_files(store, pred_keys, Path(tmp) / "p")
        feed_files = download_files(store, feed_keys, Path(tmp) / "f")
        con = duckdb.connect()
        try:
            con.execute(f"SET threads = {max(1, os.cpu_count() or 1)}")
            con.execute("SET preserve_insertion_order = false")  # no order is relied on
            _load(
                con,
                pred_files,
                feed_files,
                units,
                control=control,
                treatment=treatment,
                since_ms=since_ms,
                until_ms=until_ms,
                step_ms=step_ms,
                window_ms=window_ms,
                unit=unit,
                cuped=cuped,
            )
        finally:
            con.close()
    return units


def _load(
    con: Any,
    pred_files: list[str],
    feed_files: list[str],
    units: Units,
    *,
    control: int,
    treatment: int,
    since_ms: int,
    until_ms: int,
    step_ms: int,
    window_ms: int | None,
    unit: str | None,
    cuped: str | None,
) -> None:
    """The queries behind read_units. The prediction logs are scanned twice, reading only the
    columns each pass needs: once grouped per unit and look bucket, once for the rows that
    have an outcome (a semi join with the outcomes, grouped per key); nothing of the 10
    million rows is kept in between, and only per-unit tables come back to numpy."""
    import numpy as np

    columns = _columns(con, pred_files)
    for needed in ("request_id", "ts", "version"):
        if needed not in columns:
            raise MlopsError(f"the prediction logs have no {needed!r} column")

    def logged(name: str, what: str) -> str:
        for column in (name, f"feature.{name}", f"key.{name}"):
            if column in columns:
                return _quote(column)
        raise UsageError(
            f"the prediction logs have no column {name!r} ({what})",
            "log it: serve with --key COLUMN (the sticky key is logged under its name), or "
            "name a feature of the model",
        )

    def hashed(sql: str) -> str:
        return f"CASE WHEN {sql} IS NULL THEN NULL ELSE hash(CAST({sql} AS VARCHAR)) END"

    # Request ids and units are joined and grouped by their 64-bit hashes, not as text: several
    # times faster, and a collision among 10 million ids has odds of about one in 300,000.
    unit_column = logged(unit, "the unit") if unit else "request_id"
    unit_sql = hashed(unit_column)
    rid_sql = "hash(CAST(request_id AS VARCHAR))"
    row_sql = "COALESCE(CAST(row AS BIGINT), 0)" if "row" in columns else "0"
    in_window = "epoch_ms(ts) >= $since AND epoch_ms(ts) < $until AND request_id IS NOT NULL"
    window = {"since": since_ms, "until": until_ms}
    arms = {"c": control, "t": treatment}
    buckets = {"since": since_ms, "step": step_ms}
    x_row = ""
    x_sum = ""
    x_mean = "CAST(NULL AS DOUBLE)"
    if cuped:
        x_row = f", TRY_CAST({logged(cuped, 'cuped')} AS DOUBLE) AS x"
        x_sum = ", sum(x) AS sx, count(x) AS nx"
        x_mean = "sum(sx) / nullif(sum(nx), 0)"
    # Pass 1: per unit and look bucket. The first request's time and arm travel as one number,
    # 2 t + (arm is the treatment), so one min() finds both; a unit is on both arms when its
    # treatment rows are neither none nor all. Rows of other versions, or without a unit, go
    # to groups without a unit: they count only as prediction rows.
    con.execute(
        f"""CREATE TEMP TABLE ub AS
        SELECT CASE WHEN v IN ($c, $t) THEN uh END AS uh, (t - $since) // $step AS b,
               count(*) AS n, min(2 * t + CAST(v = $t AS BIGINT)) AS ta,
               count(*) FILTER (WHERE v = $t) AS nt{x_sum}
        FROM (SELECT {unit_sql} AS uh, epoch_ms(ts) AS t, CAST(version AS BIGINT) AS v{x_row}
              FROM {_READ} WHERE {in_window})
        GROUP BY ALL""",
        {"files": pred_files, **window, **arms, **buckets},
    )
    # The units, numbered control first (then by key: the same order every run), so that an
    # arm's units are one slice of every per-unit array.
    con.execute(
        f"""CREATE TEMP TABLE u AS
        SELECT uh, ta, (ta - (ta & 1)) // 2 AS first_t, mixed, x,
               row_number() OVER (ORDER BY ta & 1, uh) - 1 AS i
        FROM (SELECT uh, min(ta) AS ta, sum(nt) NOT IN (0, sum(n)) AS mixed, {x_mean} AS x
              FROM ub WHERE uh IS NOT NULL GROUP BY uh)"""
    )
    got = con.execute("SELECT i, ta, mixed, x FROM u").fetchnumpy()
    at = np.asarray(got["i"], dtype="int64")
    first = np.empty(len(at), dtype="int64")
    first[at] = got["ta"]
    units.arm = (first % 2).astype("int8")
    units.first_ms = first // 2
    units.mixed = np.empty(len(at), dtype=bool)
    units.mixed[at] = got["mixed"]
    units.x = np.empty(len(at))
    units.x[at] = _floats(got["x"])
    exposures = con.execute("SELECT u.i, ub.b, ub.n FROM ub JOIN u USING (uh)").fetchnumpy()
    units.exposures = (
        np.asarray(exposures["i"], dtype="int64"),
        np.asarray(exposures["b"], dtype="int64"),
        np.asarray(exposures["n"], dtype="int64"),
    )
    prediction_rows = con.execute("SELECT sum(n) FROM ub").fetchone()
    units.counts["prediction_rows"] = int(prediction_rows[0] or 0) if prediction_rows else 0
    if not feed_files:
        units.counts.update(feedback_rows=0, duplicates=0, unknown=0)
        return
    feed_columns = _columns(con, feed_files)
    if "request_id" not in feed_columns or "ts" not in feed_columns:
        raise MlopsError("the feedback logs have no 'request_id' or 'ts' column")
    actual = "actual" if "actual" in feed_columns else None
    feed_row = "COALESCE(CAST(row AS BIGINT), 0)" if "row" in feed_columns else "0"
    # Of the outcomes given for one (request id, row), the one with the latest ts wins (ties:
    # the later file, later in it), even when it is null: a retraction. arg_max would skip a
    # null and keep an older outcome; arg_max_null is what datasets build uses too.
    latest = (
        f"arg_max_null({_quote(actual)}, (epoch_ms(ts), file_index, file_row_number))"
        if actual
        else "NULL"
    )
    con.execute(
        f"""CREATE TEMP TABLE f AS
        SELECT {rid_sql} AS rh, {feed_row} AS r, max(epoch_ms(ts)) AS t, {latest} AS val,
               count(*) AS copies
        FROM {_READ} WHERE {in_window}
        GROUP BY ALL""",
        {"files": feed_files, **window},
    )
    # Pass 2: each outcome with its prediction's unit and version (at-least-once log writes
    # may hold a row twice: one of them); the unit is hashed after the join, for those rows
    # only.
    con.execute(
        f"""CREATE TEMP TABLE m AS
        SELECT rh, r, {hashed("any_value(p.k)")} AS uh, any_value(p.v) AS v,
               any_value(f.t) AS t, any_value(f.val) AS val
        FROM (SELECT {rid_sql} AS rh, {row_sql} AS r, {unit_column} AS k,
                     CAST(version AS BIGINT) AS v
              FROM {_READ} WHERE {in_window}) AS p JOIN f USING (rh, r)
        GROUP BY rh, r""",
        {"files": pred_files, **window},
    )
    counts = con.execute(
        "SELECT count(*), sum(copies - 1), count(*) - (SELECT count(*) FROM m) FROM f"
    ).fetchone()
    assert counts is not None
    units.counts.update(
        feedback_rows=int(counts[0] or 0),
        duplicates=int(counts[1] or 0),
        unknown=int(counts[2] or 0),
    )
    value = _number("val", feed_columns[actual]) if actual else "CAST(NULL AS DOUBLE)"
    within = "AND f.t <= u.first_t + $window" if window_ms is not None else ""
    outcomes = con.execute(
        f"""SELECT u.i, (f.t - $since) // $step AS b, sum(f.y) AS s, count(*) AS n,
               max(f.y) AS mx
        FROM (SELECT uh, t, {value} AS y FROM m WHERE v IN ($c, $t)) AS f JOIN u USING (uh)
        WHERE f.y IS NOT NULL {within}
        GROUP BY ALL""",
        {**arms, **buckets, **({"window": window_ms} if window_ms is not None else {})},
    ).fetchnumpy()
    units.outcomes = (
        np.asarray(outcomes["i"], dtype="int64"),
        np.asarray(outcomes["b"], dtype="int64"),
        np.asarray(outcomes["s"], dtype="float64"),
        np.asarray(outcomes["n"], dtype="int64"),
        np.asarray(outcomes["mx"], dtype="float64"),
    )


def _floats(column: Any) -> Any:
    """A fetched column as float64, null as nan (fetchnumpy masks nulls over zeros)."""
    import numpy as np

    return np.ma.filled(np.ma.asarray(column).astype("float64"), np.nan)


# -- the analysis ------------------------------------------------------------------------------


def look_step(since: datetime, until: datetime) -> timedelta:
    """A day; an hour for windows under two days; a single look under two hours; never more
    than MAX_LOOKS looks."""
    span = until - since
    if span >= timedelta(days=2):
        step = timedelta(days=1)
    elif span >= timedelta(hours=2):
        step = timedelta(hours=1)
    else:
        return max(span, timedelta(seconds=1))
    while span / step > MAX_LOOKS:
        step *= 2
    return step


@dataclass
class _Amounts:
    """Per-unit running totals up to a look."""

    exposures: Any
    value: Any
    outcomes: Any
    top: Any  # the largest outcome value (-inf: none yet)

    def of(self, name: str) -> Any:
        import numpy as np

        if name == "exposures":
            return self.exposures.astype("float64")
        if name == "outcomes":
            return self.outcomes.astype("float64")
        if name == "conversions":
            return (self.top > 0).astype("float64")
        return np.asarray(self.value, dtype="float64")


def _sums(values: Any, split: int, x: Any = None, d: Any = None) -> tuple[Any, Any]:
    """Sums for treatment and control, whose units come first (``split`` of them)."""
    import numpy as np

    def dot(a: Any, b: Any) -> float:  # not np.dot: BLAS threads crawl on a busy machine
        return float(np.einsum("i,i->", a, b))

    sides = []
    for part in (slice(None, split), slice(split, None)):
        y = values[part]
        side = abstats.Sums(float(y.size), float(y.sum()), dot(y, y))
        if x is not None:
            xs = x[part]
            side.x, side.xx, side.xy = float(xs.sum()), dot(xs, xs), dot(xs, y)
        if d is not None:
            ds = d[part]
            side.d, side.dd, side.yd = float(ds.sum()), dot(ds, ds), dot(y, ds)
        sides.append(side)
    return sides[1], sides[0]


@dataclass
class _MetricLook:
    est: abstats.Estimate
    fixed: tuple[float, float, float]
    seq: tuple[float, float, float]
    units: tuple[int, int]
    caps: tuple[float, float] | None = None
    variance_reduction: float | None = None


def _judge_look(metric: Metric, amounts: _Amounts, split: int, x: Any, cfg: Config) -> _MetricLook:
    """One metric at one look; the units are the control's (``split`` of them), then the
    treatment's."""

    d = None
    if metric.kind == "proportion":
        y = amounts.of("conversions")
    elif metric.kind == "mean":
        y = amounts.of("value")
    else:
        y = amounts.of(metric.numerator)
        d = amounts.of(metric.denominator)
    caps = None
    if metric.winsorize is not None and metric.kind != "proportion" and y.size:
        y, low, high = abstats.winsorize(y, metric.winsorize)
        caps = (low, high)
    use_cuped = x is not None and metric.kind != "ratio"
    t, c = _sums(y, split, x if use_cuped else None, d)
    est = abstats.estimate(metric.kind, t, c, cuped=use_cuped)
    reduction = None
    if use_cuped:
        plain = abstats.estimate(metric.kind, t, c)
        if float(plain.se) > 0:
            reduction = 1.0 - float(est.se) ** 2 / float(plain.se) ** 2
    low, high, p = abstats.fixed_interval(est, cfg.alpha)
    units = (int(c.n), int(t.n))
    horizon = cfg.horizon or DEFAULT_HORIZON
    tau2 = abstats.mixture_tau2(est.se, units[0] + units[1], horizon, cfg.alpha)
    s_low, s_high, s_p = abstats.msprt(est.delta, est.se, tau2, cfg.alpha)
    return _MetricLook(
        est,
        (float(low), float(high), float(p)),
        (float(s_low), float(s_high), float(s_p)),
        units,
        caps,
        reduction,
    )


def _flip(metric: Metric, low: float, high: float) -> tuple[float, float]:
    """The interval of the improvement (higher is better) from that of treatment - control."""
    return (-high, -low) if metric.lower_is_better else (low, high)


def _num(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def analyze(
    store: ObjectStore,
    model: str,
    cfg: Config,
    *,
    control: int,
    treatment: int,
    until: datetime,
    since: datetime | None = None,
    control_label: str | None = None,
    treatment_label: str | None = None,
) -> dict[str, Any]:
    """The analysis of one ab gate over [since, until): arms, SRM, every metric at every look,
    and the decision with the numbers."""
    import numpy as np

    deployment = read_deployment(store, model, cfg.deployment)
    record = deployment[0] if deployment else None
    since = since or _since_of(cfg, record, until)
    if since >= until:
        raise UsageError(
            f"ab gate {cfg.name!r}: the window starts at {stamp(since)}, not before "
            f"its end {stamp(until)}"
        )
    weights = cfg.weights or _weights_of(store, model, record, control, treatment, cfg.name)
    unit = cfg.unit or (record.get("key") if record else None)
    step = look_step(since, until)
    data = read_units(
        store,
        model,
        control=control,
        treatment=treatment,
        since=since,
        until=until,
        step=step,
        unit=unit,
        cuped=cfg.cuped,
        outcome_window=cfg.outcome_window,
    )
    n_looks = max(1, math.ceil((until - since) / step))
    since_ms = int(since.timestamp() * 1000)
    step_ms = int(step.total_seconds() * 1000)
    until_ms = int(until.timestamp() * 1000)
    cutoffs = [min(since_ms + (k + 1) * step_ms, until_ms) for k in range(n_looks)]
    total = len(data.arm)
    result: dict[str, Any] = {
        "gate": cfg.name,
        "model": model,
        "control": {"version": control, "label": control_label},
        "treatment": {"version": treatment, "label": treatment_label},
        "window": {"since": stamp(since), "until": stamp(until)},
        "unit": data.unit_column,
        "mode": cfg.mode,
        "alpha": cfg.alpha,
        "weights": weights,
        "outcome_window": _duration_text(cfg.outcome_window),
        "cuped": cfg.cuped,
        "feedback": {k: data.counts.get(k, 0) for k in ("feedback_rows", "duplicates", "unknown")},
        "prediction_rows": data.counts.get("prediction_rows", 0),
        "files": {
            "predictions": data.counts.get("prediction_files", 0),
            "feedback": data.counts.get("feedback_files", 0),
        },
    }
    mixed = data.mixed
    # SRM on every unit first seen in the window (a unit on both arms counts where it began).
    counts = [int((data.arm == 0).sum()), int((data.arm == 1).sum())]
    share = weights["treatment"] / (weights["control"] + weights["treatment"])
    chi2, srm_p = abstats.srm(counts, [weights["control"], weights["treatment"]])
    result["srm"] = {
        "units": {"control": counts[0], "treatment": counts[1]},
        "expected_share": share,
        "observed_share": counts[1] / total if total else None,
        "chi2": float(chi2),
        "p": float(srm_p),
        "alpha": cfg.srm_alpha,
        "mismatch": bool(total and float(srm_p) < cfg.srm_alpha),
    }
    result["mixed_units"] = int(mixed.sum())
    ex_unit, ex_bucket, ex_n = data.exposures
    oc_unit, oc_bucket, oc_sum, oc_n, oc_max = data.outcomes
    amounts = _Amounts(
        np.zeros(total, dtype="int64"),
        np.zeros(total),
        np.zeros(total, dtype="int64"),
        np.full(total, -np.inf),
    )
    x_all = data.x if cfg.cuped else None
    window_ms = int(cfg.outcome_window.total_seconds() * 1000) if cfg.outcome_window else 0
    looks: list[dict[str, Any]] = []
    per_metric: list[list[_MetricLook]] = [[] for _ in cfg.metrics]
    eligible = np.zeros(total, dtype=bool)
    ex_order, ex_bounds = _by_bucket(ex_bucket, n_looks)
    ex_unit, ex_n = ex_unit[ex_order], ex_n[ex_order]
    oc_order, oc_bounds = _by_bucket(oc_bucket, n_looks)
    oc_unit, oc_sum, oc_n, oc_max = (a[oc_order] for a in (oc_unit, oc_sum, oc_n, oc_max))
    for k, cutoff in enumerate(cutoffs):
        sel = slice(ex_bounds[k], ex_bounds[k + 1])
        amounts.exposures += np.bincount(ex_unit[sel], weights=ex_n[sel], minlength=total).astype(
            "int64"
        )
        sel = slice(oc_bounds[k], oc_bounds[k + 1])
        if sel.start < sel.stop:
            amounts.value += np.bincount(oc_unit[sel], weights=oc_sum[sel], minlength=total)
            amounts.outcomes += np.bincount(
                oc_unit[sel], weights=oc_n[sel], minlength=total
            ).astype("int64")
            # One row per unit and bucket: no unit twice in a bucket, so no ufunc.at needed.
            at = oc_unit[sel]
            amounts.top[at] = np.maximum(amounts.top[at], oc_max[sel])
        eligible = (~mixed) & (data.first_ms < cutoff) & (data.first_ms + window_ms <= cutoff)
        if not eligible.any():
            continue
        arm = data.arm[eligible]
        split = int((arm == 0).sum())
        if split < 2 or len(arm) - split < 2:
            continue
        sub = _Amounts(
            amounts.exposures[eligible],
            amounts.value[eligible],
            amounts.outcomes[eligible],
            amounts.top[eligible],
        )
        x = None
        if x_all is not None:
            x = x_all[eligible]
            fill = np.nanmean(x) if np.isfinite(x).any() else 0.0
            x = np.where(np.isfinite(x), x, fill)
        for i, metric in enumerate(cfg.metrics):
            per_metric[i].append(_judge_look(metric, sub, split, x, cfg))
        looks.append({"time": stamp(datetime.fromtimestamp(cutoff / 1000, timezone.utc))})
    result["pending_units"] = int(((~mixed) & ~eligible).sum()) if total else 0
    result["arms"] = {
        side: {
            "version": version,
            "units": counts[index],
            "analysed": int((eligible & (data.arm == index)).sum()) if total else 0,
            "exposures": int(amounts.exposures[(data.arm == index) & ~mixed].sum()),
            "outcomes": int(amounts.outcomes[(data.arm == index) & ~mixed].sum()),
        }
        for index, (side, version) in enumerate((("control", control), ("treatment", treatment)))
    }
    metrics: list[dict[str, Any]] = []
    for metric, series in zip(cfg.metrics, per_metric, strict=True):
        planned = metrics[0].get("required_units") if metrics else None
        metrics.append(_metric_result(metric, series, looks, cfg, weights, planned))
    result["metrics"] = metrics
    result["looks"] = [{**look, **_look_row(per_metric[0][i])} for i, look in enumerate(looks)]
    result["decision"], result["reason"] = _decide(result, cfg)
    return result


def _by_bucket(bucket: Any, looks: int) -> tuple[Any, list[int]]:
    """The order that groups rows by look bucket (0..looks-1), and where each bucket starts
    in it (one more bound at the end)."""
    import numpy as np

    small = bucket.astype("int16") if looks < 2**15 else bucket  # int16 sorts by radix
    order = np.argsort(small, kind="stable")
    bounds = np.searchsorted(small[order], np.arange(looks + 1)).tolist()
    return order, bounds


def _look_row(one: _MetricLook) -> dict[str, Any]:
    return {
        "units": one.units[0] + one.units[1],
        "delta": _num(one.est.delta),
        "ci": [_num(one.fixed[0]), _num(one.fixed[1])],
        "sequence": [_num(one.seq[0]), _num(one.seq[1])],
        "p": _num(one.fixed[2]),
        "p_sequential": _num(one.seq[2]),
    }


def _metric_result(
    metric: Metric,
    series: list[_MetricLook],
    looks: list[dict[str, Any]],
    cfg: Config,
    weights: dict[str, float],
    planned: int | None = None,
) -> dict[str, Any]:
    """One metric's numbers at the last look and its verdict. ``mde`` is in the primary
    metric's units: its sample size (``planned``) is the fixed horizon of every metric."""
    import numpy as np

    out: dict[str, Any] = {
        "name": metric.name,
        "role": metric.role,
        "metric": metric.kind,
        "bound": metric.bound,
        "bound_text": metric.bound_text,
        "lower_is_better": metric.lower_is_better,
    }
    if metric.kind == "ratio":
        out["ratio"] = f"{metric.numerator} / {metric.denominator}"
    if not series:
        out["verdict"] = "inconclusive"
        out["note"] = "too few units with closed outcome windows on each arm (at least 2)"
        return out
    last = series[-1]
    est = last.est
    # The sequence at the latest look: valid whenever one stops looking. It is not intersected
    # with earlier looks' sequences, since what is estimated moves while outcomes come in
    # (without an outcome window a unit's value grows until the end).
    seq_low, seq_high, seq_p = last.seq
    control, treatment = float(est.control), float(est.treatment)
    delta = float(est.delta)
    out.update(
        control=_num(control),
        treatment=_num(treatment),
        delta=_num(delta),
        relative=_num(delta / control) if control else None,
        se=_num(est.se),
        units={"control": last.units[0], "treatment": last.units[1]},
        ci=[_num(last.fixed[0]), _num(last.fixed[1])],
        p=_num(last.fixed[2]),
        sequence=[_num(seq_low), _num(seq_high)],
        p_sequential=_num(seq_p),
    )
    if last.caps is not None:
        low_cap, high_cap = last.caps
        out["winsorized"] = {"low": low_cap, "high": high_cap, "quantile": metric.winsorize}
    if est.theta is not None:
        out["cuped_theta"] = _num(est.theta)
        out["variance_reduction"] = last.variance_reduction
    shares = (
        weights["control"] / (weights["control"] + weights["treatment"]),
        weights["treatment"] / (weights["control"] + weights["treatment"]),
    )
    n = last.units[0] + last.units[1]
    if cfg.mde is not None and metric.role == "primary":
        needed = abstats.required_units(
            float(est.var_control), float(est.var_treatment), shares, cfg.mde, cfg.alpha, cfg.power
        )
        out["mde"] = cfg.mde
        out["required_units"] = needed
        out["power"] = _num(abstats.power_at(float(est.se), cfg.mde, cfg.alpha))
    if cfg.mode == "sequential":
        low, high = seq_low, seq_high
    else:
        low, high = last.fixed[0], last.fixed[1]
    low, high = _flip(metric, low, high)
    if not (np.isfinite(low) and np.isfinite(high)):
        out["verdict"] = "inconclusive"
        out["note"] = "no spread in the outcomes yet: the interval is undefined"
        return out
    out["improvement"] = [low, high]
    out["verdict"] = abstats.verdict(low, high, metric.bound)
    needed_units = int(out.get("required_units") or planned or 0)
    if cfg.mode == "fixed" and n < needed_units:
        out["would_be"] = out["verdict"]
        out["verdict"] = "inconclusive"
        out["note"] = (
            f"{n} of the {needed_units} units a fixed-horizon test needs for mde "
            f"{cfg.mde:g} at power {cfg.power:g}: it decides once, at that size"
        )
    return out


def _decide(result: dict[str, Any], cfg: Config) -> tuple[str, str]:
    srm = result["srm"]
    units = srm["units"]
    if units["control"] == 0 or units["treatment"] == 0:
        empty = "control" if units["control"] == 0 else "treatment"
        return "invalid", f"no units on the {empty} arm in the window"
    if srm["mismatch"]:
        return "invalid", (
            f"sample ratio mismatch: {srm['observed_share']:.4f} of units on the treatment, "
            f"{srm['expected_share']:.4f} expected (chi-square {srm['chi2']:.1f}, p "
            f"{srm['p']:.2g} < {cfg.srm_alpha:g}): the assignment or the logging is broken, so "
            "no metric can be trusted"
        )
    verdicts = {m["name"]: m["verdict"] for m in result["metrics"]}
    failed = [name for name, v in verdicts.items() if v == "fail"]
    if failed:
        return "fail", "past its bound: " + ", ".join(failed)
    open_ = [name for name, v in verdicts.items() if v != "pass"]
    if open_:
        return "inconclusive", "not decided yet: " + ", ".join(open_)
    return "pass", "every metric clears its bound"


def _duration_text(value: timedelta | None) -> str | None:
    if value is None:
        return None
    seconds = int(value.total_seconds())
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _since_of(cfg: Config, record: Mapping[str, Any] | None, until: datetime) -> datetime:
    if cfg.since is not None:
        return cfg.since
    if cfg.window is not None:
        return until - cfg.window
    if record is not None and record.get("updated"):
        return parse_time(str(record["updated"]))
    raise UsageError(
        f"ab gate {cfg.name!r} has no window and the model has no deployment record to start from",
        "give window: 14d or since: 2026-11-01",
    )


def _weights_of(
    store: ObjectStore,
    model: str,
    record: Mapping[str, Any] | None,
    control: int,
    treatment: int,
    name: str,
) -> dict[str, float]:
    """The arms' weights from the deployment record, each arm (alias or version) resolved to
    its version now; UsageError unless both have traffic."""
    weights = arm_weights(store, model, record, control, treatment)
    if weights["control"] <= 0 or weights["treatment"] <= 0:
        raise UsageError(
            f"ab gate {name!r}: the deployment record of {model} does not split traffic between "
            f"versions {control} and {treatment}",
            "give weights: {control: W, treatment: W} in the gate",
        )
    return weights


def arm_weights(
    store: ObjectStore, model: str, record: Mapping[str, Any] | None, control: int, treatment: int
) -> dict[str, float]:
    """The deployment record's weight of each version (0 for one it gives no traffic)."""
    weights = {"control": 0.0, "treatment": 0.0}
    for arm in arms_of(record) if record else []:
        version = arm.version
        if version is None:
            found = registry.get_alias(store, model, arm.label)
            version = int(found[0]["version"]) if found else None
        if version == control:
            weights["control"] += arm.weight
        elif version == treatment:
            weights["treatment"] += arm.weight
    return weights


# -- gates, the command and the rollout --------------------------------------------------------


def _arm_version(store: ObjectStore, model: str, label: str) -> int:
    if label.isdigit():
        return int(label)
    return int(registry.resolve(store, candidate_ref(model, label))["version"])


def arms_for(
    store: ObjectStore, spec: dict[str, Any], cfg: Config, candidate: str | None = None
) -> tuple[tuple[int, str], tuple[int, str]]:
    """((control version, label), (treatment version, label)): the gate's control/treatment,
    else the champion alias and the candidate."""
    model = str(spec["model"])
    if cfg.treatment is not None:
        treatment = (_arm_version(store, model, cfg.treatment), cfg.treatment)
    else:
        ref = candidate_ref(model, candidate or spec.get("candidate"))
        treatment = (int(registry.resolve(store, ref)["version"]), "candidate")
    label = cfg.control or champion_alias(spec)
    control = (_arm_version(store, model, label), label)
    if control[0] == treatment[0]:
        raise UsageError(
            f"ab gate {cfg.name!r}: control and treatment are both version {control[0]}",
            "an A/B test compares two versions",
        )
    return control, treatment


def gate_result(result: dict[str, Any]) -> GateResult:
    """An analysis as a `release check` gate: the primary metric's numbers and the decision."""
    primary = result["metrics"][0]
    interval = primary.get("sequence") if result["mode"] == "sequential" else primary.get("ci")
    note = result["reason"]
    if primary.get("relative") is not None:
        note = (
            f"{primary['name']}: {primary['control']:.4g} -> {primary['treatment']:.4g} "
            f"({primary['relative']:+.2%}); {note}"
        )
    details = [
        {"check": "srm", **result["srm"]},
        *({"check": "metric", **{k: v for k, v in m.items()}} for m in result["metrics"]),
    ]
    return GateResult(
        result["gate"],
        "ab",
        result["decision"],
        metric=primary["name"],
        value=primary.get("delta"),
        bound=primary["bound_text"],
        ci=list(interval) if interval and None not in interval else None,
        note=note,
        details=details,
    )


def judge_gate(
    store: ObjectStore,
    spec: dict[str, Any],
    gate: dict[str, Any],
    *,
    candidate: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """One ab gate of a Release spec, analysed now."""
    cfg = config_of(gate)
    (control, c_label), (treatment, t_label) = arms_for(store, spec, cfg, candidate)
    return analyze(
        store,
        str(spec["model"]),
        cfg,
        control=control,
        treatment=treatment,
        until=now or utc_now(),
        control_label=c_label,
        treatment_label=t_label,
    )


def run_ab(
    store: ObjectStore,
    spec: dict[str, Any],
    *,
    spec_path: str,
    candidate: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Every ab gate of ``spec``, analysed and recorded as one ``ab`` audit event; returns the
    event (decision: the worst of the gates')."""
    gates = [g for g in spec["gates"] if g.get("type") == "ab"]
    if not gates:
        raise UsageError(
            f"release {spec['name']} has no gate of type ab",
            "add one: gates: [{type: ab, primary: {metric: proportion}}]",
        )
    moment = now or utc_now()
    analyses = [judge_gate(store, spec, g, candidate=candidate, now=moment) for g in gates]
    order = {"invalid": 0, "fail": 1, "inconclusive": 2, "pass": 3}
    decision = min((a["decision"] for a in analyses), key=order.__getitem__)
    passed = all(
        a["decision"] == "pass"
        or (a["decision"] == "inconclusive" and g.get("on_inconclusive") == "pass")
        for a, g in zip(analyses, gates, strict=True)
    )
    return record_event(
        store,
        "ab",
        model=spec["model"],
        version=analyses[0]["treatment"]["version"],
        release=spec["name"],
        spec=spec_path,
        at=stamp(moment),
        decision=decision,
        passed=passed,
        gates=analyses,
    )


def rollout_check(name: str, spec: dict[str, Any], window: Window, look: Look) -> CheckResult:
    """``type: ab`` in a rollout's analysis: the step's window, candidate vs champion. A
    mismatch in the sample ratio fails (rolls back): the step is not doing what it says. The
    sequential test is valid at every look, so it fails at the rollout's share of alpha
    without spending it over the looks."""
    store, model = window.store, window.model
    if store is None or model is None:
        raise UsageError("the rollout's analysis window carries no store: cannot judge type ab")
    cfg = config_of({"name": name, **spec})
    cfg.alpha = min(cfg.alpha, look.alpha / max(1, look.checks))
    cfg.mode = "sequential"
    control, treatment = window.champion.version, window.candidate.version
    if cfg.weights is None:
        found = read_deployment(store, str(model), cfg.deployment)
        weights = arm_weights(store, str(model), found[0] if found else None, control, treatment)
        if min(weights.values()) <= 0:
            # At 100% (or 0%) there is nothing to compare: the earlier steps judged it.
            return CheckResult(
                name, "ab", "skipped", note="this step gives one arm no traffic: no A/B test"
            )
        cfg.weights = weights
    result = analyze(
        store,
        str(model),
        cfg,
        control=control,
        treatment=treatment,
        since=window.since,
        until=window.until,
    )
    primary = result["metrics"][0]
    verdict = result["decision"]
    if verdict == "invalid":  # a mismatch fails; an arm without units yet holds the step
        verdict = "fail" if result["srm"]["mismatch"] else "inconclusive"
    check = CheckResult(
        name,
        "ab",
        verdict,
        value=primary.get("delta"),
        bound=primary["bound_text"],
        ci=primary.get("sequence"),
        candidate={
            "units": result["arms"]["treatment"]["analysed"],
            primary["name"]: primary.get("treatment"),
        },
        champion={
            "units": result["arms"]["control"]["analysed"],
            primary["name"]: primary.get("control"),
        },
        note=result["reason"],
        alpha=cfg.alpha,
    )
    if verdict == "inconclusive":
        check.needed = "more units: " + result["reason"]
    return check


register_check("ab", rollout_check)
