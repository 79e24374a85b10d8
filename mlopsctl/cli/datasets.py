"""`mlopsctl datasets`: training tables built from what a model served and the outcomes that
came back; parse and render only, the work is in mlopsctl/datasets/."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from mlopsctl.cli.options import JsonOpt, project_store
from mlopsctl.cli.output import emit_json, err, out

app = typer.Typer(
    help="Datasets from production: serving logs joined with outcomes over a window, stored "
    "content-addressed with their lineage.",
    no_args_is_help=True,
)


@app.command("build")
def build(
    spec: Annotated[Path, typer.Argument(help="A Dataset spec (kind: Dataset).")],
    until: Annotated[
        str | None,
        typer.Option("--until", help="End the window here (a time or a date, UTC) instead."),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only the dataset's digest.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Join the model's prediction logs with its feedback over the spec's window (plus any
    mix:), store the table by its sha256 and record its lineage; print its digest (pass it to
    a pipeline's ingest as dataset: sha256:...). Exit 6 when there is no labelled row."""
    from mlopsctl.config import load_project
    from mlopsctl.datasets import build_spec

    project = load_project()
    with project_store(project) as store:
        built = build_spec(spec, project=project, store=store, until=until)
    record = {**built.record, "key": built.key, "existing": built.existing}
    if json_out:
        emit_json(record)
        return
    if quiet:
        out(built.digest)
        return
    _render(record)
    if built.existing:
        err(f"identical to the build of {record.get('built')}: nothing new was stored")


def _render(record: Mapping[str, Any]) -> None:
    counts = record.get("counts") or {}
    window = record.get("window") or {}
    out(f"dataset {record['name']} {record['digest']}")
    out(
        f"  rows       {record['rows']} ({len(record.get('columns') or []) - 1} features + "
        f"{record.get('target')})"
    )
    out(
        f"  window     [{window.get('since')}, {window.get('until')}) of prediction time; "
        f"outcomes recorded up to {window.get('labels_until')}"
    )
    out(
        f"  logged     {counts.get('logged_rows', 0)} rows: {counts.get('labelled_rows', 0)} "
        f"labelled ({counts.get('late_labels', 0)} late), {counts.get('unlabelled_rows', 0)} "
        f"unlabelled (dropped), {counts.get('duplicate_rows', 0)} duplicate(s)"
    )
    out(
        f"  feedback   {counts.get('feedback_rows', 0)} outcomes: "
        f"{counts.get('duplicate_feedback', 0)} superseded by a later one, "
        f"{counts.get('unmatched_feedback', 0)} without a prediction in the window"
    )
    if counts.get("mixed_rows"):
        mixed = ", ".join(str(m.get("source")) for m in record["sources"].get("mix") or [])
        out(f"  mixed      {counts['mixed_rows']} rows ({mixed})")
    sources = record.get("sources") or {}
    for kind in ("predictions", "feedback"):
        part = sources.get(kind) or {}
        out(f"  {kind:<10} {len(part.get('files') or [])} file(s) under {part.get('prefix')}")
    if record.get("key"):
        out(f"  record     {record['key']}")


@app.command("list")
def list_(
    name: Annotated[str | None, typer.Argument(help="Only this dataset's builds.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Every build, oldest first: when, digest, rows, window."""
    from mlopsctl.datasets import list_datasets

    with project_store() as store:
        records = list_datasets(store, name)
    if json_out:
        emit_json(records)
        return
    if not records:
        err("no datasets in the store")
        return
    for record in records:
        window = record.get("window") or {}
        out(
            f"{record.get('built')}  {record['name']:<24} {str(record['digest'])[:19]}  "
            f"{record['rows']:>9} rows  [{window.get('since')}, {window.get('until')})"
        )


@app.command("show")
def show(
    ref: Annotated[
        str, typer.Argument(help="NAME (its latest build) or NAME@DIGEST (a prefix will do).")
    ],
    json_out: JsonOpt = False,
) -> None:
    """One build's record: window, counts and the log and feedback files it came from."""
    from mlopsctl.datasets import get_dataset

    with project_store() as store:
        record = get_dataset(store, ref)
    if json_out:
        emit_json(record)
        return
    _render(record)
    sources: Mapping[str, Any] = record.get("sources") or {}
    for kind in ("predictions", "feedback"):
        for item in (sources.get(kind) or {}).get("files") or []:
            out(f"    {item['key']}  {item['digest']}")
