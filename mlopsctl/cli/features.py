"""`mlopsctl features`: the feature store. Parse and render only; the work is in
mlopsctl/features/."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Annotated

import typer

from mlopsctl.cli.options import JsonOpt, project_store
from mlopsctl.cli.output import emit_json, err, out
from mlopsctl.errors import CheckFailed, NotFound, UsageError
from mlopsctl.timeutil import parse_time

if TYPE_CHECKING:
    from mlopsctl.config import Project


def _api() -> ModuleType:
    """mlopsctl.features, loaded when a command runs (not for --help)."""
    import mlopsctl.features

    return mlopsctl.features


def _project() -> Project:
    from mlopsctl.config import load_project

    return load_project()


app = typer.Typer(
    help="Feature store: offline Parquet, point-in-time training sets, the online store.",
    no_args_is_help=True,
)

SpecsArg = Annotated[list[Path], typer.Argument(help="FeatureSet spec files.")]
OnlineOpt = Annotated[
    str | None,
    typer.Option(
        "--online",
        help="Online store: sqlite:PATH or redis://HOST:PORT/DB (default: "
        "MLOPSCTL_ONLINE_STORE, else sqlite:.mlops-online/features.sqlite in the project).",
    ),
]


@app.command("materialize-offline")
def materialize_offline(specs: SpecsArg, json_out: JsonOpt = False) -> None:
    """Read each set's source, transform and type it, and store it as date-partitioned
    Parquet in the project store (unchanged partitions are not written again)."""

    api = _api()
    sets = api.load_featuresets(list(specs))
    project = _project()
    with project_store(project) as store:
        results = [api.materialize_offline(store, fs, project.root) for fs in sets]
    if json_out:
        emit_json(results)
        return
    for r in results:
        state = "updated" if r["changed"] else "unchanged"
        out(
            f"{r['name']}  {r['rows']} rows in {len(r['partitions'])} partition(s), "
            f"{r['uploaded']} file(s) written, {state}  {r['digest']}"
        )


@app.command("training-set")
def training_set(
    labels: Annotated[
        Path, typer.Argument(help="The entity/label table (Parquet or CSV): keys, time, labels.")
    ],
    specs: SpecsArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="Parquet file to write.")],
    timestamp: Annotated[
        str, typer.Option("--timestamp", help="The label table's time column.")
    ] = "event_timestamp",
    json_out: JsonOpt = False,
) -> None:
    """Join each label row with every set's feature values as of the label's time (the latest
    row at or before it, within the set's TTL; NULL otherwise)."""

    if not labels.is_file() and not labels.is_dir():
        raise NotFound(f"no such file: {labels}")
    api = _api()
    sets = api.load_featuresets(list(specs))
    with project_store() as store:
        result = api.training_set(store, sets, labels, timestamp=timestamp, out=output)
    summary = {
        "output": str(output),
        "rows": result.rows,
        "timestamp": result.timestamp,
        "matched": result.matched,
        "feature_sets": result.sets,
    }
    if json_out:
        emit_json(summary)
        return
    matched = ", ".join(f"{k} {v}/{result.rows}" for k, v in result.matched.items())
    out(f"{output}  {result.rows} rows; rows with values: {matched}")


@app.command("materialize")
def materialize(
    specs: SpecsArg,
    online: OnlineOpt = None,
    full: Annotated[
        bool, typer.Option("--full", help="Reload everything, not only rows newer than before.")
    ] = False,
    until: Annotated[
        str | None, typer.Option("--until", help="Load rows up to this time (default: now).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Load the latest value per entity into the online store, incrementally by event time."""
    api = _api()
    sets = api.load_featuresets(list(specs))
    project = _project()
    end = parse_time(until) if until else None
    online_store = api.open_online(api.online_url(project.root, online), project.root)
    try:
        with project_store(project) as store:
            results = api.materialize_all(store, sets, online_store, full=full, until=end)
    finally:
        online_store.close()
    if json_out:
        emit_json(results)
        return
    for r in results:
        how = "full" if r["full"] else f"since {r['since']}"
        out(f"{r['name']}  {r['rows']} entities written ({how}); watermark {r['watermark']}")
    skipped = [fs.name for fs in sets if not fs.online]
    if skipped:
        err(f"note: online: false, not loaded: {', '.join(skipped)}")


@app.command("get")
def get(
    spec: Annotated[Path, typer.Argument(help="A FeatureSet spec file.")],
    keys: Annotated[
        list[str], typer.Argument(help="Entity key values (one per entity key, in order).")
    ],
    online: OnlineOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Read one entity's values from the online store, as serving would."""
    import json

    api = _api()
    fs = api.load_featureset(spec)
    if len(keys) != len(fs.keys):
        raise UsageError(f"'{fs.name}' has {len(fs.keys)} entity key(s): {', '.join(fs.keys)}")
    key = api.key_text(list(keys), [t for _, t in fs.entities])
    if key is None:
        raise UsageError(f"not an entity key of '{fs.name}': {' '.join(keys)}")
    project = _project()
    store = api.open_online(api.online_url(project.root, online), project.root)
    try:
        row = store.read(fs, [key])[0]
    finally:
        store.close()
    if row is None:
        raise NotFound(f"'{fs.name}' has no values for {' '.join(keys)} in the online store")
    values = dict(zip(fs.feature_names, row[1:], strict=True))
    when = api.from_us(row[0]).isoformat()
    data = {"featureset": fs.name, "key": keys, "event_time": when, **values}
    if json_out:
        emit_json(data)
        return
    out(json.dumps(data))


@app.command("list")
def list_sets(json_out: JsonOpt = False) -> None:
    """The feature sets with offline data in the store."""

    with project_store() as store:
        found = _api().list_featuresets(store)
    if json_out:
        emit_json(found)
        return
    for m in found:
        out(f"{m['name']}  {m['rows']} rows, {m['first_date']}..{m['last_date']}  {m['digest']}")


@app.command("skew")
def skew(
    model: Annotated[str, typer.Argument(help="NAME, NAME@ALIAS or NAME:VERSION.")],
    window: Annotated[
        str, typer.Option("--window", help="Served requests this far back, like 1d.")
    ] = "1d",
    max_share: Annotated[
        float, typer.Option("--max-share", help="Largest share of differing rows per feature.")
    ] = 0.01,
    json_out: JsonOpt = False,
) -> None:
    """Compare the feature values a model was served (its prediction log) with the offline
    values as of each request's time; exit 4 when a feature differs in more than
    --max-share of the rows."""

    with project_store() as store:
        result = _api().skew_check(store, model, window=window, max_share=max_share)
    if json_out:
        emit_json(result)
    else:
        for f in result["features"]:
            flag = "SKEW" if f["skewed"] else "ok"
            out(
                f"{f['feature']:<24} {flag:<4} {f['differ']}/{f['rows']} rows differ "
                f"({f['share']:.2%})"
            )
    if result["failed"]:
        raise CheckFailed(
            f"served values differ from the offline ones: {', '.join(result['skewed'])}",
            "materialize the online store more often, or check the serving path",
        )
