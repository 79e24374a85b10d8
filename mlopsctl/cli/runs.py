from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mlopsctl.cli.options import JsonOpt, project_store
from mlopsctl.cli.output import emit_json, err, out
from mlopsctl.errors import UsageError
from mlopsctl.names import check_name

if TYPE_CHECKING:
    from collections.abc import Mapping

app = typer.Typer(help="Pipeline runs and experiments: list, show, compare.", no_args_is_help=True)


@app.command("list")
def list_(
    experiment: Annotated[
        str | None, typer.Option("--experiment", "-e", help="Only this experiment.")
    ] = None,
    limit: Annotated[int, typer.Option(help="Newest N runs (0: all).")] = 50,
    trials: Annotated[
        bool, typer.Option("--trials", help="Include tune trials (child runs).")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Runs, newest first."""
    from mlopsctl.runs import list_runs

    if experiment is not None:
        check_name("experiment", experiment)
    with project_store() as store:
        runs = list_runs(store, experiment=experiment, limit=limit or None, trials=trials)
    if json_out:
        emit_json(runs)
        return
    if not runs:
        err("no runs yet")
        return
    out(f"{'RUN':<26} {'EXPERIMENT':<16} {'STATUS':<11} {'SECONDS':>8}  METRICS")
    for r in runs:
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in _headline(r.get("metrics") or {}))
        seconds = r.get("duration_s")
        out(
            f"{r['id']:<26} {str(r.get('experiment'))[:16]:<16} {r.get('status', '?'):<11} "
            f"{seconds if seconds is not None else '':>8}  {metrics}"
        )


# Model-quality metrics first in the one-line listing; counts and timings after.
_FIRST = ("roc_auc", "accuracy", "f1", "rmse", "mae", "r2", "log_loss", "precision", "recall")


def _headline(metrics: dict[str, float], count: int = 4) -> list[tuple[str, float]]:
    def rank(item: tuple[str, float]) -> tuple[int, str]:
        name = item[0]
        return (_FIRST.index(name) if name in _FIRST else len(_FIRST), name)

    return sorted(metrics.items(), key=rank)[:count]


@app.command("show")
def show(
    run_id: Annotated[str, typer.Argument(help="Run id, a unique prefix of one, or 'latest'.")],
    json_out: JsonOpt = False,
) -> None:
    """One run: status, provenance, params, metrics and every step."""
    from mlopsctl.runs import load_run

    with project_store() as store:
        # A finished run, a run in progress or a tune trial: shown by the fields it has.
        record: Mapping[str, Any] = load_run(store, run_id)
    if json_out:
        emit_json(record)
        return
    git = record.get("git") or {}
    out(f"run        {record['id']}  ({record.get('status')})")
    out(
        f"pipeline   {record.get('pipeline')}  spec {record.get('spec', {}).get('path')}  "
        f"{record.get('spec', {}).get('digest', '')[:19]}"
    )
    out(f"experiment {record.get('experiment')}")
    if "heartbeat" in record:  # a run in progress, or abandoned (mlopsctl.runs.RunLease)
        out(f"started    {record.get('started')}  last heartbeat {record['heartbeat']}")
        out(f"owner      pid {record.get('pid')} on {record.get('host')}")
    else:
        out(f"started    {record.get('started')}  took {record.get('duration_s')} s")
    out(f"who/where  {record.get('user', {}).get('name')} on {record.get('where', {}).get('host')}")
    reason = record.get("reason")
    if reason:
        why = reason.get("why") or json.dumps(reason, sort_keys=True)
        by = f"trigger {reason['trigger']}: " if reason.get("trigger") else ""
        out(f"reason     {by}{why}")
    if git:
        dirty = " (dirty)" if git.get("dirty") else ""
        commit = (git.get("commit") or "")[:12] or "(no commit yet)"
        out(f"git        {commit}{dirty} {git.get('branch') or ''}")
    out("params     " + json.dumps(record.get("params"), sort_keys=True))
    for name, value in sorted((record.get("metrics") or {}).items()):
        out(f"metric     {name} = {value:.6g}")
    out("steps:")
    steps = record.get("steps") or {}
    for name in record.get("order") or list(steps):
        step = steps[name]
        outputs = ", ".join(
            f"{k}={v['digest'][7:19]}" for k, v in (step.get("outputs") or {}).items()
        )
        seconds = step.get("seconds")
        timing = f" {seconds:.2f} s" if isinstance(seconds, (int, float)) else ""
        out(f"  {name:<14} {step.get('status', '?'):<11}{timing:>9}  {outputs}")


@app.command("compare")
def compare(
    run_ids: Annotated[list[str], typer.Argument(help="Two or more run ids (or prefixes).")],
    plot: Annotated[
        str | None, typer.Option("--plot", help="Also write a PNG chart of the metrics.")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Params and metrics side by side; rows that differ are marked with '*'."""
    from mlopsctl.runs import compare_runs, load_run, plot_metrics

    if len(run_ids) < 2:
        raise UsageError("compare needs at least two runs", "e.g. mlopsctl runs compare RUN1 RUN2")
    with project_store() as store:
        records = [load_run(store, rid) for rid in run_ids]
    table = compare_runs(records)
    if plot:
        plot_metrics(table, plot)
    if json_out:
        emit_json(table)
        return
    ids = table["runs"]
    width = max(12, *(len(i) for i in ids))
    out(f"  {'':<28} " + " ".join(f"{i:>{width}}" for i in ids))
    for kind in ("params", "metrics"):
        for key, values in table[kind].items():
            mark = "*" if table["differs"][f"{kind}.{key}"] else " "
            cells = " ".join(f"{_cell(v):>{width}}" for v in values)
            out(f"{mark} {(kind[:-1] + ' ' + key)[:28]:<28} {cells}")
    if plot:
        err(f"wrote {plot}")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value) if not isinstance(value, (dict, list)) else json.dumps(value)
