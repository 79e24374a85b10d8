"""Training-serving skew: the feature values a model was served (the prediction log keeps the
entity keys and every value used, looked up or sent) against the offline values of the same
entity as of the same moment (the point-in-time join a training set is made with).

Per looked-up feature: rows compared, rows that differ (one side missing and the other not,
numbers further apart than ``tolerance`` relative to the offline value, text not equal) and
their share; a feature whose share exceeds ``max_share`` is skewed. A stale online store (not
materialised since newer rows arrived), a serving path that transforms differently, or an
online store fed from elsewhere all show up here.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlopsctl.errors import NotFound, UsageError
from mlopsctl.features.offline import current_manifest, local_files
from mlopsctl.features.pit import join_files
from mlopsctl.features.spec import featureset_from_record
from mlopsctl.timeutil import parse_duration, utc_now

if TYPE_CHECKING:
    import pandas as pd

    from mlopsctl.records.version import VersionRecord
    from mlopsctl.store.base import ObjectStore

PREDICTION_LOGS = "logs/predictions"  # mlopsctl/serving/logs.py's PREDICTIONS
_FEATURE_PREFIX = "feature."
DEFAULT_MAX_SHARE = 0.01
DEFAULT_TOLERANCE = 1e-9


def skew_check(
    store: ObjectStore,
    ref: str,
    *,
    window: str = "1d",
    max_share: float = DEFAULT_MAX_SHARE,
    tolerance: float = DEFAULT_TOLERANCE,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Skew of the version ``ref`` names over the last ``window`` of its prediction log."""
    from mlopsctl.registry import resolve

    record = resolve(store, ref)
    until = now or utc_now()
    since = until - parse_duration(window, "window")
    frame = served_rows(store, record["name"], since, until, version=int(record["version"]))
    result = compare(store, record, frame, max_share=max_share, tolerance=tolerance)
    result["window"] = {"since": since.isoformat(), "until": until.isoformat()}
    return result


def served_rows(
    store: ObjectStore,
    model: str,
    since: datetime,
    until: datetime,
    *,
    version: int | None = None,
) -> pd.DataFrame:
    """The prediction log rows of [since, until) (of one version, when given)."""
    import pandas as pd

    days = []
    day = since.date()
    while day <= until.date():
        days.append(day.isoformat())
        day += timedelta(days=1)
    folder = Path(tempfile.mkdtemp(prefix="mlopsctl-skew-"))
    try:
        files: list[Path] = []
        for date in days:
            for key in store.list(f"{PREDICTION_LOGS}/{model}/date={date}/"):
                if key.endswith(".parquet"):
                    dest = folder / f"{len(files):06d}.parquet"
                    store.get_file(key, dest)
                    files.append(dest)
        if not files:
            raise NotFound(
                f"no prediction log of {model} between {since:%Y-%m-%d} and {until:%Y-%m-%d}",
                "serve the model with a store configured, or widen the window",
            )
        frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    ts = pd.to_datetime(frame["ts"], utc=True)
    keep = (ts >= pd.Timestamp(since)) & (ts < pd.Timestamp(until))
    if version is not None and "version" in frame.columns:
        keep &= frame["version"] == version
    return frame.loc[keep].reset_index(drop=True)


def compare(
    store: ObjectStore,
    record: VersionRecord,
    frame: pd.DataFrame,
    *,
    max_share: float = DEFAULT_MAX_SHARE,
    tolerance: float = DEFAULT_TOLERANCE,
) -> dict[str, Any]:
    """Compare the served values in ``frame`` (prediction log rows) with the offline values
    of the sets ``record`` (a model version) was trained with."""
    import numpy as np
    import pandas as pd

    described = record.get("feature_sets") or []
    if not described:
        raise UsageError(
            f"{record['name']}:{record['version']} was not trained with feature sets",
            "skew is checked for models whose training used `features:`",
        )
    if frame.empty:
        raise NotFound("no served rows to compare")
    signature = {f["name"] for f in (record.get("signature") or {}).get("features") or []}
    features: list[dict[str, Any]] = []
    for item in described:
        fs = featureset_from_record(item)
        used = [f for f in fs.feature_names if not signature or f in signature]
        keys = {k: _column(frame, k) for k in fs.keys}
        if not used or any(c is None for c in keys.values()):
            continue
        labels = pd.DataFrame({k: frame[c] for k, c in keys.items()})
        labels["__ts"] = pd.to_datetime(frame["ts"], utc=True)
        served = {}
        for name in used:
            column = _column(frame, name)
            if column is not None:
                served[name] = frame[column]
        manifest = current_manifest(store, fs.name)
        joined = join_files(labels, [(fs, local_files(store, manifest))], timestamp="__ts").table
        assert joined is not None
        offline = joined.to_pandas()
        for name, values in served.items():
            expected = offline[name]
            numeric = pd.api.types.is_numeric_dtype(expected) or pd.api.types.is_bool_dtype(
                expected
            )
            got_missing = values.isna().to_numpy()
            want_missing = expected.isna().to_numpy()
            differ = got_missing != want_missing
            both = ~got_missing & ~want_missing
            mean_abs = None
            if numeric:
                got = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64")
                want = expected.astype("float64").to_numpy()
                gap = np.abs(got - want)
                bound = tolerance * np.maximum(1.0, np.abs(want))
                differ |= both & ~(gap <= bound)
                if both.any():
                    mean_abs = float(np.nanmean(gap[both]))
            else:
                differ |= both & (values.astype(str).to_numpy() != expected.astype(str).to_numpy())
            rows = len(values)
            count = int(differ.sum())
            share = count / rows if rows else 0.0
            features.append(
                {
                    "feature": name,
                    "featureset": fs.name,
                    "rows": rows,
                    "differ": count,
                    "share": round(share, 6),
                    "missing_served": int(got_missing.sum()),
                    "missing_offline": int(want_missing.sum()),
                    "mean_abs_diff": mean_abs,
                    "skewed": share > max_share,
                }
            )
    skewed = [f["feature"] for f in features if f["skewed"]]
    return {
        "model": {"name": record["name"], "version": record["version"]},
        "rows": len(frame),
        "max_share": max_share,
        "tolerance": tolerance,
        "features": features,
        "skewed": skewed,
        "failed": bool(skewed),
    }


def _column(frame: pd.DataFrame, name: str) -> str | None:
    if _FEATURE_PREFIX + name in frame.columns:  # a feature named like a fixed log column
        return _FEATURE_PREFIX + name
    return name if name in frame.columns else None


def monitor_skew(
    store: ObjectStore, spec: dict[str, Any], result: dict[str, Any], now: datetime
) -> dict[str, Any] | None:
    """The skew block of a monitor check (mlopsctl/monitor/run.py): None when the spec turns
    it off or the checked version was not trained on feature sets; else compare()'s result with
    ``fail`` (whether it fails the check) and ``note`` when no served row could be compared."""
    from mlopsctl.registry import get_version

    settings = spec.get("skew") or {}
    model = result.get("model") or {}
    if not settings.get("enabled", True) or not model.get("name") or not model.get("version"):
        return None
    record = get_version(store, str(model["name"]), int(model["version"]))
    if not record.get("feature_sets"):
        return None
    window = settings.get("window") or (spec.get("current") or {}).get("window") or "1d"
    since = now - parse_duration(str(window), "skew.window")
    fail = bool(settings.get("fail", True))
    try:
        frame = served_rows(store, record["name"], since, now, version=int(record["version"]))
        found = compare(
            store,
            record,
            frame,
            max_share=float(settings.get("max_share", DEFAULT_MAX_SHARE)),
            tolerance=float(settings.get("tolerance", DEFAULT_TOLERANCE)),
        )
    except NotFound as exc:
        return {"failed": False, "fail": fail, "features": [], "skewed": [], "note": exc.one_line()}
    found["window"] = {"since": since.isoformat(), "until": now.isoformat()}
    found["fail"] = fail
    return found
