"""`mlopsctl ct`: continuous training. The work is in mlopsctl/ct/."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from mlopsctl.cli.options import JsonOpt
from mlopsctl.cli.output import emit_json, err, out
from mlopsctl.errors import CheckFailed

app = typer.Typer(
    help="Continuous training: decide whether to retrain (schedule, new data, drift, "
    "performance, new labelled data), do it, and chain the release.",
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
    running (up to the spec's max_run), nor, with run.dataset, without new labelled data.
    Exit 0 once checked (fired or not); with --run, 1 if the triggered run failed, 4 if the
    release it chains (then:) failed its gates; 7 if another check claimed the trigger
    first; 130/143 if stopped by SIGINT/SIGTERM (the run is recorded as interrupted)."""
    from mlopsctl.app.retrain import check_trigger, raise_for_run
    from mlopsctl.cli.progress import StepProgress

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


@app.command("retry")
def retry(
    spec: Annotated[Path, typer.Argument(help="The Trigger spec.")],
    force: Annotated[
        bool, typer.Option("--force", help="Run it again even if the last run succeeded.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Run the trigger's last firing again on the same data (its dataset, params and data
    inputs), after a failed or interrupted triggered run, once the code is fixed. Conditions,
    cooldown and new labels are not judged again. Exit codes as for ct check --run."""
    from mlopsctl.app.retrain import raise_for_run, retry_trigger
    from mlopsctl.cli.progress import StepProgress

    result = retry_trigger(spec, force=force, progress=StepProgress())
    if json_out:
        emit_json(result)
    else:
        _render(result)
    raise_for_run(result)


def _render(result: dict[str, Any]) -> None:
    running = result.get("running")
    busy = bool(running and not running["stale"])
    if result.get("retry_of"):
        head = result["why"]
    elif result["due"]:
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
    data = result.get("data")
    if data:
        mark = "NEW" if data["enough"] else "-"
        out(f"  {'labels':<12} {mark:<6} {data['dataset']}: {data['why']}")
    outcome = result.get("run")
    if outcome:
        registered = outcome.get("registered") or {}
        if registered and not registered.get("new", True):
            version = f", identical to version {registered['version']}, nothing registered"
        elif registered:
            version = f", registered {registered['model']} v{registered['version']}"
        else:
            version = ""
        out(f"run {outcome.get('id')}: {outcome.get('status')}{version}")
        _render_then(outcome.get("then"))
        if outcome.get("state_error"):
            err(f"warning: {outcome['state_error']}")
    elif result["due"]:
        err("retraining is due; run it with --run")


def _render_then(then: dict[str, Any] | None) -> None:
    if not then:
        return
    if then.get("skipped"):
        out(f"then release {then['release']}: skipped ({then['skipped']})")
        return
    if "passed" in then:
        verdict = "passed" if then["passed"] else "FAILED"
        gates = ", ".join(f"{g['name']} {g['verdict']}" for g in then.get("gates") or [])
        out(f"then release {then['release']}: {then['candidate']} {verdict} ({gates})")
    promoted = then.get("promote")
    if promoted:
        where = f"{promoted['model']}@{promoted['alias']}"
        if promoted.get("unchanged"):
            out(f"then promote: {where} already at {promoted['version']}")
        else:
            out(f"then promote: {where}: {promoted.get('previous')} -> {promoted['version']}")
    if then.get("rollout"):
        out(f"then rollout: {then['rollout'].get('message')}")
    if then.get("error"):
        err(f"then: {then['error']}")
