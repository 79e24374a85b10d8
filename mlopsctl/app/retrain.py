"""Retrain when a trigger says so: the ct service's check, then on a due check the claim of
the trigger, the pipeline's run with the trigger as its reason, the record of the outcome, and
the release the trigger chains (`then:`).

With `run=True` a due check first claims the trigger (compare-and-swap on its state, so of
two checks at once only one runs the pipeline; the other gets Conflict), then stores the
dataset the check built from the serving logs (`run.dataset`, see ct/data.py) and runs the
pipeline with the trigger's `run.params` filled from it and the trigger as the run's `reason`
(in the run record, and copied into the version it registers), then records the outcome in the
state, the history and the audit log (ct/state.py). A failed or interrupted run counts as a
started run (for the schedule, the cooldown, new_data and new labels), so a pipeline that keeps
failing is not retried in a loop: `retry_trigger` (`mlopsctl ct retry`) runs the last firing
again on the same data once the code is fixed. A run stopped by SIGINT or SIGTERM is recorded
as `interrupted` before the signal's exit.

A retrain that yields the very model a version already holds registers nothing (one artifact,
one version: mlopsctl/registry/register.py); the outcome's `registered` says which version with
`new: false`, and nothing is chained. Otherwise, with `then: {release: SPEC}`, the new version
is judged by that Release spec's gates (`release check --candidate N`); when they pass,
`promote: true` moves the champion alias (`release promote`) and `rollout: true` starts or
advances a canary/A-B rollout by one step (`release rollout`). What happened is the outcome's
`then`.
"""

from __future__ import annotations

import signal
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
    champion_brief,
    check_max_run,
    claim_trigger,
    evaluate,
    merged,
    open_check,
    overrides,
    project_path,
    read_state,
    record_outcome,
    run_params,
)
from mlopsctl.datasets import record_key, save_built
from mlopsctl.errors import CheckFailed, Conflict, MlopsError, NotFound, UsageError
from mlopsctl.spec import load_spec
from mlopsctl.timeutil import stamp

if TYPE_CHECKING:
    from mlopsctl.config import Project
    from mlopsctl.ct import TriggerContext
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
        try:
            result: CheckResult = check.result
            if run and check.due:
                outcome = retrain(check, progress)
                result = {**result, "run": outcome, "state": read_state(ctx.store, ctx.name)[0]}
            return dict(result)
        finally:
            check.close()


def retry_trigger(
    spec_path: Path,
    *,
    force: bool = False,
    now: datetime | None = None,
    project: Project | None = None,
    store: ObjectStore | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """Run the trigger's last firing again, on the data it had (its dataset and params, the
    data digests new_data saw): after a failed or interrupted triggered run, once the code is
    fixed. Conditions, cooldown and new labels are not judged again. A succeeded last run is
    run again only with `force`; a run still in progress (within max_run) never."""
    with open_check(spec_path, now=now, project=project, store=store) as ctx:
        last = ctx.last_run
        if not last:
            raise NotFound(
                f"trigger '{ctx.name}' has not started a run yet: there is nothing to retry",
                "check it with: mlopsctl ct check SPEC --run",
            )
        running = check_max_run(ctx)
        if running and not running["stale"]:
            raise Conflict(
                f"trigger '{ctx.name}': the run started at {running['started']} is still running",
                f"wait for it (taken as crashed from {running['stale_at']})",
            )
        status = str(last.get("status"))
        if status == "succeeded" and not force:
            raise UsageError(
                f"trigger '{ctx.name}': the last triggered run ({last.get('run')}) succeeded, "
                "so there is nothing to retry",
                "--force runs it again on the same data",
            )
        how = f"{status} run {last.get('run')}" if last.get("run") else status
        result: CheckResult = {
            "trigger": ctx.name,
            "spec": str(ctx.spec_path),
            "checked_at": stamp(ctx.now),
            "pipeline": str(ctx.spec["pipeline"]),
            "model": f"{ctx.model}@{ctx.alias}" if ctx.model else None,
            "champion": champion_brief(ctx),
            "conditions": [],
            "fired": list(last.get("fired") or []),
            "cooldown": None,
            "running": running,
            "data": None,
            "due": True,
            "why": f"retry of firing {last.get('firing')} ({how}, started {last.get('started')})",
            "run": None,
            "state": ctx.state,
        }
        check = TriggerCheck(context=ctx, result=result, inputs=last.get("inputs"))
        outcome = retrain(check, progress, retry=last)
        state = read_state(ctx.store, ctx.name)[0]
        return {**result, "retry_of": last.get("firing"), "run": outcome, "state": state}


def retrain(
    check: TriggerCheck, progress: Any = None, retry: Mapping[str, Any] | None = None
) -> RunOutcome:
    """Claim the trigger (Conflict when another check did since this one read its state),
    store the dataset the check built, run the pipeline with the trigger as its reason, chain
    the release, and record the outcome. `retry`: the last firing's state (its dataset and
    params are used again)."""
    from mlopsctl.app.run import run_pipeline
    from mlopsctl.pipeline.executor import RunOptions

    ctx, result = check.context, check.result
    then = ctx.spec.get("then") or {}
    if then.get("promote") and then.get("rollout"):
        raise UsageError(
            f"trigger '{ctx.name}': then: has both promote and rollout",
            "promote moves the alias at once, rollout step by step: keep one",
        )
    dataset, params, built = _run_data(check, retry)
    extra: dict[str, Any] = {}
    if dataset is not None:
        extra["dataset"] = {
            k: dataset.get(k)
            for k in ("name", "digest", "record", "rows", "labels_through", "window")
        }
    if params:
        extra["params"] = params
    if retry is not None:
        extra["retry_of"] = retry.get("firing")
    # Claim first: a second check racing this one loses here and runs nothing, and later
    # checks see the run in progress.
    firing = claim_trigger(ctx.store, result, ctx.now, ctx.etag, check.inputs, extra)
    if built is not None:
        save_built(ctx.store, built, ctx.now)
    clock = time.monotonic()
    reason: dict[str, Any] = {
        "trigger": result["trigger"],
        "spec": result["spec"],
        "firing": firing,
        "fired": result["fired"],
        "why": result["why"],
        "checked_at": result["checked_at"],
    }
    if dataset is not None:
        reason["dataset"] = dataset
    if retry is not None:
        reason["retry_of"] = retry.get("firing")
    options = RunOptions(experiment=ctx.spec.get("experiment"), reason=reason)
    if progress is not None:
        options.progress = progress
    outcome: RunOutcome
    read: dict[str, str] = {}
    wanted = overrides(merged(dict(ctx.spec.get("params") or {}), params))

    def finish(outcome: RunOutcome) -> RunOutcome:
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

    try:
        record = run_pipeline(ctx.pipeline_path, wanted, options=options, start=ctx.project.root)
    except KeyboardInterrupt as exc:
        # SIGINT or SIGTERM (RunInterrupted, with the run it stopped): recorded, then re-raised
        # for the exit code.
        signum = int(getattr(exc, "signum", 0) or signal.SIGINT)
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = ""
        stopped: RunOutcome = {
            "id": getattr(exc, "run_id", None),
            "status": "interrupted",
            "registered": None,
            "error": f"interrupted by {name or 'a signal'}",
        }
        if name:
            stopped["signal"] = name
        finish(stopped)
        raise
    except MlopsError as exc:
        outcome = {"id": None, "status": "failed", "registered": None, "error": exc.one_line()}
        return finish(outcome)
    outcome = {
        "id": record.get("id"),
        "status": record.get("status"),
        "registered": record.get("registered"),
    }
    read = dict(record.get("data") or {})
    if record.get("status") != "succeeded":
        failed = [s for s, r in (record.get("steps") or {}).items() if r.get("status") == "failed"]
        outcome["error"] = f"step(s) {', '.join(failed) or '?'} failed"
    elif ctx.spec.get("then"):
        outcome["then"] = chain(ctx, firing, outcome.get("registered"))
    return finish(outcome)


def _run_data(
    check: TriggerCheck, retry: Mapping[str, Any] | None
) -> tuple[dict[str, Any] | None, dict[str, Any], Any]:
    """(the dataset's summary, the run's params, the built table still to store)."""
    ctx = check.context
    if retry is not None:
        dataset = dict(retry["dataset"]) if retry.get("dataset") else None
        return dataset, dict(retry.get("params") or {}), None
    built = check.prepared.built if check.prepared is not None else None
    dataset = None
    if built is not None:
        built.key = record_key(built.record["name"], built.digest)
        dataset = built.summary()
    return dataset, run_params(ctx, dataset), built


def chain(ctx: TriggerContext, firing: str, registered: Mapping[str, Any] | None) -> dict[str, Any]:
    """The trigger's `then:` after a succeeded run that registered `registered`: the release
    check of the new version, then (when it passed) its promotion or a rollout step. Errors
    are kept in the result, not raised: the run and its version stand whatever happens here."""
    then = dict(ctx.spec["then"])
    done: dict[str, Any] = {"release": str(then["release"])}
    if not registered:
        done["skipped"] = "the run registered no model"
        return done
    if not registered.get("new", True):
        done["skipped"] = (
            f"identical to version {registered['version']}: nothing registered, nothing to check"
        )
        return done
    from mlopsctl.release.gates import run_check

    version = int(registered["version"])
    done["candidate"] = f"{registered['model']}:{version}"
    try:
        path = project_path(ctx.project, str(then["release"]), "then.release")
        spec = load_spec(path, kind="Release")
        if spec["model"] != registered["model"]:
            raise UsageError(
                f"then.release judges {spec['model']}, but the run registered "
                f"{registered['model']}",
                "name a Release spec of the model the pipeline registers",
            )
        spec = {**spec, "candidate": str(version)}
        checked = run_check(
            ctx.store,
            spec,
            spec_path=str(then["release"]),
            candidate=str(version),
            root=ctx.project.root,
            project=ctx.project,
        )
        done.update(
            passed=bool(checked.get("passed")),
            event=checked.get("id"),
            gates=[
                {"name": g.get("name"), "verdict": g.get("verdict")}
                for g in checked.get("gates") or []
            ],
        )
        if not checked.get("passed"):
            return done
        why = f"trigger {ctx.name} firing {firing}: release check passed"
        if then.get("promote"):
            from mlopsctl.release.actions import promote

            move = promote(ctx.store, spec, reason=why)
            done["promote"] = {
                k: move.get(k) for k in ("model", "alias", "version", "previous", "unchanged")
            }
        elif then.get("rollout"):
            done["rollout"] = _rollout_step(ctx, spec, why)
    except CheckFailed as exc:
        done["passed"] = done.get("passed", False)
        done["error"] = exc.one_line()
    except MlopsError as exc:
        done["error"] = exc.one_line()
    return done


def _rollout_step(ctx: TriggerContext, spec: dict[str, Any], why: str) -> dict[str, Any]:
    try:
        from mlopsctl.release import rollout
    except ImportError:  # a build of mlopsctl without rollouts
        raise UsageError(
            "then.rollout needs release rollouts (mlopsctl.release.rollout), which this "
            "mlopsctl lacks",
            "use then.promote, or run mlopsctl release rollout yourself",
        ) from None
    outcome = rollout.advance(ctx.store, spec, reason=why)
    state = outcome.state
    return {
        "action": outcome.action,
        "status": state.get("status"),
        "message": outcome.message,
    }


def raise_for_run(result: Mapping[str, Any]) -> None:
    """MlopsError when a triggered run was started and did not succeed (exit 1);
    CheckFailed (exit 4) when it succeeded but the release it chains failed its gates."""
    outcome = result.get("run")
    if outcome and outcome.get("status") != "succeeded":
        shown = outcome.get("id") or "(not recorded)"
        raise MlopsError(
            f"trigger '{result['trigger']}' started run {shown}, which failed: "
            f"{outcome.get('error') or outcome.get('status')}",
            f"see mlopsctl runs show {shown}; once fixed, mlopsctl ct retry SPEC runs it again"
            if outcome.get("id")
            else "fix it, then: mlopsctl ct retry SPEC",
        )
    then = (outcome or {}).get("then") or {}
    if then.get("error") and "passed" not in then:
        raise MlopsError(f"trigger '{result['trigger']}': then: {then['error']}")
    if "passed" in then and not then["passed"]:
        failed = [g["name"] for g in then.get("gates") or [] if g.get("verdict") != "pass"]
        raise CheckFailed(
            f"trigger '{result['trigger']}': {then.get('candidate')} failed release "
            f"{then['release']}"
            + (f" ({', '.join(failed)})" if failed else "")
            + (f": {then['error']}" if then.get("error") else ""),
            "the version is registered; it was not promoted",
        )
    if then.get("rollout", {}).get("status") in ("rolled_back", "aborted"):
        raise CheckFailed(
            f"trigger '{result['trigger']}': the rollout of {then.get('candidate')} was "
            f"{then['rollout']['status'].replace('_', ' ')}",
            "all traffic is back on the champion",
        )
