"""Retrain when a trigger says so: the ct service's check, then on a due check the claim of
the trigger, the pipeline's run with the trigger as its reason, and the record of the outcome.

With `run=True` a due check first claims the trigger (compare-and-swap on its state, so of
two checks at once only one runs the pipeline; the other gets Conflict), then runs the
pipeline with the trigger as the run's `reason` (in the run record), then records the outcome
in the state, the history and the audit log (ct/state.py). A failed run counts as a started
run (for the schedule, the cooldown and new_data), so a pipeline that keeps failing is not
retried in a loop.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlopsctl.ct import (
    CheckResult,
    MonitorFn,
    RunOutcome,
    TriggerCheck,
    claim_trigger,
    evaluate,
    open_check,
    read_state,
    record_outcome,
)
from mlopsctl.errors import MlopsError
from mlopsctl.timeutil import stamp

if TYPE_CHECKING:
    from mlopsctl.config import Project
    from mlopsctl.store.base import ObjectStore


def check_trigger(
    spec_path: Path,
    *,
    run: bool = False,
    now: datetime | None = None,
    project: Project | None = None,
    store: ObjectStore | None = None,
    monitor: MonitorFn | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """Check the trigger in `spec_path` (mlopsctl.ct.check_trigger); with `run`, retrain when
    it is due. The result's `run` is then the started run's outcome and its `state` the
    trigger's state after it. `monitor` replaces run_monitor (tests); `progress` is the
    pipeline's progress display. Returns a ct CheckResult as a plain dict (for rendering)."""
    with open_check(spec_path, now=now, project=project, store=store, monitor=monitor) as ctx:
        check = evaluate(ctx)
        result: CheckResult = check.result
        if run and check.due:
            outcome = retrain(check, progress)
            result = {**result, "run": outcome, "state": read_state(ctx.store, ctx.name)[0]}
        return dict(result)


def retrain(check: TriggerCheck, progress: Any = None) -> RunOutcome:
    """Claim the trigger (Conflict when another check did since this one read its state), run
    the pipeline with the trigger as its reason, and record the outcome."""
    from mlopsctl.app.run import run_pipeline
    from mlopsctl.pipeline.executor import RunOptions

    ctx, result = check.context, check.result
    # Claim first: a second check racing this one loses here and runs nothing, and later
    # checks see the run in progress.
    firing = claim_trigger(ctx.store, result, ctx.now, ctx.etag, check.inputs)
    clock = time.monotonic()
    reason = {
        "trigger": result["trigger"],
        "spec": result["spec"],
        "firing": firing,
        "fired": result["fired"],
        "why": result["why"],
        "checked_at": result["checked_at"],
    }
    options = RunOptions(experiment=ctx.spec.get("experiment"), reason=reason)
    if progress is not None:
        options.progress = progress
    outcome: RunOutcome
    read: dict[str, str] = {}
    try:
        record = run_pipeline(
            ctx.pipeline_path, ctx.overrides, options=options, start=ctx.project.root
        )
        outcome = {
            "id": record.get("id"),
            "status": record.get("status"),
            "registered": record.get("registered"),
        }
        read = dict(record.get("data") or {})
        if record.get("status") != "succeeded":
            failed = [
                s for s, r in (record.get("steps") or {}).items() if r.get("status") == "failed"
            ]
            outcome["error"] = f"step(s) {', '.join(failed) or '?'} failed"
    except MlopsError as exc:
        outcome = {"id": None, "status": "failed", "registered": None, "error": exc.one_line()}
    ended = ctx.now + timedelta(seconds=round(time.monotonic() - clock))
    update: dict[str, Any] = {
        "status": outcome["status"],
        "run": outcome["id"],
        "ended": stamp(ended),
    }
    if check.inputs or read:
        # What the run hashed when it read its data, over what the check saw before it.
        update["inputs"] = {**(check.inputs or {}), **read}
    return record_outcome(ctx.store, result, firing, outcome, update)


def raise_for_run(result: Mapping[str, Any]) -> None:
    """MlopsError when a triggered run was started and did not succeed (exit 1)."""
    outcome = result.get("run")
    if outcome and outcome.get("status") != "succeeded":
        shown = outcome.get("id") or "(not recorded)"
        raise MlopsError(
            f"trigger '{result['trigger']}' started run {shown}, which failed: "
            f"{outcome.get('error') or outcome.get('status')}",
            f"see mlopsctl runs show {shown}" if outcome.get("id") else "fix it and check again",
        )
