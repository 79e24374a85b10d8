from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from mlopsctl.cli.output import out


class Format(str, Enum):
    text = "text"
    json = "json"
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
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.text,
) -> None:
    """Show what made a model version, or where a dataset went."""
    from mlopsctl.config import load_project, open_project_store
    from mlopsctl.lineage import lineage as build
    from mlopsctl.lineage import render

    with open_project_store(load_project()) as store:
        graph = build(store, ref)
    out(render(graph, fmt.value))
