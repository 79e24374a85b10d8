"""`mlopsctl monitor`: drift, data quality and performance checks against a model's baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlopsctl.cli.options import JsonOpt, project_store
from mlopsctl.cli.output import emit_json, err, out
from mlopsctl.errors import CheckFailed

app = typer.Typer(
    help="Monitoring: compare current data with the training baseline; report drift.",
    no_args_is_help=True,
)


@app.command("check")
def check(
    spec_path: Annotated[Path, typer.Argument(help="A Monitor spec (YAML).")],
    current: Annotated[
        str | None,
        typer.Option("--current", help="Check this data instead (file, folder, s3://, store:)."),
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write the HTML report to this file.")
    ] = None,
    baseline: Annotated[
        str | None,
        typer.Option(
            "--baseline",
            help="Compare with this profile JSON or dataset instead, or with previous_window "
            "(the window before the current one; needs current.time_column and window).",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Run every check; record a drift event; exit 0 when all pass, 4 on drift or a drop."""
    from mlopsctl.monitor import run_monitor
    from mlopsctl.monitor.report import summary_line, table

    result = run_monitor(spec_path, current=current, report=report, baseline=baseline)
    if json_out:
        emit_json(result)
    else:
        out(summary_line(result))
        for line in table(result):
            out(line)
    if result["report"]:
        err(f"report: {result['report']}")
    if result["failed"]:
        reasons = []
        if result["drift"]:
            reasons.append(f"drift in {', '.join(result['drifted_features'])}")
        if (result["prediction"] or {}).get("drifted"):
            reasons.append("prediction drift")
        if (result["performance"] or {}).get("failed"):
            reasons.append("performance " + "; ".join(result["performance"]["reasons"]))
        reasons += [f"{q['test']} failed" for q in result["quality"] if q["failed"]]
        if (result.get("outliers") or {}).get("failed"):
            reasons.append(f"outlier share {result['outliers']['share']:.3f} over the limit")
        if (result.get("attribution") or {}).get("failed"):
            drifted = ", ".join(result["attribution"]["drifted_features"])
            reasons.append(f"attribution drift in {drifted}")
        raise CheckFailed(
            f"monitor {result['monitor']} failed: " + "; ".join(reasons),
            "see the table above" + (" and the report" if result["report"] else ""),
        )


@app.command("profile")
def profile(
    data: Annotated[str, typer.Argument(help="Dataset: file, folder, s3:// or store: prefix.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Profile JSON to write.")],
    columns: Annotated[
        list[str] | None, typer.Option("--column", "-c", help="Only these columns (repeat).")
    ] = None,
) -> None:
    """Profile a dataset as a baseline (for a spec's `baseline: FILE.json`)."""
    import json

    from mlopsctl.config import load_project
    from mlopsctl.monitor import profile_data

    project = load_project()
    with project_store(project) as store:
        result = profile_data(data, project=project, store=store, columns=columns or None)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    err(f"profiled {result['rows']} rows, {len(result['features'])} columns -> {output}")
