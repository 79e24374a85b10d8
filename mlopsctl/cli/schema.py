"""`mlopsctl schema`: the JSON Schemas that `validate` checks specs against, for editors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlopsctl.cli.options import JsonOpt
from mlopsctl.cli.output import emit_json, err, out

app = typer.Typer(
    help="The JSON Schemas of the spec kinds, for editors and other tools.",
    no_args_is_help=True,
)


@app.command("export")
def export(
    directory: Annotated[
        Path, typer.Argument(help="Folder to write <kind>.schema.json files to (created).")
    ],
    json_out: JsonOpt = False,
) -> None:
    """Write the schema of every spec kind (the very ones `validate` uses) into DIRECTORY,
    replacing older copies. Point an editor at them with a first line such as
    `# yaml-language-server: $schema=.mlopsctl/schemas/pipeline.schema.json` (what `init`
    writes)."""
    from mlopsctl.project.init import export_schemas

    written = export_schemas(directory)
    if json_out:
        emit_json({"directory": str(directory), "files": [str(p) for p in written]})
        return
    for path in written:
        out(str(path))
    err(f"{len(written)} schemas written to {directory}")
