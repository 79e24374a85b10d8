"""Where a monitor's baseline comes from, as a profile (and, when small enough, the raw numeric
values for the exact tests):

- ``training`` (the default): the profile saved in the model version's model.json at training
  time (mlopsctl/models/profile.py), so the training data are never read again;
- a profile JSON written by ``mlopsctl monitor profile`` (``baseline: FILE.json``);
- a reference dataset (any other path): read once and profiled here;
- ``previous_window``: the window just before the current one on the same source. The current
  window is [now - window, now), the baseline [now - 2*window, now - window), read from
  current.path by the same readers (data.py) and used as a reference dataset.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlopsctl.errors import NotFound, UsageError
from mlopsctl.models.profile import profile_categorical, profile_numeric
from mlopsctl.monitor import data
from mlopsctl.monitor.checks import EXACT_ROWS
from mlopsctl.timeutil import stamp

if TYPE_CHECKING:
    from mlopsctl.config import Project
    from mlopsctl.store.base import ObjectStore

# The baseline that is the window just before the current one on the same source.
PREVIOUS_WINDOW = "previous_window"


@dataclass
class Baseline:
    """A resolved baseline: its profile ({"rows", "features"}), the raw numeric values by
    feature (None when not kept), a label for the result and, for ``previous_window``, the
    window it covers (column, since, until)."""

    profile: dict[str, Any]
    reference: dict[str, Any] | None
    label: str
    window: dict[str, Any] | None = None


def resolve_baseline(
    spec: dict[str, Any],
    override: Path | str | None,
    *,
    location: str,
    root: Path,
    project: Project,
    store: ObjectStore,
    meta: dict[str, Any] | None,
    now: datetime,
) -> Baseline:
    """The baseline a monitor run compares with: ``override`` (the command line's, relative to
    the working directory) or else the spec's ``baseline`` (relative to the project root).
    ``location`` and ``root`` are where the current data are read from; ``meta`` is the model's
    model.json (None without a model)."""
    source = spec["current"]
    spec_baseline = spec.get("baseline", "training")
    if (str(override) if override is not None else spec_baseline) == PREVIOUS_WINDOW:
        profile, reference, (start, end) = _previous_window(
            source, location, root, project, store, meta, now, spec.get("prediction") or {}
        )
        return Baseline(
            profile,
            reference,
            f"previous window {stamp(start)} – {stamp(end)}",
            {"column": source["time_column"], "since": start.isoformat(), "until": end.isoformat()},
        )
    if override is not None:
        profile, reference = _load(str(override), project, store, meta, Path.cwd())
        return Baseline(profile, reference, str(override))
    if spec_baseline == "training":
        if meta is None:
            raise UsageError(
                "baseline 'training' needs a model",
                "name the model, or give a baseline profile or dataset",
            )
        return Baseline(meta["profile"], None, "training profile")
    profile, reference = _load(spec_baseline, project, store, meta, project.root)
    return Baseline(profile, reference, spec_baseline)


def _kinds(meta: dict[str, Any] | None) -> dict[str, str] | None:
    return {f["name"]: f["kind"] for f in meta["features"]} if meta else None


def _prediction_source(
    options: dict[str, Any], meta: dict[str, Any] | None
) -> tuple[str, str, str] | None:
    """(column, kind, of) of the model's outputs in the data, as prediction drift reads them:
    a binary classifier's score column, else its prediction column; None without a model
    or a prediction baseline to take the kind from."""
    trained = ((meta or {}).get("profile") or {}).get("prediction")
    if not trained or options.get("enabled") is False:
        return None
    of = str(trained.get("of") or "label")
    if of == "score":
        return str(options.get("score_column") or "score"), "numeric", of
    return str(options.get("column") or "prediction"), str(trained["kind"]), of


def _previous_window(
    source: dict[str, Any],
    location: str,
    root: Path,
    project: Project,
    store: ObjectStore,
    meta: dict[str, Any] | None,
    now: datetime,
    prediction: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any] | None, tuple[datetime, datetime]]:
    """(profile, raw reference values, (start, end)) of the rows of ``location`` in the window
    just before the current one. The profile's "prediction" is that of the model's outputs
    in that window (None when it holds none), which prediction drift then compares with
    instead of the training outputs; `prediction` is the Monitor spec's prediction block."""
    time_column, window = source.get("time_column"), source.get("window")
    if not time_column or not window:
        raise UsageError(
            f"baseline '{PREVIOUS_WINDOW}' needs current.time_column and current.window",
            "set both in the spec (like time_column: ts, window: 7d), or use another baseline",
        )
    start, end = data.previous_window(window, now)
    try:
        profile, reference = _profile_location(
            location,
            project,
            store,
            root,
            _kinds(meta),
            keep_raw=True,
            window=(time_column, start, end),
            prediction=_prediction_source(prediction or {}, meta),
        )
    except data.NoDataFiles:
        profile, reference = {"rows": 0, "features": {}}, None
    if not profile["rows"]:
        raise NotFound(
            f"no rows in the previous window {stamp(start)} – {stamp(end)} of {location}, "
            f"so there is nothing to compare the last {window} with",
            "wait until a whole earlier window is logged, or use baseline: training or a dataset",
        )
    return profile, reference, (start, end)


def _load(
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
            raise NotFound(
                f"no baseline profile at {path}", "write one with: mlopsctl monitor profile"
            ) from None
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path} is not a profile JSON: {exc}") from None
        if not isinstance(profile, dict) or not isinstance(profile.get("features"), dict):
            raise UsageError(f"{path} is not a profile", "write one with: mlopsctl monitor profile")
        return profile, None
    profile, reference = _profile_location(
        location, project, store, root, _kinds(meta), keep_raw=True
    )
    if not profile["rows"]:
        raise UsageError(f"the baseline data at {location} hold no rows", "point it at your data")
    return profile, reference


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


def _profile_location(
    location: str,
    project: Project,
    store: ObjectStore | None,
    root: Path,
    kinds: dict[str, str] | None,
    *,
    keep_raw: bool,
    window: tuple[str, datetime, datetime] | None = None,
    prediction: tuple[str, str, str] | None = None,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Profile (and, with keep_raw, raw numeric values) of the data at ``location``; with a
    ``window`` (time column, start, end) only of its rows in [start, end), filtered batch by
    batch so that only those rows are held. Features serving logged as feature.<name> are
    profiled under their names. With `prediction` (column, kind, of), the profile's
    "prediction" is that column's (None when the data hold none)."""
    import pyarrow as pa

    time_column, since, until = window if window else (None, None, None)
    tables: list[Any] = []
    outputs: list[Any] = []
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
        if kinds is None:
            sources = {n: n for n in names if n != time_column}
        else:
            sources = {data.feature_column(names, n): n for n in kinds}
            sources = {c: n for c, n in sources.items() if c in names and c != time_column}
        wanted = list(sources)
        number = {c for c, n in sources.items() if kinds and kinds[n] == "numeric"}
        text = {c for c, n in sources.items() if kinds and kinds[n] == "categorical"}
        output = prediction[0] if prediction and prediction[0] in names else None
        read = [*wanted, *([output] if output and output not in sources else [])]
        read += [time_column] if time_column else []
        for table in data.iter_batches(path, read, text, number):
            if time_column:
                table = data.filter_window(table, time_column, since, until)
                table = table.drop_columns([time_column])
            if not table.num_rows:
                continue
            if output:
                outputs.append(table.column(output))
                if output not in sources:
                    table = table.drop_columns([output])
            tables.append(table.rename_columns([sources.get(c, c) for c in table.column_names]))
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
    profile: dict[str, Any] = {"rows": table.num_rows, "features": features}
    if prediction is not None:
        profile["prediction"] = _output_profile(outputs, prediction)
    return profile, (reference if keep_raw else None)


def _output_profile(chunks: list[Any], prediction: tuple[str, str, str]) -> dict[str, Any] | None:
    """The profile of the model's outputs (chunks of one column), as model.json keeps the
    training outputs'; None without any."""
    import pyarrow as pa

    if not chunks or not sum(len(c) for c in chunks):
        return None
    _, kind, of = prediction
    column = pa.chunked_array([c for chunk in chunks for c in chunk.chunks])
    if kind == "numeric":
        return {**profile_numeric(column.cast(pa.float64()).to_numpy()), "of": of}
    return {**profile_categorical(column.cast(pa.string()).to_pandas()), "of": of}


def _kind_of(arrow_type: Any) -> str:
    import pyarrow as pa

    numeric = pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type)
    return "numeric" if numeric else "categorical"
