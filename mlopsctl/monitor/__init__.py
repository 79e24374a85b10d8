"""Monitoring: compare current (serving) data with a model's training baseline, judge drift,
data quality, prediction drift and, once labels arrive, performance; report and record it.

    run_monitor(spec_path, current=..., report=..., record=True) -> result dict
    check_against_profile(profile, data, spec=...)                 -> result dict (no registry)
    profile_data(location, ...)                                    -> a baseline profile

The baseline is the profile saved with the model version at training time (model.json
``profile``: mlopsctl/models/profile.py), so the training data is never read again; or, with
``baseline: PATH``, a profile JSON written by ``mlopsctl monitor profile`` or a reference
dataset (read once; its raw values allow the exact tests, see checks.py); or, with
``baseline: previous_window``, the window just before the current one on the same source: the
current window is [now - window, now), the baseline [now - 2*window, now - window), read from
current.path by the same readers and used as a reference dataset. The current data are
streamed in batches (data.py); the statistics are in stats.py, the judging in checks.py, the
HTML report in report.py.

Prediction drift compares the model's outputs with ``profile.prediction`` (the model's own
outputs on its training rows: a binary classifier's positive-class probability, otherwise the
label or value). The outputs come from the data when it carries them (serving logs: columns
``prediction`` and ``score``), otherwise from the model, run batch by batch. Models trained
before that field existed have no prediction baseline: the check is skipped with a note.

Performance needs labels: ``ground_truth.path`` (joined on ``id_column``) or, without a path,
``target_column`` in the current data itself. The metric (accuracy / rmse by default, or any
metric evaluate records) is compared with ``min``/``max`` and with the version's recorded offline
metric (``max_drop``, in the metric's bad direction).

``failed`` (exit 4 in the CLI) is dataset drift, prediction drift, a performance failure, or a
failed data-quality test (unless ``quality.fail: false``).
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlopsctl.errors import IntegrityError, UsageError

if TYPE_CHECKING:
    from mlopsctl.config import Project
    from mlopsctl.store.base import ObjectStore

__all__ = ["PREVIOUS_WINDOW", "check_against_profile", "profile_data", "run_monitor"]

# The baseline that is the window just before the current one on the same source.
PREVIOUS_WINDOW = "previous_window"


def run_monitor(
    spec_path: Path,
    *,
    current: str | None = None,
    report: Path | None = None,
    record: bool = True,
    project: Project | None = None,
    store: ObjectStore | None = None,
    baseline: Path | str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Load + validate the Monitor spec, resolve the model, compute every check, write the
    report if asked (or spec report.path), record the ``drift`` event if record=True.

    ``current`` replaces the spec's current.path (a path relative to the working directory,
    ``store:PREFIX`` or ``s3://...``); ``baseline`` replaces the spec's baseline (a profile
    JSON, a dataset or ``previous_window``). ``now`` (default: the clock, UTC) ends the current
    window. Returns a JSON-able dict: monitor, model {name, version, ref}, rows, drift,
    drift_share, drifted_features, features, quality, prediction, performance, failed, current,
    window, baseline (a label), baseline_window, report, event (see the module docstring)."""
    from mlopsctl.config import load_project, open_project_store
    from mlopsctl.spec import load_spec

    spec = load_spec(Path(spec_path), kind="Monitor")
    project = project or load_project()
    if store is None:
        with open_project_store(project) as opened:
            return run_monitor(
                spec_path,
                current=current,
                report=report,
                record=record,
                project=project,
                store=opened,
                baseline=baseline,
                now=now,
            )
    started = time.perf_counter()
    result = _run(spec, project, store, current=current, baseline=baseline, now=now or _utc_now())
    result["seconds"] = round(time.perf_counter() - started, 3)
    target = report if report is not None else _spec_report(spec, project)
    if target is not None:
        from mlopsctl.monitor.report import write_html

        write_html(result, target)
        result["report"] = str(target)
    if record:
        from mlopsctl.events import record_event

        event = record_event(
            store,
            "drift",
            monitor=result["monitor"],
            model=result["model"]["name"],
            version=result["model"]["version"],
            verdict="failed" if result["failed"] else "passed",
            drift=result["drift"],
            drift_share=result["drift_share"],
            drifted_features=result["drifted_features"],
            rows=result["rows"],
            prediction_drift=(result["prediction"] or {}).get("drifted"),
            performance=_event_performance(result["performance"]),
            quality_failed=[q["test"] for q in result["quality"] if q["failed"]],
            current=result["current"],
            window=result.get("window"),
            baseline=result["baseline"],
            baseline_window=result.get("baseline_window"),
            report=result["report"],
        )
        result["event"] = event["id"]
    return result


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _spec_report(spec: dict[str, Any], project: Project) -> Path | None:
    path = (spec.get("report") or {}).get("path")
    if not path:
        return None
    target = Path(path)
    return target if target.is_absolute() else project.root / target


def _event_performance(performance: dict[str, Any] | None) -> dict[str, Any] | None:
    if not performance:
        return None
    keys = ("metric", "value", "baseline", "drop", "failed")
    return {k: performance.get(k) for k in keys}


def _run(
    spec: dict[str, Any],
    project: Project,
    store: ObjectStore,
    *,
    current: str | None,
    baseline: Path | str | None,
    now: datetime,
) -> dict[str, Any]:
    from mlopsctl.monitor import checks, data

    if now.tzinfo is None:  # a naive ``now`` is UTC, like the logs' times
        now = now.replace(tzinfo=timezone.utc)
    model_ref = spec.get("model")
    record: dict[str, Any] | None = None
    meta: dict[str, Any] | None = None
    if model_ref:
        record, meta = _model_meta(store, model_ref)
    source = spec["current"]
    location = current if current is not None else source["path"]
    root = Path.cwd() if current is not None else project.root
    spec_baseline = spec.get("baseline", "training")
    baseline_window: dict[str, Any] | None = None
    if (str(baseline) if baseline is not None else spec_baseline) == PREVIOUS_WINDOW:
        profile, reference, (start, end) = _previous_window(
            source, location, root, project, store, meta, now
        )
        baseline_label = f"previous window {_stamp(start)} – {_stamp(end)}"
        baseline_window = {
            "column": source["time_column"],
            "since": start.isoformat(),
            "until": end.isoformat(),
        }
    elif baseline is not None:
        profile, reference = _load_baseline(str(baseline), project, store, meta, Path.cwd())
        baseline_label = str(baseline)
    elif spec_baseline == "training":
        if meta is None:
            raise UsageError(
                "baseline 'training' needs a model",
                "name the model, or give a baseline profile or dataset",
            )
        profile, reference = meta["profile"], None
        baseline_label = "training profile"
    else:
        profile, reference = _load_baseline(spec_baseline, project, store, meta, project.root)
        baseline_label = spec_baseline
    settings = checks.Settings.from_spec(spec)
    kinds = {f["name"]: f["kind"] for f in meta["features"]} if meta else None
    columns = checks.plan_columns(profile, settings, kinds, reference)
    extra, notes = _plan_extra(spec, store, project, model_ref, meta, profile, settings)

    since = data.window_start(source.get("window"), now) if source.get("time_column") else None
    # The window is [now - window, now): rows stamped after ``now`` belong to a later run.
    until = now if since is not None else None
    files = data.iter_files(
        location,
        root=root,
        store=store,
        since=since,
        until=until,
        s3_options=project.s3_options,
    )
    time_column = source.get("time_column") if since else None
    wanted = checks.wanted_columns(columns, extra, time_column)
    header: set[str] = set()
    rows, seen = checks.accumulate(
        checks.tables_from_files(files, columns, wanted, header),
        columns,
        extra,
        exact_rows=settings.exact_rows,
        time_column=time_column,
        since=since,
        until=until,
    )
    # Columns the monitor reads for other purposes (labels, ids, times) are not "extra".
    expected = set(wanted) - {c.name for c in columns}
    result = _finish(
        spec, columns, settings, extra, header - expected, seen, rows, notes, record, meta
    )
    result["current"] = location
    result["baseline"] = baseline_label
    if since is not None and until is not None:
        result["window"] = {
            "column": time_column,
            "since": since.isoformat(),
            "until": until.isoformat(),
        }
    if baseline_window is not None:
        result["baseline_window"] = baseline_window
    return result


def _previous_window(
    source: dict[str, Any],
    location: str,
    root: Path,
    project: Project,
    store: ObjectStore,
    meta: dict[str, Any] | None,
    now: datetime,
) -> tuple[dict[str, Any], dict[str, Any] | None, tuple[datetime, datetime]]:
    """(profile, raw reference values, (start, end)) of the rows of ``location`` in the window
    just before the current one."""
    from mlopsctl.errors import NotFound
    from mlopsctl.monitor import data

    time_column, window = source.get("time_column"), source.get("window")
    if not time_column or not window:
        raise UsageError(
            f"baseline '{PREVIOUS_WINDOW}' needs current.time_column and current.window",
            "set both in the spec (like time_column: ts, window: 7d), or use another baseline",
        )
    start, end = data.previous_window(window, now)
    kinds = {f["name"]: f["kind"] for f in meta["features"]} if meta else None
    try:
        profile, reference = _profile_location(
            location, project, store, root, kinds, keep_raw=True, window=(time_column, start, end)
        )
    except data.NoDataFiles:
        profile, reference = {"rows": 0, "features": {}}, None
    if not profile["rows"]:
        raise NotFound(
            f"no rows in the previous window {_stamp(start)} – {_stamp(end)} of {location}, "
            f"so there is nothing to compare the last {window} with",
            "wait until a whole earlier window is logged, or use baseline: training or a dataset",
        )
    return profile, reference, (start, end)


def _finish(
    spec: dict[str, Any],
    columns: list[Any],
    settings: Any,
    extra: Any,
    header: set[str],
    seen: set[str],
    rows: int,
    notes: list[str],
    record: dict[str, Any] | None,
    meta: dict[str, Any] | None,
) -> dict[str, Any]:
    from mlopsctl.monitor import checks

    if rows == 0:
        raise UsageError(
            "the current data hold no rows (after the window)",
            "check current.path and current.window",
        )
    judged = checks.judge(columns, settings, seen, header, rows)
    prediction = None
    if extra.prediction is not None:
        if extra.prediction.rows:
            prediction = checks.judge_column(extra.prediction)
            prediction["of"] = extra.prediction.profile.get("of")
        else:
            notes.append("prediction drift skipped: no predictions in the data and no model")
    performance = None
    if spec.get("ground_truth"):
        from mlopsctl.monitor.performance import evaluate

        performance = evaluate(spec["ground_truth"], extra, meta, record)
    quality_fails = (spec.get("quality") or {}).get("fail", True)
    failed = bool(
        judged["drift"]
        or (prediction is not None and prediction["drifted"])
        or (performance is not None and performance["failed"])
        or (quality_fails and any(q["failed"] for q in judged["quality"]))
    )
    name = record["name"] if record else None
    version = record["version"] if record else None
    return {
        "monitor": spec["name"],
        "model": {
            "name": name,
            "version": version,
            "ref": spec.get("model"),
        },
        "rows": rows,
        "drift": judged["drift"],
        "drift_share": judged["drift_share"],
        "drift_share_threshold": judged["drift_share_threshold"],
        "drifted_features": judged["drifted_features"],
        "features": judged["features"],
        "quality": judged["quality"],
        "prediction": prediction,
        "performance": performance,
        "failed": failed,
        "notes": notes,
        "report": None,
        "event": None,
    }


def _model_meta(store: ObjectStore, ref: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The version record and its model.json, read from the head of the artifact blob (the
    model itself is loaded only when predictions must be computed) and checked against the
    sha256 the version recorded."""
    from mlopsctl import registry

    record = registry.resolve(store, ref)
    meta, digest = registry.model_facts(store, record["artifact"]["digest"])
    expected = record["artifact"].get("model_json")
    if expected and digest != expected:
        raise IntegrityError(
            f"model.json of {record['name']}:{record['version']} does not match its version record",
            "the artifact was altered; do not use it",
        )
    if not meta.get("profile", {}).get("features"):
        raise UsageError(
            f"{record['name']}:{record['version']} has no training profile",
            "retrain it with mlopsctl, or give a baseline dataset",
        )
    return record, meta


def _load_baseline(
    location: str,
    project: Project,
    store: ObjectStore,
    meta: dict[str, Any] | None,
    root: Path,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(profile, raw numeric reference values or None) of a profile JSON or a dataset."""
    if location.lower().endswith(".json"):
        path = Path(location)
        path = path if path.is_absolute() else root / path
        try:
            profile = json.loads(path.read_text())
        except FileNotFoundError:
            from mlopsctl.errors import NotFound

            raise NotFound(
                f"no baseline profile at {path}", "write one with: mlopsctl monitor profile"
            ) from None
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path} is not a profile JSON: {exc}") from None
        if not isinstance(profile, dict) or not isinstance(profile.get("features"), dict):
            raise UsageError(f"{path} is not a profile", "write one with: mlopsctl monitor profile")
        return profile, None
    kinds = {f["name"]: f["kind"] for f in meta["features"]} if meta else None
    profile, reference = _profile_location(location, project, store, root, kinds, keep_raw=True)
    if not profile["rows"]:
        raise UsageError(f"the baseline data at {location} hold no rows", "point it at your data")
    return profile, reference


def _profile_location(
    location: str,
    project: Project,
    store: ObjectStore | None,
    root: Path,
    kinds: dict[str, str] | None,
    *,
    keep_raw: bool,
    window: tuple[str, datetime, datetime] | None = None,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Profile (and, with keep_raw, raw numeric values) of the data at ``location``; with a
    ``window`` (time column, start, end) only of its rows in [start, end), filtered batch by
    batch so that only those rows are held."""
    import pyarrow as pa

    from mlopsctl.models.profile import profile_categorical, profile_numeric
    from mlopsctl.monitor import data
    from mlopsctl.monitor.checks import EXACT_ROWS

    time_column, since, until = window if window else (None, None, None)
    tables: list[Any] = []
    files = data.iter_files(
        location,
        root=root,
        store=store,
        s3_options=project.s3_options,
        since=since,
        until=until,
    )
    for path in files:
        names = data.column_names(path)
        wanted = [n for n in names if (kinds is None or n in kinds) and n != time_column]
        number = {n for n in wanted if kinds and kinds[n] == "numeric"}
        text = {n for n in wanted if kinds and kinds[n] == "categorical"}
        read = [*wanted, time_column] if time_column else wanted
        for table in data.iter_batches(path, read, text, number):
            if time_column:
                table = data.filter_window(table, time_column, since, until)
                table = table.drop_columns([time_column])
            if table.num_rows:
                tables.append(table)
    if not tables:
        return {"rows": 0, "features": {}}, ({} if keep_raw else None)
    table = pa.concat_tables(tables, promote_options="permissive")
    features: dict[str, Any] = {}
    reference: dict[str, Any] = {}
    for name in table.column_names:
        column = table.column(name)
        kind = (kinds or {}).get(name) or _kind_of(column.type)
        if kind == "numeric":
            values = column.cast(pa.float64()).to_numpy()
            features[name] = profile_numeric(values)
            if keep_raw and table.num_rows <= EXACT_ROWS:
                import numpy as np

                reference[name] = values[np.isfinite(values)]
        else:
            features[name] = profile_categorical(column.cast(pa.string()).to_pandas())
    return {"rows": table.num_rows, "features": features}, (reference if keep_raw else None)


def _kind_of(arrow_type: Any) -> str:
    import pyarrow as pa

    numeric = pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type)
    return "numeric" if numeric else "categorical"


def profile_data(
    location: str,
    *,
    project: Project | None = None,
    store: ObjectStore | None = None,
    columns: list[str] | None = None,
) -> dict[str, Any]:
    """A baseline profile (the shape model.json keeps) of a dataset, for ``baseline: FILE.json``.
    Kinds come from the column types (numbers are numeric, anything else categorical)."""
    from mlopsctl.config import load_project

    project = project or load_project()
    profile, _ = _profile_location(location, project, store, Path.cwd(), None, keep_raw=False)
    if columns:
        unknown = sorted(set(columns) - set(profile["features"]))
        if unknown:
            raise UsageError(f"no column(s) {', '.join(unknown)} in {location}")
        profile["features"] = {c: profile["features"][c] for c in columns}
    return profile


def check_against_profile(
    profile: dict[str, Any],
    data: Any,
    *,
    spec: dict[str, Any] | None = None,
    reference: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Drift and data quality of ``data`` (a pandas DataFrame, a pyarrow Table, or a file or
    folder path) against a baseline ``profile`` ({"rows", "features"}), with no registry,
    model or event: what a benchmark or a notebook calls. ``spec`` holds the same keys as a
    Monitor spec (defaults, features, drift_share, quality, exact_rows); ``reference`` raw
    numeric baseline values by feature, for the exact tests."""
    from mlopsctl.monitor import checks
    from mlopsctl.monitor import data as data_mod

    spec = {"name": "adhoc", **(spec or {})}
    settings = checks.Settings.from_spec(spec)
    columns = checks.plan_columns(profile, settings, None, reference)
    extra = checks.Extra()
    header: set[str] = set()
    if isinstance(data, (str, Path)):
        files = data_mod.iter_files(str(data), root=Path.cwd(), store=None)
        wanted = checks.wanted_columns(columns, extra, None)
        tables = checks.tables_from_files(files, columns, wanted, header)
    else:
        tables = checks.tables_from_frame(data, header)
    rows, seen = checks.accumulate(tables, columns, extra, exact_rows=settings.exact_rows)
    return _finish(spec, columns, settings, extra, header, seen, rows, [], None, None)


def _plan_extra(
    spec: dict[str, Any],
    store: ObjectStore,
    project: Project,
    model_ref: str | None,
    meta: dict[str, Any] | None,
    profile: dict[str, Any],
    settings: Any,
) -> tuple[Any, list[str]]:
    """What to read besides the features: prediction outputs, labels, ids; and notes."""
    from mlopsctl.monitor import checks

    extra = checks.Extra()
    notes: list[str] = []
    pred_spec = spec.get("prediction") or {}
    truth = spec.get("ground_truth")
    want_prediction = pred_spec.get("enabled", True) and meta is not None
    if want_prediction:
        base = (meta or {}).get("profile", {}).get("prediction")
        if not base:
            notes.append(
                "prediction drift skipped: this model version has no prediction baseline "
                "(trained before mlopsctl kept one)"
            )
        else:
            kind = base["kind"]
            tests = checks.NUMERIC_TESTS if kind == "numeric" else checks.CATEGORICAL_TESTS
            test = pred_spec.get("test") or checks.default_test(kind, int(profile.get("rows", 0)))
            if test not in tests:
                raise UsageError(
                    f"prediction test '{test}' does not apply to a {kind} output",
                    f"use one of: {', '.join(tests)}",
                )
            threshold = float(pred_spec.get("threshold") or tests[test])
            column = checks.Column("prediction", kind, base, test, threshold)
            if kind == "numeric":
                column.sketch = checks._fresh_sketch(base)
            extra.prediction = column
    if (extra.prediction is not None or truth) and meta is not None:
        extra.prediction_column = pred_spec.get("column", "prediction")
        extra.score_column = pred_spec.get("score_column", "score")
    if truth:
        if truth.get("path"):
            extra.id_column = truth.get("id_column") or "request_id"
            from mlopsctl.monitor.performance import load_truth

            extra.truth_ids, extra.collected["truth"] = load_truth(truth, project, store)
        else:
            extra.truth_column = truth.get("target_column") or (meta or {}).get("target")
            if not extra.truth_column:
                raise UsageError(
                    "ground_truth needs target_column", "name the column holding the labels"
                )
    if model_ref and meta is not None and (extra.prediction is not None or truth):
        extra.model = _LazyModel(model_ref, store, meta)
    return extra, notes


class _LazyModel:
    """The model, loaded (and verified) on first use: data that carry their own predictions
    never pay for deserialising it."""

    def __init__(self, ref: str, store: ObjectStore, meta: dict[str, Any]) -> None:
        from mlopsctl.models.artifact import features_of

        self.ref = ref
        self.store = store
        self.meta = meta
        self.features = features_of(meta)
        self._loaded: Any = None

    def _model(self) -> Any:
        if self._loaded is None:
            from mlopsctl.registry import load_model

            self._loaded = load_model(self.ref, store=self.store)
        return self._loaded

    @property
    def has_proba(self) -> bool:
        return bool(self._model().has_proba)

    @property
    def classes(self) -> Any:
        return self._model().classes

    def predict(self, frame: Any) -> Any:
        return self._model().predict(frame)

    def predict_proba(self, frame: Any) -> Any:
        return self._model().predict_proba(frame)
