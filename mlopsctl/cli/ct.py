"""`mlopsctl ct`: continuous training. The work is in mlopsctl/ct/."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from mlopsctl.cli.options import JsonOpt
from mlopsctl.cli.output import emit_json, err, out

app = typer.Typer(
    help="Continuous training: decide whether to retrain (schedule, new data, drift, "
    "performance), and do it.",
    no_args_is_help=True,
)


@app.command("check")
def check(
    spec: Annotated[Path, typer.Argument(help="The Trigger spec.")],
    run: Annotated[
        bool, typer.Option("--run", help="Run the pipeline when retraining is due.")
    ] = False,
    exit_code: Annotated[
        bool,
        typer.Option(
            "--exit-code",
            help="Exit 4 when retraining is due and was not run (for a CI step to branch on).",
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Check a trigger: which conditions fired and why. Not due while a triggered run is still
    running (up to the spec's max_run). Exit 0 once checked (fired or not); with --run, 1 if
    the triggered run failed; 7 if another check claimed the trigger first."""
    from mlopsctl.app.retrain import check_trigger, raise_for_run
    from mlopsctl.cli.progress import StepProgress
    from mlopsctl.errors import CheckFailed

    progress = StepProgress() if run else None
    result = check_trigger(spec, run=run, progress=progress)
    if json_out:
        emit_json(result)
    else:
        _render(result)
    raise_for_run(result)
    if exit_code and result["due"] and not result["run"]:
        raise CheckFailed(
            f"trigger '{result['trigger']}' fired: retraining is due",
            "run it with: mlopsctl ct check SPEC --run",
        )


def _render(result: dict[str, Any]) -> None:
    running = result.get("running")
    busy = bool(running and not running["stale"])
    if result["due"]:
        head = "fired"
    elif result["fired"]:
        head = "fired, a triggered run is still running" if busy else "fired, cooling down"
    else:
        head = "not fired"
    out(f"trigger {result['trigger']}: {head}")
    for condition in result["conditions"]:
        mark = "FIRED" if condition["fired"] else "-"
        out(f"  {condition['condition']:<12} {mark:<6} {condition['why']}")
    cooldown = result.get("cooldown")
    if cooldown and cooldown["active"]:
        out(f"  {'cooldown':<12} {'ACTIVE':<6} until {cooldown['until']} ({cooldown['duration']})")
    if running:
        mark, note = ("ACTIVE", "taken as crashed from") if busy else ("STALE", "crashed? past")
        out(
            f"  {'running':<12} {mark:<6} since {running['started']} ({note} {running['stale_at']})"
        )
    outcome = result.get("run")
    if outcome:
        registered = outcome.get("registered") or {}
        version = (
            f", registered {registered['model']} v{registered['version']}" if registered else ""
        )
        out(f"run {outcome.get('id')}: {outcome.get('status')}{version}")
        if outcome.get("state_error"):
            err(f"warning: {outcome['state_error']}")
    elif result["due"]:
        err("retraining is due; run it with --run")
