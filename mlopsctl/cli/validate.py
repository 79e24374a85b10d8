from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlopsctl.cli.options import JsonOpt
from mlopsctl.cli.output import emit_json, err, out, stderr_is_terminal
from mlopsctl.errors import ExitCode


def validate(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Spec files or folders (default: every spec in the project)."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Check specs against their schemas; print every problem as file:line:column: message.
    Exit 3 when any spec is invalid."""
    from mlopsctl.project.validate import validate_specs

    report = validate_specs(list(paths or []))
    if json_out:
        emit_json(
            {
                "valid": report.ok,
                "files": [report.display(p) for p in report.files],
                "diagnostics": [d.as_dict() for d in report.diagnostics],
            }
        )
    else:
        for diagnostic in report.diagnostics:
            out(diagnostic.render())
        bad = len({d.path for d in report.diagnostics})
        if report.diagnostics:
            err(f"{len(report.diagnostics)} problem(s) in {bad} of {len(report.files)} spec(s)")
        elif not report.files:
            err("no mlopsctl specs found (files with 'apiVersion: mlopsctl/v1')")
        elif stderr_is_terminal():
            err(f"{len(report.files)} spec(s) valid")
    if not report.ok:
        raise typer.Exit(int(ExitCode.INVALID_SPEC))
