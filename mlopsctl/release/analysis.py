"""Canary analysis: what each arm of a rollout did over a window, read from the store's serving
logs, and the checks that judge it (pass, fail or inconclusive), in the manner of Argo
Rollouts' and Flagger's analysis runs: a metric query per arm, a verdict per check, no data is
inconclusive (the rollout holds, it never passes on silence), and a failure aborts.

What is read (the layout README "Serving" documents; `mlopsctl serve` writes it):
  * ``logs/predictions/<model>/``: one row per predicted row; the arm's answered requests are
    its rows with ``row == 0`` (one request id each in logs without a row index), their
    ``latency_ms`` the request's latency, ``score`` (or ``prediction``) its output;
  * ``logs/errors/<model>/``: one row per request answered with an error, with its ``status``;
  * ``logs/feedback/<model>/``: outcomes, joined on ``request_id`` (and ``row``).
An arm is a model version (``version`` column), filtered with the same function monitoring
uses for its ``current.version`` (mlopsctl/monitor/data.py ``filter_rows``).

The checks (``analysis:`` entries of a Release spec's ``promote``), each against a bound:
  * ``error_rate``: the 5xx share of the candidate's requests, at most ``max`` and/or at most
    ``max_increase`` above the champion's;
  * ``latency``: the candidate's request latency percentile (default p99) at most ``max_ms``
    and/or at most ``max_ratio`` times the champion's;
  * ``prediction_drift``: the PSI of the candidate's outputs against the champion's on the
    same window (equal-width bins over both arms' range), at most ``max_psi``;
  * ``outcome``: the candidate's accuracy (classification) or mean absolute error (regression)
    on rows whose outcome came back, at most ``max_regression`` worse than the champion's;
    skipped while no outcome came back (``require: true`` holds the rollout instead).

Many looks, one error level. A rollout judges its checks again at every call (every look),
and each look could wrongly fail an equal candidate. A check fails only when its evidence
clears ``alpha_k = alpha / C * 6 / (pi^2 k^2)`` at look ``k`` (C checks): since the sum of
``6 / (pi^2 k^2)`` over every k is 1, the chance that an equal candidate is ever rolled back,
over all checks and any number of looks, is at most ``alpha`` (a union bound: Bonferroni over
an unbounded series of looks, an alpha-spending sequence). Each failure test is exact or
conservative at its own level: Clopper-Pearson bounds for shares, order-statistic (binomial)
bounds for percentiles, the chi-square law of PSI under equal distributions for drift. Passing
uses ordinary one-sided intervals at ``level`` (default 0.95): it decides when to go on, not
when to roll back.

New check types plug in with ``register_check`` (A/B analysis, issue 16: ``type: ab``); the
rollout calls ``run_checks`` once per look and knows nothing of what each check computes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlopsctl.errors import UsageError
from mlopsctl.logformat import ERRORS, FEEDBACK, PREDICTIONS
from mlopsctl.monitor.data import NoDataFiles, filter_rows, filter_window, iter_files
from mlopsctl.monitor.stats import psi
from mlopsctl.timeutil import stamp

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from mlopsctl.store.base import ObjectStore

DEFAULT_ALPHA = 0.05
DEFAULT_LEVEL = 0.95
DEFAULT_ANALYSIS: tuple[dict[str, Any], ...] = (
    {"type": "error_rate", "max_increase": 0.01},
    {"type": "latency", "percentile": 99, "max_ratio": 1.5},
    {"type": "prediction_drift", "max_psi": 0.2},
)
_PSI_BINS = 10
_MIN_BIN = 10  # rows of both arms together, at least, in each bin the PSI is taken over
_PRED_COLUMNS = ("ts", "version", "arm", "row", "request_id", "latency_ms", "prediction", "score")
_ERROR_COLUMNS = ("ts", "version", "arm", "status")


# -- what an arm did ------------------------------------------------------------------------


@dataclass
class ArmData:
    """One arm (model version) over a window."""

    version: int
    requests: int = 0  # answered (200) requests
    errors: int = 0  # answered with a 5xx
    client_errors: int = 0  # answered with a 4xx (counted in the requests seen, not as errors)
    latency_ms: Any = None  # per answered request
    outputs: Any = None  # per predicted row: score (or prediction); text for class labels
    losses: Any = None  # per row whose outcome came back: 0/1 miss, or |error|
    labels: list[str] = field(default_factory=list)  # arm labels seen

    def __post_init__(self) -> None:
        import numpy as np

        if self.latency_ms is None:
            self.latency_ms = np.empty(0)
        if self.outputs is None:
            self.outputs = np.empty(0)

    @property
    def total(self) -> int:
        """Every request the arm answered: predicted, refused (4xx) or failed (5xx)."""
        return self.requests + self.errors + self.client_errors

    def summary(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "requests": self.total,
            "errors": self.errors,
            "labelled": 0 if self.losses is None else len(self.losses),
        }


@dataclass
class Window:
    """Candidate and champion over [since, until). The champion's rows start at ``since`` while
    it serves; at a step that gives it no traffic, earlier (its rows of the rollout's earlier
    steps, or of the hour before a rollout that began at 100%), and the note says so."""

    since: datetime
    until: datetime
    candidate: ArmData
    champion: ArmData
    classification: bool = True
    note: str | None = None
    # Where the window was read from, for checks that read more (type ab: per unit).
    store: ObjectStore | None = None
    model: str | None = None


def read_window(
    store: ObjectStore,
    model: str,
    candidate: int,
    champion: int,
    since: datetime,
    until: datetime,
    *,
    classification: bool = True,
    champion_since: datetime | None = None,
    feedback: bool = True,
) -> Window:
    """Both arms' requests, errors, latencies, outputs and outcomes in the window."""
    import numpy as np

    arms = {candidate: ArmData(candidate), champion: ArmData(champion)}
    starts = {candidate: since, champion: champion_since or since}
    earliest = min(starts.values())
    keys: dict[int, list[tuple[str, int]]] = {v: [] for v in arms}
    latency: dict[int, list[Any]] = {v: [] for v in arms}
    outputs: dict[int, list[Any]] = {v: [] for v in arms}
    for table in _tables(store, f"{PREDICTIONS}/{model}/", _PRED_COLUMNS, earliest, until):
        for version, arm in arms.items():
            part = _rows_of(table, version, starts[version], until)
            if part.num_rows == 0:
                continue
            _arm_labels(arm, part)
            n = part.num_rows
            names = part.column_names
            ids: list[Any] = (
                part.column("request_id").to_pylist() if "request_id" in names else [None] * n
            )
            rows: list[Any] = part.column("row").to_pylist() if "row" in names else [None] * n
            first = _first_rows(part, ids)
            arm.requests += int(first.sum())
            if "latency_ms" in part.column_names:
                values = part.column("latency_ms").to_numpy(zero_copy_only=False)
                latency[version].append(np.asarray(values, dtype="float64")[first])
            outputs[version].append(_outputs(part, classification))
            keys[version].extend(zip(ids, rows, strict=True))
    for version, arm in arms.items():
        arm.latency_ms = np.concatenate(latency[version]) if latency[version] else np.empty(0)
        arm.outputs = np.concatenate(outputs[version]) if outputs[version] else np.empty(0)
    for table in _tables(store, f"{ERRORS}/{model}/", _ERROR_COLUMNS, earliest, until):
        for version, arm in arms.items():
            part = _rows_of(table, version, starts[version], until)
            if part.num_rows == 0 or "status" not in part.column_names:
                continue
            _arm_labels(arm, part)
            status = np.asarray(part.column("status").to_numpy(zero_copy_only=False))
            arm.errors += int((status >= 500).sum())
            arm.client_errors += int(((status >= 400) & (status < 500)).sum())
    if feedback:
        truth = _feedback(store, model, earliest)
        if truth:
            for version, arm in arms.items():
                arm.losses = _losses(keys[version], arm.outputs, truth, classification)
    note = None
    if champion_since is not None and champion_since < since:
        note = (
            f"the champion gets no traffic at this step: its rows since {stamp(champion_since)} "
            "stand in"
        )
    return Window(
        since,
        until,
        arms[candidate],
        arms[champion],
        classification=classification,
        note=note,
        store=store,
        model=model,
    )


def _tables(
    store: ObjectStore, prefix: str, columns: tuple[str, ...], since: datetime, until: datetime
) -> list[pa.Table]:
    import pyarrow.parquet as pq

    tables = []
    try:
        for path in iter_files(f"store:{prefix}", root=Path.cwd(), store=store, since=since):
            parquet = pq.ParquetFile(path)
            present = [c for c in columns if c in parquet.schema_arrow.names]
            if "ts" not in present or "version" not in present:
                continue
            table = parquet.read(columns=present)
            table = filter_window(table, "ts", since, until)
            if table.num_rows:
                tables.append(table)
    except NoDataFiles:
        pass
    return tables


def _rows_of(table: pa.Table, version: int, since: datetime, until: datetime) -> pa.Table:
    return filter_window(filter_rows(table, version=version), "ts", since, until)


def _arm_labels(arm: ArmData, table: pa.Table) -> None:
    if "arm" in table.column_names:
        for label in table.column("arm").unique().to_pylist():
            if label is not None and str(label) not in arm.labels:
                arm.labels.append(str(label))


def _first_rows(table: pa.Table, ids: list[Any]) -> np.ndarray:
    """A mask of each request's first row: ``row == 0``, or the first row of each request id
    in logs without a row index."""
    import numpy as np

    if "row" in table.column_names:
        rows = table.column("row").to_numpy(zero_copy_only=False)
        return np.asarray(rows == 0)
    seen: set[Any] = set()
    mask = np.zeros(len(ids), dtype=bool)
    for i, request in enumerate(ids):
        if request not in seen:
            seen.add(request)
            mask[i] = True
    return mask


def _outputs(table: pa.Table, classification: bool) -> np.ndarray:
    """What prediction drift compares: the score (a binary classifier's positive-class
    probability) when logged, else the label as text (classification) or the value."""
    import numpy as np

    names = table.column_names
    if "score" in names and table.column("score").null_count < table.num_rows:
        return np.asarray(table.column("score").to_numpy(zero_copy_only=False), dtype="float64")
    if "prediction" not in names:
        return np.full(table.num_rows, math.nan)
    values = table.column("prediction").to_pylist()
    if classification:
        return np.asarray([_label(v) for v in values], dtype=object)
    return np.asarray([math.nan if v is None else float(v) for v in values], dtype="float64")


def _label(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _feedback(store: ObjectStore, model: str, since: datetime) -> dict[tuple[str, Any], Any]:
    """Outcomes by (request id, row) and, for outcomes given per request, (request id, None)."""
    import pyarrow.parquet as pq

    truth: dict[tuple[str, Any], Any] = {}
    try:
        for path in iter_files(
            f"store:{FEEDBACK}/{model}/", root=Path.cwd(), store=store, since=since
        ):
            table = pq.read_table(path)
            if "request_id" not in table.column_names or "actual" not in table.column_names:
                continue
            ids = table.column("request_id").to_pylist()
            actual = table.column("actual").to_pylist()
            rows = (
                table.column("row").to_pylist()
                if "row" in table.column_names
                else [None] * len(ids)
            )
            for request, row, value in zip(ids, rows, actual, strict=True):
                if value is not None:
                    truth[(str(request), row)] = value
    except NoDataFiles:
        pass
    return truth


def _losses(
    keys: list[tuple[Any, Any]],
    outputs: np.ndarray,
    truth: dict[tuple[str, Any], Any],
    classification: bool,
) -> np.ndarray:
    import numpy as np

    losses = []
    for (request, row), output in zip(keys, outputs, strict=False):
        actual = truth.get((str(request), row))
        if actual is None and row in (0, None):
            actual = truth.get((str(request), None))
        if actual is None:
            continue
        if classification:
            losses.append(0.0 if _label(output) == _label(actual) else 1.0)
        else:
            try:
                losses.append(abs(float(output) - float(actual)))
            except (TypeError, ValueError):
                continue
    return np.asarray(losses, dtype="float64")


# -- the checks -----------------------------------------------------------------------------


@dataclass
class Look:
    """Look ``number`` (1, 2, ...) of a rollout whose checks share ``alpha`` over every look."""

    number: int
    checks: int
    alpha: float = DEFAULT_ALPHA

    @property
    def fail_alpha(self) -> float:
        return spent_alpha(self.alpha, self.checks, self.number)


def spent_alpha(alpha: float, checks: int, look: int) -> float:
    """The level one check may fail at on look ``look`` (1-based): alpha / C * 6 / (pi^2 k^2)."""
    return alpha / max(1, checks) * 6.0 / (math.pi**2 * max(1, look) ** 2)


@dataclass
class CheckResult:
    name: str
    type: str
    verdict: str  # pass, fail, inconclusive or skipped
    value: float | None = None
    bound: str | None = None
    ci: list[float] | None = None
    candidate: dict[str, Any] | None = None
    champion: dict[str, Any] | None = None
    note: str | None = None
    needed: str | None = None  # what would let an inconclusive check decide
    alpha: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


CheckFn = Callable[[str, dict[str, Any], Window, Look], CheckResult]
CHECKS: dict[str, CheckFn] = {}


def register_check(kind: str, check: CheckFn) -> None:
    """Add (or replace) the check of ``type: kind``: ``check(name, spec, window, look)``."""
    CHECKS[kind] = check


def analysis_of(promote: dict[str, Any]) -> list[dict[str, Any]]:
    """The spec's ``analysis:`` entries, or the defaults."""
    entries = promote.get("analysis")
    return [dict(e) for e in (entries if entries else DEFAULT_ANALYSIS)]


def run_checks(analysis: list[dict[str, Any]], window: Window, look: Look) -> list[CheckResult]:
    results = []
    for entry in analysis:
        kind = str(entry["type"])
        check = CHECKS.get(kind)
        if check is None:
            raise UsageError(
                f"unknown analysis check {kind!r}", f"use one of: {', '.join(sorted(CHECKS))}"
            )
        results.append(check(str(entry.get("name") or kind), entry, window, look))
    return results


# Shares ---------------------------------------------------------------------------------------


def clopper_pearson(k: int, n: int, alpha: float) -> tuple[float, float]:
    """One-sided exact bounds at level 1 - alpha each: (lower, upper) for k successes of n."""
    from scipy.stats import beta

    if n <= 0:
        return 0.0, 1.0
    lower = 0.0 if k <= 0 else float(beta.ppf(alpha, k, n - k + 1))
    upper = 1.0 if k >= n else float(beta.ppf(1 - alpha, k + 1, n - k))
    return lower, upper


def wilson(k: int, n: int, alpha: float) -> tuple[float, float]:
    """Wilson score bounds, one-sided at level 1 - alpha each."""
    from scipy.stats import norm

    if n <= 0:
        return 0.0, 1.0
    z = float(norm.ppf(1 - alpha))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_upper(k1: int, n1: int, k0: int, n0: int, alpha: float) -> float:
    """Upper bound of p1 - p0 (Newcombe's hybrid score interval, one-sided 1 - alpha)."""
    p1, p0 = k1 / n1, k0 / n0
    _, u1 = wilson(k1, n1, alpha)
    l0, _ = wilson(k0, n0, alpha)
    return (p1 - p0) + math.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2)


def _level(spec: dict[str, Any]) -> float:
    return float(spec.get("level", DEFAULT_LEVEL))


def error_rate_check(name: str, spec: dict[str, Any], window: Window, look: Look) -> CheckResult:
    cand, champ = window.candidate, window.champion
    n1, k1 = cand.total, cand.errors
    n0, k0 = champ.total, champ.errors
    minimum = int(spec.get("min_requests", 50))
    pass_alpha = 1 - _level(spec)
    limit, increase = spec.get("max"), spec.get("max_increase")
    if limit is None and increase is None:
        increase = 0.01
    bounds = []
    if limit is not None:
        bounds.append(f"<= {float(limit):g}")
    if increase is not None:
        bounds.append(f"<= champion + {float(increase):g}")
    result = CheckResult(
        name,
        "error_rate",
        "inconclusive",
        value=k1 / n1 if n1 else None,
        bound=", ".join(bounds),
        candidate={"requests": n1, "errors": k1, "rate": k1 / n1 if n1 else None},
        champion={"requests": n0, "errors": k0, "rate": k0 / n0 if n0 else None},
        alpha=look.fail_alpha,
    )
    if n1 == 0:
        result.needed = f"candidate requests: 0 of {minimum}"
        result.note = "no candidate requests in the window yet"
        return result
    fails, passes, notes = [], [], []
    if limit is not None:
        low, _ = clopper_pearson(k1, n1, look.fail_alpha)
        _, high = wilson(k1, n1, pass_alpha)
        result.ci = [low, high]
        fails.append(low > float(limit))
        passes.append(high <= float(limit))
    if increase is not None:
        if n0 == 0:
            notes.append("no champion requests to compare with")
            passes.append(False)
        else:
            # Fails only when even the candidate's lowest plausible rate exceeds the champion's
            # highest plus the allowance (each bound at alpha_k / 2: exact, hence valid).
            low1, _ = clopper_pearson(k1, n1, look.fail_alpha / 2)
            _, high0 = clopper_pearson(k0, n0, look.fail_alpha / 2)
            fails.append(low1 > high0 + float(increase))
            upper = newcombe_upper(k1, n1, k0, n0, pass_alpha)
            passes.append(upper <= float(increase))
            result.ci = [k1 / n1 - k0 / n0, upper]
            notes.append(f"difference {k1 / n1 - k0 / n0:+.4f}, upper bound {upper:.4f}")
    if any(fails):
        result.verdict = "fail"
    elif n1 < minimum:
        result.needed = f"candidate requests: {n1} of {minimum}"
    elif all(passes):
        result.verdict = "pass"
    else:
        result.needed = "more requests: the interval still reaches past the bound"
    result.note = "; ".join(notes) or None
    return result


# Percentiles ----------------------------------------------------------------------------------


def quantile_bounds(
    values: np.ndarray, q: float, alpha_low: float, alpha_high: float
) -> tuple[float, float]:
    """Distribution-free one-sided bounds of the q-quantile from order statistics: the lower
    one is below the true quantile with probability >= 1 - alpha_low, the upper above it with
    probability >= 1 - alpha_high; -inf / inf when there are too few values to say.

    The k-th smallest of n values lies above the quantile with probability P(B <= k - 1) and
    below it with probability P(B >= k), B ~ Binomial(n, q): the lower bound is the largest k
    with P(B <= k - 1) <= alpha_low, the upper the smallest with P(B >= k) <= alpha_high."""
    import numpy as np
    from scipy.stats import binom

    n = len(values)
    if n == 0:
        return -math.inf, math.inf
    low = int(binom.ppf(alpha_low, n, q))  # the smallest m with P(B <= m) >= alpha_low
    while low >= 0 and binom.cdf(low, n, q) > alpha_low:
        low -= 1
    high = int(binom.ppf(1.0 - alpha_high, n, q))  # the smallest m with P(B <= m) >= 1 - a
    while high < n and binom.sf(high, n, q) > alpha_high:
        high += 1
    wanted = [i for i in (low, high) if 0 <= i < n]
    ordered = np.partition(np.asarray(values, dtype="float64"), wanted) if wanted else values
    lower = float(ordered[low]) if 0 <= low < n else -math.inf
    upper = float(ordered[high]) if 0 <= high < n else math.inf
    return lower, upper


def latency_check(name: str, spec: dict[str, Any], window: Window, look: Look) -> CheckResult:
    import numpy as np

    percentile = float(spec.get("percentile", 99))
    q = percentile / 100.0
    cand = np.asarray(window.candidate.latency_ms, dtype="float64")
    champ = np.asarray(window.champion.latency_ms, dtype="float64")
    minimum = int(spec.get("min_requests", 50))
    max_ms, ratio = spec.get("max_ms"), spec.get("max_ratio")
    if max_ms is None and ratio is None:
        ratio = 1.5
    pass_alpha = 1 - _level(spec)
    bounds = []
    if max_ms is not None:
        bounds.append(f"<= {float(max_ms):g} ms")
    if ratio is not None:
        bounds.append(f"<= {float(ratio):g} x champion")
    value = float(np.percentile(cand, percentile)) if len(cand) else None
    champ_value = float(np.percentile(champ, percentile)) if len(champ) else None
    result = CheckResult(
        name,
        "latency",
        "inconclusive",
        value=value,
        bound=", ".join(bounds),
        candidate={"requests": len(cand), f"p{percentile:g}_ms": value},
        champion={"requests": len(champ), f"p{percentile:g}_ms": champ_value},
        alpha=look.fail_alpha,
    )
    if len(cand) == 0:
        result.needed = f"candidate requests: 0 of {minimum}"
        result.note = "no candidate requests in the window yet"
        return result
    fails, passes = [], []
    low, high = quantile_bounds(cand, q, look.fail_alpha / 2, pass_alpha)
    result.ci = [low, high]
    if max_ms is not None:
        fails.append(low > float(max_ms))
        passes.append(high <= float(max_ms))
    if ratio is not None:
        if len(champ) == 0:
            passes.append(False)
            result.note = "no champion requests to compare with"
        else:
            _, champ_high = quantile_bounds(champ, q, pass_alpha, look.fail_alpha / 2)
            fails.append(low > float(ratio) * champ_high)
            passes.append(champ_value is not None and high <= float(ratio) * champ_value)
    if any(fails):
        result.verdict = "fail"
    elif len(cand) < minimum:
        result.needed = f"candidate requests: {len(cand)} of {minimum}"
    elif all(passes):
        result.verdict = "pass"
    elif math.isinf(high):
        need = math.ceil(math.log(pass_alpha) / math.log(q)) if 0 < q < 1 else minimum
        result.needed = f"about {need} candidate requests to bound p{percentile:g} from above"
    else:
        result.needed = "more requests: the interval still reaches past the bound"
    return result


# Prediction drift -----------------------------------------------------------------------------


def prediction_psi(
    candidate: np.ndarray, champion: np.ndarray, bins: int = _PSI_BINS
) -> tuple[float, int]:
    """PSI of the candidate's outputs against the champion's, and the number of bins: class
    labels by label; numeric outputs in ``bins`` equal-width bins between the 0.5th and 99.5th
    percentiles of both arms together (values beyond fall in the end bins). Not quantile bins:
    a classifier's scores pile up on a few values (rows that end in the same leaves), and a
    candidate that moves such a pile by a hair across a quantile edge would count as drift.
    Bins holding fewer than _MIN_BIN rows of both arms together are merged with their
    neighbours (labels: into one), so that empty bins neither inflate the PSI nor break the
    chi-square law the drift check's noise bound rests on."""
    import numpy as np

    if candidate.dtype == object or champion.dtype == object:
        labels = sorted({str(v) for v in champion} | {str(v) for v in candidate})
        index = {label: i for i, label in enumerate(labels)}
        base = np.bincount([index[str(v)] for v in champion], minlength=len(labels))
        current = np.bincount([index[str(v)] for v in candidate], minlength=len(labels))
        rare = (base + current) < _MIN_BIN
        if rare.sum() > 1:
            base = np.append(base[~rare], base[rare].sum())
            current = np.append(current[~rare], current[rare].sum())
    else:
        champion = champion[np.isfinite(champion)]
        candidate = candidate[np.isfinite(candidate)]
        if len(champion) == 0 or len(candidate) == 0:
            return 0.0, 1
        low, high = np.quantile(np.concatenate([champion, candidate]), [0.005, 0.995])
        if not high > low:
            return 0.0, 1
        edges = np.linspace(low, high, bins + 1)[1:-1]
        size = len(edges) + 1
        base = np.bincount(np.searchsorted(edges, champion, side="right"), minlength=size)
        current = np.bincount(np.searchsorted(edges, candidate, side="right"), minlength=size)
        base, current = _merge_sparse(base, current)
    return psi(base.astype("float64"), current.astype("float64")), len(base)


def _merge_sparse(base: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Adjacent bins merged, left to right, until each holds _MIN_BIN rows of both together
    (a short last run joins the bin before it)."""
    import numpy as np

    merged_base: list[int] = []
    merged_current: list[int] = []
    held_base = held_current = 0
    for b, c in zip(base.tolist(), current.tolist(), strict=True):
        held_base, held_current = held_base + b, held_current + c
        if held_base + held_current >= _MIN_BIN:
            merged_base.append(held_base)
            merged_current.append(held_current)
            held_base = held_current = 0
    if held_base + held_current:
        if merged_base:
            merged_base[-1] += held_base
            merged_current[-1] += held_current
        else:
            merged_base, merged_current = [held_base], [held_current]
    return np.asarray(merged_base), np.asarray(merged_current)


def drift_check(name: str, spec: dict[str, Any], window: Window, look: Look) -> CheckResult:
    from scipy.stats import chi2

    cand, champ = window.candidate.outputs, window.champion.outputs
    limit = float(spec.get("max_psi", 0.2))
    minimum = int(spec.get("min_rows", 100))
    result = CheckResult(
        name,
        "prediction_drift",
        "inconclusive",
        bound=f"psi <= {limit:g}",
        candidate={"rows": len(cand)},
        champion={"rows": len(champ)},
        alpha=look.fail_alpha,
    )
    if len(cand) < minimum or len(champ) < minimum:
        result.needed = f"rows: candidate {len(cand)}, champion {len(champ)}, each {minimum}"
        return result
    value, bins = prediction_psi(cand, champ, int(spec.get("bins", _PSI_BINS)))
    result.value = value
    # Equal distributions give PSI ~ chi2(bins - 1) / n_eff: fail only beyond that noise.
    n_eff = len(cand) * len(champ) / (len(cand) + len(champ))
    noise = float(chi2.ppf(1 - look.fail_alpha, max(1, bins - 1))) / n_eff
    result.note = f"{bins} bins; sampling noise at this size up to {noise:.3g}"
    if value > limit + noise:
        result.verdict = "fail"
    elif value <= limit:
        result.verdict = "pass"
    else:
        result.needed = "more rows: the PSI is above the bound but within sampling noise"
    return result


# Outcomes -------------------------------------------------------------------------------------


def outcome_check(name: str, spec: dict[str, Any], window: Window, look: Look) -> CheckResult:
    import numpy as np
    from scipy.stats import norm

    cand, champ = window.candidate.losses, window.champion.losses
    classification = window.classification
    metric = str(spec.get("metric") or ("accuracy" if classification else "mae"))
    if metric not in ("accuracy", "mae"):
        raise UsageError(f"outcome metric {metric!r} is not known", "use accuracy or mae")
    allowance = float(spec.get("max_regression", 0.0))
    minimum = int(spec.get("min_rows", 50))
    result = CheckResult(
        name,
        "outcome",
        "inconclusive",
        bound=f"{metric} at most {allowance:g} worse than the champion",
        alpha=look.fail_alpha,
    )
    n1 = 0 if cand is None else len(cand)
    n0 = 0 if champ is None else len(champ)
    if n1 == 0 or n0 == 0:
        if spec.get("require"):
            result.needed = "outcomes (feedback) for both arms"
        else:
            result.verdict = "skipped"
        result.note = "no outcomes came back yet for " + (
            "the candidate" if n1 == 0 else "the champion"
        )
        return result
    assert cand is not None and champ is not None
    loss1, loss0 = float(np.mean(cand)), float(np.mean(champ))

    def shown(loss: float) -> float:
        return 1 - loss if metric == "accuracy" else loss

    result.value = shown(loss1)
    result.candidate = {"rows": n1, metric: shown(loss1)}
    result.champion = {"rows": n0, metric: shown(loss0)}
    if metric == "accuracy":
        k1, k0 = round(float(cand.sum())), round(float(champ.sum()))
        low1, _ = clopper_pearson(k1, n1, look.fail_alpha / 2)
        _, high0 = clopper_pearson(k0, n0, look.fail_alpha / 2)
        failed = low1 > high0 + allowance
        upper = newcombe_upper(k1, n1, k0, n0, 1 - _level(spec))
    else:
        se = math.inf
        if n1 > 1 and n0 > 1:
            se = math.sqrt(float(np.var(cand, ddof=1)) / n1 + float(np.var(champ, ddof=1)) / n0)
        z_fail = float(norm.ppf(1 - look.fail_alpha))
        z_pass = float(norm.ppf(_level(spec)))
        failed = se < math.inf and (loss1 - loss0 - allowance) > z_fail * se
        upper = loss1 - loss0 + z_pass * se
    result.ci = [loss1 - loss0, upper]
    result.note = f"loss difference {loss1 - loss0:+.4g} (upper bound {upper:.4g})"
    if failed:
        result.verdict = "fail"
    elif n1 < minimum or n0 < minimum:
        result.needed = f"outcomes: candidate {n1}, champion {n0}, each {minimum}"
    elif upper <= allowance:
        result.verdict = "pass"
    else:
        result.needed = "more outcomes: the interval still reaches past the bound"
    return result


register_check("error_rate", error_rate_check)
register_check("latency", latency_check)
register_check("prediction_drift", drift_check)
register_check("outcome", outcome_check)
