from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from mlopsctl.cli.options import JsonOpt, project_store
from mlopsctl.cli.output import emit_json, out
from mlopsctl.errors import UsageError


class Format(str, Enum):
    text = "text"
    json = "json"  # an alias of --json, kept for scripts written before it
    dot = "dot"
    mermaid = "mermaid"


def lineage(
    ref: Annotated[
        str,
        typer.Argument(
            help="A model version (NAME, NAME@ALIAS, NAME:VERSION) for its upstream graph, or a "
            "data digest (sha256:...) for the runs and versions that used it."
        ),
    ],
    fmt: Annotated[
        Format,
        typer.Option(
            "--format", "-f", metavar="[text|dot|mermaid]", help="Output format (or --json)."
        ),
    ] = Format.text,
    json_out: JsonOpt = False,
) -> None:
    """Show what made a model version, or where a dataset went."""
    from mlopsctl.lineage import lineage as build
    from mlopsctl.lineage import render

    if json_out and fmt not in (Format.text, Format.json):
        raise UsageError(f"give either --json or --format {fmt.value}, not both")
    with project_store() as store:
        graph = build(store, ref)
    if json_out or fmt is Format.json:
        emit_json(graph.as_dict())
    else:
        out(render(graph, fmt.value))
