from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mlopsctl.cli.options import JsonOpt, ReasonOpt, TrustOpt, project_store
from mlopsctl.cli.output import emit_json, err, out

if TYPE_CHECKING:
    from mlopsctl.records.alias_move import AliasMove
    from mlopsctl.records.version import VersionRecord

app = typer.Typer(
    help="The model registry: versions with provenance, aliases moved by compare-and-swap.",
    no_args_is_help=True,
)
alias_app = typer.Typer(
    help="Aliases (production, staging, ...) and their history.", no_args_is_help=True
)
app.add_typer(alias_app, name="alias")

ExpectOpt = Annotated[
    int | None,
    typer.Option("--expect", help="Only move if the alias still points at this version."),
]


@app.command("list")
def list_(
    name: Annotated[str | None, typer.Argument(help="A model: list its versions.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Models with their latest version and aliases; with NAME, that model's versions."""
    from mlopsctl.registry import check_name, list_models, list_versions

    with project_store() as store:
        if name is None:
            models = list_models(store)
            if json_out:
                emit_json(models)
                return
            if not models:
                err("no models registered yet")
            for m in models:
                aliases = ", ".join(f"{a}={v}" for a, v in sorted(m["aliases"].items()))
                latest = m["latest"] if m["latest"] is not None else "-"
                out(f"{m['name']:<32} latest {latest:<5} versions {m['versions']:<5} {aliases}")
            return
        versions = list_versions(store, check_name(name))
    if json_out:
        emit_json(versions)
        return
    for v in versions:
        metrics = ", ".join(
            f"{k}={_number(x, 4)}" for k, x in sorted((v.get("metrics") or {}).items())[:4]
        )
        run = (v.get("run") or {}).get("id", "")
        out(f"{v['name']}:{v['version']:<5} {v['created']}  run {run}  {metrics}")


@app.command("show")
def show(
    ref: Annotated[str, typer.Argument(help="NAME, NAME@ALIAS or NAME:VERSION.")],
    json_out: JsonOpt = False,
) -> None:
    """A version and everything that made it: pipeline, commit, image, data, params, metrics,
    person, host."""
    from mlopsctl.registry import resolve

    with project_store() as store:
        record = resolve(store, ref)
    if json_out:
        emit_json(record)
        return
    _render_version(record)


def _number(value: Any, digits: int) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.{digits}g}"
    return json.dumps(value, default=str)


def _render_version(v: VersionRecord) -> None:
    art, git = v["artifact"], v.get("git") or {}
    pipeline, run = v.get("pipeline") or {}, v.get("run") or {}
    who, where = v.get("who"), v.get("where")
    by, host = who["name"] if who else None, where["host"] if where else None
    out(f"model      {v['name']}:{v['version']}  (registered {v['created']} by {by} on {host})")
    out(
        f"artifact   {art.get('digest')}  {art.get('flavor')} {art.get('format')}  "
        f"{art.get('size')} bytes  model.json {art.get('model_json')}"
    )
    estimator = v.get("estimator") or {}
    out(
        f"estimator  {estimator.get('class')}  "
        + json.dumps(estimator.get("params"), sort_keys=True, default=str)
    )
    spec = pipeline.get("spec")
    out(
        f"pipeline   {pipeline.get('name')}  step {pipeline.get('step')}  spec "
        f"{spec['path'] if spec else None} {spec['digest'] if spec else None}"
    )
    trained_on, trained_by = v.get("trained_on"), v.get("trained_by")
    place = f" on {trained_on['host']} ({trained_on.get('platform')})" if trained_on else ""
    out(
        f"run        {run.get('id')}  experiment {run.get('experiment')}  "
        f"trained {v.get('trained_at')} by {trained_by['name'] if trained_by else None}{place}"
    )
    dirty = " (dirty)" if git.get("dirty") else ""
    out(
        f"git        {git.get('commit') or '(no commit)'}{dirty}  branch {git.get('branch')}  "
        f"remote {git.get('remote')}"
    )
    image = v.get("image") or {}
    out(f"image      {image.get('digest') or '(ran locally, no image)'}")
    data = v.get("data") or {}
    for name, d in (data.get("training") or {}).items():
        out(f"train data {name}: {d.get('digest')}  rows {d.get('rows')}")
    evaluation = v.get("evaluation") or {}
    for name, d in (evaluation.get("data") or {}).items():
        out(f"eval data  {name}: {d.get('digest')}  rows {d.get('rows')}")
    for name, ref in sorted((evaluation.get("outputs") or {}).items()):
        out(f"evaluated  {evaluation.get('step')}.{name}: {ref.get('digest')}")
    for name, digest in (data.get("sources") or {}).items():
        out(f"source     {name}: {digest}")
    out("params     " + json.dumps(v.get("params"), sort_keys=True))
    for name, value in sorted((v.get("metrics") or {}).items()):
        out(f"metric     {name} = {_number(value, 6)}")
    sig = v.get("signature") or {}
    features = sig.get("features") or []
    out(f"signature  {sig.get('task')}  target {sig.get('target')}  {len(features)} features")
    env = v.get("environment") or {}
    libs = ", ".join(f"{k} {x}" for k, x in sorted((v.get("libraries") or {}).items()) if x)
    out(f"software   mlopsctl {env.get('mlopsctl')}  python {env.get('python')}  {libs}")
    if v.get("note"):
        out(f"note       {v['note']}")


@app.command("register")
def register(
    name: Annotated[str, typer.Argument(help="Model name.")],
    run: Annotated[str, typer.Option("--run", help="Run id (or a unique prefix, or 'latest').")],
    output: Annotated[
        str, typer.Option("--output", help="The run's model output, e.g. train.model.")
    ],
    metrics: Annotated[
        str | None,
        typer.Option("--metrics", help="The step output holding metrics, e.g. evaluate.metrics."),
    ] = None,
    note: Annotated[
        str | None, typer.Option("--note", help="Free text kept with the version.")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Register a model from a finished run by hand."""
    from mlopsctl.registry import check_name, register_from_run
    from mlopsctl.runs import load_run

    with project_store() as store:
        record = register_from_run(
            store, load_run(store, run), check_name(name), output, metrics, note
        )
    if json_out:
        emit_json(record)
    else:
        state = "already registered as" if record.get("existing") else "registered"
        out(f"{state} {record['name']}:{record['version']}")


@alias_app.command("set")
def alias_set(
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias: Annotated[str, typer.Argument(help="Alias, e.g. production.")],
    version: Annotated[int, typer.Argument(help="Version to point it at.", min=1)],
    expect: ExpectOpt = None,
    reason: ReasonOpt = None,
) -> None:
    """Move an alias by compare-and-swap. A lost race exits 7 naming the current holder."""
    from mlopsctl.registry import set_alias

    with project_store() as store:
        record = set_alias(store, name, alias, version, expect=expect, reason=reason)
    _moved(record)


def _moved(record: AliasMove) -> None:
    before = record["previous"] if record["previous"] is not None else "(none)"
    out(f"{record['model']}@{record['alias']}: {before} -> {record['version']}")


@alias_app.command("history")
def alias_history(
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias: Annotated[str, typer.Argument(help="Alias.")],
    json_out: JsonOpt = False,
) -> None:
    """Every move of an alias, oldest first: when, who, from, to, why."""
    from mlopsctl.registry import alias_history as history

    with project_store() as store:
        moves = history(store, name, alias)
    if json_out:
        emit_json(moves)
        return
    if not moves:
        err(f"{name}@{alias} was never set")
    for m in moves:
        before = m["previous"] if m["previous"] is not None else "-"
        out(
            f"{m['seq']:>4} {m['time']} {before:>5} -> {m['version']:<5} {m['action']:<9} "
            f"{(m.get('by') or {}).get('name')}  {m.get('reason') or ''}"
        )


@app.command("promote")
def promote(
    ref: Annotated[str, typer.Argument(help="NAME:VERSION, NAME@ALIAS or NAME (latest).")],
    alias: Annotated[str, typer.Argument(help="Alias to move, e.g. production.")],
    expect: ExpectOpt = None,
    reason: ReasonOpt = None,
) -> None:
    """Point ALIAS at the version REF names (e.g. promote churn@staging production)."""
    from mlopsctl.registry import resolve, set_alias

    with project_store() as store:
        target = resolve(store, ref)
        record = set_alias(
            store,
            target["name"],
            alias,
            target["version"],
            expect=expect,
            reason=reason,
            action="promote",
        )
    _moved(record)


@app.command("rollback")
def rollback(
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias: Annotated[str, typer.Argument(help="Alias to move back.")],
    reason: ReasonOpt = None,
) -> None:
    """Move ALIAS back to the version it pointed at before its latest move."""
    from mlopsctl.registry import rollback as do_rollback

    with project_store() as store:
        record = do_rollback(store, name, alias, reason)
    _moved(record)


@app.command("download")
def download(
    ref: Annotated[str, typer.Argument(help="NAME, NAME@ALIAS or NAME:VERSION.")],
    dest: Annotated[Path, typer.Argument(help="Folder to create (must not exist).")],
) -> None:
    """Download a model artifact; its digest is verified before the folder appears."""
    from mlopsctl.registry import download as do_download

    with project_store() as store:
        record, folder = do_download(store, ref, dest)
    err(f"{record['name']}:{record['version']} -> {folder}")


@app.command("predict")
def predict(
    ref: Annotated[str, typer.Argument(help="NAME, NAME@ALIAS or NAME:VERSION.")],
    data: Annotated[Path, typer.Argument(help="Rows to score: a CSV or Parquet file.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the predictions CSV here.")
    ] = None,
    trust: TrustOpt = False,
) -> None:
    """Score DATA with a registered model: one CSV row per input row (prediction, and
    proba_<class> for classifiers), to stdout or --output. The artifact is verified before
    it is loaded."""
    import sys

    from mlopsctl.models.predict import predict_frame, read_input, write_csv
    from mlopsctl.registry import load_model

    frame = read_input(data)
    with project_store() as store:
        model = load_model(ref, store=store, trust_pickle=trust)
    predictions = predict_frame(model, frame)
    if output is None:
        predictions.to_csv(sys.stdout, index=False)
    else:
        write_csv(predictions, output)


@app.command("explain")
def explain(
    ref: Annotated[str, typer.Argument(help="NAME, NAME@ALIAS or NAME:VERSION.")],
    data: Annotated[Path, typer.Argument(help="Rows to explain: a CSV or Parquet file.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the contributions CSV here.")
    ] = None,
    trust: TrustOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Explain DATA's predictions: one CSV row per input row with the prediction, the class
    explained, the raw output, the outlier score and contrib.<feature> for every feature plus
    contrib.bias (each row's contributions add up to the output), to stdout or --output; --json
    prints them as JSON."""
    import sys

    from mlopsctl.models.explain import explain_json, explain_table
    from mlopsctl.models.predict import read_input, write_csv
    from mlopsctl.registry import load_model

    frame = read_input(data)
    with project_store() as store:
        model = load_model(ref, store=store, trust_pickle=trust)
    if json_out:
        emit_json(explain_json(model, frame))
        if output is None:
            return
    table = explain_table(model, frame)
    if output is None:
        table.to_csv(sys.stdout, index=False)
    else:
        write_csv(table, output)
