"""One monitor check: load the Monitor spec, resolve the model and the baseline, stream the
current data (in its window) through the checks, judge them, write the report and record the
``drift`` event; and the same checks against a bare profile, with no registry or event.

``failed`` (exit 4 in the CLI) is dataset drift, prediction drift, a performance failure, a
failed data-quality test (unless ``quality.fail: false``), an outlier share above
``outliers.max_share`` or attribution drift (signals.py; unless their ``fail: false``).
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlopsctl.errors import UsageError
from mlopsctl.monitor import checks, data, signals
from mlopsctl.monitor import data as data_mod
from mlopsctl.monitor.baseline import resolve_baseline
from mlopsctl.monitor.model import model_meta, plan_extra
from mlopsctl.monitor.report import write_html
from mlopsctl.timeutil import utc_now

if TYPE_CHECKING:
    from mlopsctl.config import Project
    from mlopsctl.records.version import VersionRecord
    from mlopsctl.store.base import ObjectStore


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
    window, baseline (a label), baseline_window, report, event (see the package docstring)."""
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
    result = _run(spec, project, store, current=current, baseline=baseline, now=now or utc_now())
    result["skew"] = _skew(spec, store, result, now or utc_now())
    result["seconds"] = round(time.perf_counter() - started, 3)
    target = report if report is not None else _spec_report(spec, project)
    if target is not None:
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
            outlier_share=(result["outliers"] or {}).get("share"),
            attribution_drift=(result["attribution"] or {}).get("drifted_features"),
            skewed_features=(result["skew"] or {}).get("skewed"),
            current=result["current"],
            window=result.get("window"),
            baseline=result["baseline"],
            baseline_window=result.get("baseline_window"),
            report=result["report"],
        )
        result["event"] = event["id"]
    return result


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
    Monitor spec (defaults, features, drift_share, quality, exact_rows, outliers, attribution);
    ``reference`` raw numeric baseline values by feature, for the exact tests. The outlier
    share is checked when the spec has ``outliers`` or the profile an "outliers" block (the
    one model.json keeps), attribution drift when the data carry contributions (against the
    profile's "explain" block, when it has one)."""
    spec = {"name": "adhoc", **(spec or {})}
    settings = checks.Settings.from_spec(spec)
    columns = checks.plan_columns(profile, settings, None, reference)
    extra = checks.Extra()
    facts = {
        "profile": profile,
        "outliers": profile.get("outliers"),
        "explain": profile.get("explain"),
    }
    extra.outliers, extra.attribution = signals.plan(
        spec, facts, default_on=bool(profile.get("outliers"))
    )
    header: set[str] = set()
    if isinstance(data, (str, Path)):
        files = data_mod.iter_files(str(data), root=Path.cwd(), store=None)
        wanted = checks.wanted_columns(columns, extra, None)
        tables = checks.tables_from_files(files, columns, wanted, header)
    else:
        tables = checks.tables_from_frame(data, header)
    rows, seen = checks.accumulate(tables, columns, extra, exact_rows=settings.exact_rows)
    return _finish(spec, columns, settings, extra, header, seen, rows, [], None, None)


def _spec_report(spec: dict[str, Any], project: Project) -> Path | None:
    path = (spec.get("report") or {}).get("path")
    if not path:
        return None
    target = Path(path)
    return target if target.is_absolute() else project.root / target


def _skew(
    spec: dict[str, Any], store: ObjectStore, result: dict[str, Any], now: datetime
) -> dict[str, Any] | None:
    """Training-serving skew of a model trained on feature sets (mlopsctl/features/skew.py);
    a skewed feature fails the check unless skew.fail is false."""
    from mlopsctl.features.skew import monitor_skew

    skew = monitor_skew(store, spec, result, now)
    if skew is not None and skew["failed"] and skew["fail"]:
        result["failed"] = True
    if skew is not None and skew.get("note"):
        result["notes"].append(f"skew not checked: {skew['note']}")
    return skew


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
    if now.tzinfo is None:  # a naive ``now`` is UTC, like the logs' times
        now = now.replace(tzinfo=timezone.utc)
    model_ref = spec.get("model")
    record: VersionRecord | None = None
    meta: dict[str, Any] | None = None
    if model_ref:
        record, meta = model_meta(store, model_ref)
    source = spec["current"]
    location = current if current is not None else source["path"]
    root = Path.cwd() if current is not None else project.root
    base = resolve_baseline(
        spec,
        baseline,
        location=location,
        root=root,
        project=project,
        store=store,
        meta=meta,
        now=now,
    )
    settings = checks.Settings.from_spec(spec)
    kinds = {f["name"]: f["kind"] for f in meta["features"]} if meta else None
    columns = checks.plan_columns(base.profile, settings, kinds, base.reference)
    extra, notes = plan_extra(spec, store, project, model_ref, meta, base.profile)
    extra.outliers, extra.attribution = signals.plan(spec, meta, default_on=True)

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
    served = data.RowFilter(source, record)
    wanted += [c for c in served.columns if c not in wanted]
    header: set[str] = set()
    rows, seen = checks.accumulate(
        served.apply(
            checks.tables_from_files(files, columns, wanted, header), time_column, since, until
        ),
        columns,
        extra,
        exact_rows=settings.exact_rows,
        time_column=time_column,
        since=since,
        until=until,
    )
    if rows == 0 and served.excluded:
        raise UsageError(
            f"none of the current rows were served by {served.what()}: {served.excluded} "
            "row(s) came from other versions or arms",
            "set current.version (or all) or current.arm in the monitor spec",
        )
    if served.note():
        notes.append(str(served.note()))
    # Columns the monitor reads for other purposes (labels, ids, times) are not "extra".
    expected = set(wanted) - {c.name for c in columns}
    result = _finish(
        spec, columns, settings, extra, header - expected, seen, rows, notes, record, meta
    )
    result["current"] = location
    result["served"] = served.describe()
    result["baseline"] = base.label
    if since is not None and until is not None:
        result["window"] = {
            "column": time_column,
            "since": since.isoformat(),
            "until": until.isoformat(),
        }
    if base.window is not None:
        result["baseline_window"] = base.window
    return result


def _finish(
    spec: dict[str, Any],
    columns: list[checks.Column],
    settings: checks.Settings,
    extra: checks.Extra,
    header: set[str],
    seen: set[str],
    rows: int,
    notes: list[str],
    record: VersionRecord | None,
    meta: dict[str, Any] | None,
) -> dict[str, Any]:
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
    outliers = extra.outliers.result() if extra.outliers is not None else None
    attribution = extra.attribution.result() if extra.attribution is not None else None
    failed = bool(
        judged["drift"]
        or (prediction is not None and prediction["drifted"])
        or (performance is not None and performance["failed"])
        or (quality_fails and any(q["failed"] for q in judged["quality"]))
        or (outliers is not None and outliers["failed"])
        or (attribution is not None and attribution["failed"])
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
        "outliers": outliers,
        "attribution": attribution,
        "failed": failed,
        "notes": notes,
        "report": None,
        "event": None,
    }
