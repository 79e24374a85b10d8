from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlopsctl.cli.options import JsonOpt
from mlopsctl.cli.output import emit_json, err


def init(
    directory: Annotated[
        Path, typer.Argument(help="Folder to create the project in (created if missing).")
    ] = Path("."),
    name: Annotated[
        str | None, typer.Option(help="Project name (default: from the folder name).")
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(help="Store URL to write into mlops.yaml (default: .mlops)."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Scaffold a project: mlops.yaml, an example pipeline, .gitignore entries, and the spec
    schemas in .mlopsctl/schemas for editors (the YAML files name them in their first line).
    Never overwrites a file."""
    from mlopsctl.project.init import SCHEMAS_DIR, init_project

    result = init_project(directory, name=name, store=store)
    if json_out:
        emit_json(
            {
                "root": str(result.root),
                "created": result.created,
                "gitignore_added": result.gitignore_added,
                "schemas": result.schemas,
            }
        )
        return
    for path in result.created:
        err(f"created {path}")
    if result.gitignore_added:
        err(f"added to .gitignore: {', '.join(result.gitignore_added)}")
    if result.schemas:
        err(f"wrote {len(result.schemas)} spec schemas for editors to {SCHEMAS_DIR}/")
    err("next: mlopsctl validate && mlopsctl doctor")
