"""The check of a trigger: which of its conditions fired, and why, and whether retraining is
due. It keeps no state of its own between calls except in the store (ct/state.py), so it can
run from cron, a scheduled CI job or a laptop alike.

Retraining is *due* when a condition fired, no cooldown holds, no triggered run is still
in progress (within max_run; see ct/conditions.py) and, with a `run.dataset`, the labelled data
holds something new (ct/data.py). Acting on a due check (claim the trigger, store the dataset,
run the pipeline, record the outcome, chain the release) spans services:
mlopsctl/app/retrain.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from mlopsctl.ct.conditions import (
    Condition,
    Cooldown,
    RunningClaim,
    check_cooldown,
    check_drift,
    check_max_run,
    check_new_data,
    check_performance,
    check_schedule,
    input_digests,
)
from mlopsctl.ct.context import MonitorFn, TriggerContext, load_context
from mlopsctl.ct.data import DataResult, Prepared, check_data
from mlopsctl.ct.state import RunOutcome
from mlopsctl.errors import NotFound
from mlopsctl.timeutil import stamp, utc_now

if TYPE_CHECKING:
    from mlopsctl.config import Project
    from mlopsctl.records.trigger_state import TriggerState
    from mlopsctl.store.base import ObjectStore


class Champion(TypedDict):
    version: Any
    run: str | None  # the id of the run that made it
    registered: str | None


class CheckResult(TypedDict):
    """A check of a trigger, as `mlopsctl ct check --json` prints it (keys in this order)."""

    trigger: str
    spec: str
    checked_at: str
    pipeline: str
    model: str | None  # name@alias
    champion: Champion | None
    conditions: list[Condition]
    fired: list[str]  # the conditions that fired
    cooldown: Cooldown | None
    running: RunningClaim | None
    data: DataResult | None  # run.dataset judged (only when otherwise due)
    due: bool
    why: str
    run: RunOutcome | None  # the run a due check started (app.retrain), else None
    state: TriggerState | None  # the trigger's state (after the run, if one was started)


@dataclass(frozen=True)
class TriggerCheck:
    """A check's result with what acting on it needs: the context it was made in, the
    data digests new_data saw (recorded with a claim) and the dataset built for the run."""

    context: TriggerContext
    result: CheckResult
    inputs: dict[str, str] | None
    prepared: Prepared | None = None

    @property
    def due(self) -> bool:
        return self.result["due"]

    def close(self) -> None:
        """Remove the dataset's scratch folder."""
        if self.prepared is not None:
            self.prepared.close()


@contextmanager
def open_check(
    spec_path: Path,
    *,
    now: datetime | None = None,
    project: Project | None = None,
    store: ObjectStore | None = None,
    monitor: MonitorFn | None = None,
) -> Iterator[TriggerContext]:
    """Load the Trigger spec at `spec_path` and what a check of it reads, at `now` (default:
    the current time; whole seconds, UTC). The project defaults to the spec's folder's; the
    store to the project's, opened here and closed on leaving."""
    from mlopsctl.config import load_project, open_project_store
    from mlopsctl.spec import load_spec

    moment = (now or utc_now()).astimezone(timezone.utc).replace(microsecond=0)
    if not spec_path.is_file():
        raise NotFound(
            f"no such trigger spec: {spec_path}", "give the path of a kind: Trigger file"
        )
    spec = load_spec(spec_path, kind="Trigger")
    project = project or load_project(spec_path.resolve().parent)
    own_store = store is None
    store = store or open_project_store(project)
    try:
        yield load_context(spec, spec_path, project, store, moment, monitor)
    finally:
        if own_store:
            store.close()


def check_trigger(
    spec_path: Path,
    *,
    now: datetime | None = None,
    project: Project | None = None,
    store: ObjectStore | None = None,
    monitor: MonitorFn | None = None,
) -> CheckResult:
    """Check the trigger in `spec_path` (see open_check): which conditions fired, and why.
    `monitor` replaces run_monitor (tests). Starts nothing: app.retrain.check_trigger acts
    on a due check."""
    with open_check(spec_path, now=now, project=project, store=store, monitor=monitor) as ctx:
        check = evaluate(ctx)
        check.close()
        return check.result


def evaluate(ctx: TriggerContext) -> TriggerCheck:
    """Evaluate every condition the trigger names, then the cooldown and a run in progress."""
    spec = ctx.spec
    running = check_max_run(ctx)
    conditions: list[Condition] = []
    if spec.get("schedule"):
        conditions.append(check_schedule(ctx))
    inputs: dict[str, str] | None = None
    if spec.get("new_data") is not None and spec.get("new_data") is not False:
        inputs = input_digests(ctx.plan)
        # A stale claim never recorded what its run read; it is no reference for new data.
        previous = None if running and running["stale"] else ctx.last_run
        conditions.append(check_new_data(ctx, inputs, previous))
    if spec.get("drift"):
        conditions.append(check_drift(ctx))
    if spec.get("performance"):
        conditions.append(check_performance(ctx))

    fired: list[str] = [c["condition"] for c in conditions if c["fired"]]
    cooldown = check_cooldown(ctx)
    in_progress = bool(running and not running["stale"])
    due = bool(fired) and not (cooldown and cooldown["active"]) and not in_progress
    data: DataResult | None = None
    prepared: Prepared | None = None
    if due and (spec.get("run") or {}).get("dataset"):
        # Only now: building the window reads the logs, which a quiet check need not do.
        data, prepared = check_data(ctx)
        due = data["enough"]
    result: CheckResult = {
        "trigger": ctx.name,
        "spec": str(ctx.spec_path),
        "checked_at": stamp(ctx.now),
        "pipeline": str(spec["pipeline"]),
        "model": f"{ctx.model}@{ctx.alias}" if ctx.model else None,
        "champion": champion_brief(ctx),
        "conditions": conditions,
        "fired": fired,
        "cooldown": cooldown,
        "running": running,
        "data": data,
        "due": due,
        "why": summary(conditions, cooldown, running, due, data),
        "run": None,
        "state": ctx.state,
    }
    return TriggerCheck(context=ctx, result=result, inputs=inputs, prepared=prepared)


def champion_brief(ctx: TriggerContext) -> Champion | None:
    """The champion as a check reports it."""
    champion = ctx.champion
    if champion is None:
        return None
    return {
        "version": champion["version"],
        "run": (champion.get("run") or {}).get("id"),
        "registered": champion.get("created"),
    }


def summary(
    conditions: list[Condition],
    cooldown: Cooldown | None,
    running: RunningClaim | None,
    due: bool,
    data: DataResult | None = None,
) -> str:
    """The check's `why`, in one line."""
    fired = [c for c in conditions if c["fired"]]
    text = "; ".join(f"{c['condition']}: {c['why']}" for c in fired)
    if running and not running["stale"]:
        busy = (
            f"a triggered run started at {running['started']} is still running "
            f"(taken as crashed from {running['stale_at']})"
        )
        return f"{busy}; would fire ({text})" if fired else busy
    if not fired:
        text = "no condition fired"
    elif not due and data is not None and not data["enough"]:
        text = f"would fire ({text}) but {data['why']}"
    elif not due and cooldown:
        text = f"would fire ({text}) but cooling down until {cooldown['until']}"
    if running:
        text += (
            f"; the triggered run started at {running['started']} did not finish within "
            f"max_run {running['max_run']} and is taken as crashed"
        )
    return text
