"""`mlopsctl logs`: upkeep of the serving logs in the store; parse and render only, the work is
in mlopsctl/serving/logs.py."""

from __future__ import annotations

from typing import Annotated

import typer

from mlopsctl.cli.options import JsonOpt, project_store
from mlopsctl.cli.output import emit_json, err, out
from mlopsctl.logformat import FEEDBACK, PREDICTIONS

app = typer.Typer(help="Serving logs in the store: compact them.", no_args_is_help=True)


@app.command("compact")
def compact(
    model: Annotated[str, typer.Argument(help="The model whose logs to compact.")],
    feedback: Annotated[
        bool, typer.Option("--feedback", help="Compact the feedback log, not the predictions.")
    ] = False,
    date: Annotated[
        str | None, typer.Option("--date", help="Only this partition (YYYY-MM-DD).")
    ] = None,
    min_files: Annotated[
        int, typer.Option("--min-files", help="Leave partitions with fewer files alone.")
    ] = 2,
    json_out: JsonOpt = False,
) -> None:
    """Merge each date partition's Parquet files into one file per schema, then delete the
    merged files (rows are never lost; a reader may briefly see one twice)."""
    from mlopsctl.serving.logs import compact_logs

    with project_store() as store:
        result = compact_logs(
            store,
            model,
            kind=FEEDBACK if feedback else PREDICTIONS,
            date=date,
            min_files=min_files,
        )
    if json_out:
        emit_json(result)
        return
    for part in result["partitions"]:
        files, written = part["files"], len(part["written"])
        out(f"{part['partition']}  {files} file(s) -> {written}, {part['rows']} rows")
    if not result["partitions"]:
        err("nothing to compact")
