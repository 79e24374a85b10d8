"""The conditions of a trigger, one function each, at the check's `now` (UTC):

- `schedule` (cron, UTC; see mlopsctl/cron.py): due when a fire time of the expression lies after
  the start of the last trigger-started run and at or before `now`. Never run by this
  trigger: after the registration of the current champion (`model`, default the pipeline's
  `register.model` @ `champion`); no champion either: due.
- `new_data`: the content digests of the pipeline's data inputs (each step's file parameters,
  like `ingest.path`, with the trigger's `params` applied; hashed as the pipeline does for its
  cache) differ both from the digests recorded by the run that produced the current champion
  and from those of the last trigger-started run (kept in the state; succeeded or failed, so a
  retrain that release gates did not promote, or one that failed, is not repeated on the same
  data). With `min_new_rows`, the changed inputs must also hold at least that many more rows
  than each of those runs read. No champion: compared with the last triggered run only; never
  run either: fires.
- `drift`: the named Monitor spec, run now (`mlopsctl.monitor.run_monitor`, recording its
  `drift` event as `monitor check` does), found data drift or prediction drift; with
  `min_share`, at least that share of features drifted instead (the monitor's rule ignored).
- `performance`: the named Monitor spec found the model's metric out of its bounds
  (`performance.failed`); with `min`/`max`, the metric's value is held to those instead. No
  ground truth in the window: does not fire.
- With `source: events`, `drift` and `performance` do not run the monitor: they judge the
  findings earlier `mlopsctl monitor check` runs of it recorded (audit events of type `drift`)
  since the last trigger-started run (never run: since the champion's registration), and fire
  if any of them meets the condition.
- `cooldown`: when any condition fires within this long after the start of the last
  trigger-started run, retraining is not due ("cooling down until T").
- `max_run` (default 6h): while the last trigger-started run is still `running` (its claim in
  the state), retraining is not due; a claim older than max_run is taken for a crashed run
  (stale), which a check may claim over.

Each returns a typed dict, as the check reports it (JSON, keys in this order).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypedDict, cast

from mlopsctl.ct.context import TriggerContext, project_path
from mlopsctl.errors import NotFound, UsageError
from mlopsctl.timeutil import parse_duration, parse_time, stamp

if TYPE_CHECKING:
    from mlopsctl.pipeline.plan import PipelinePlan
    from mlopsctl.store.base import ObjectStore

CONDITIONS = ("schedule", "new_data", "drift", "performance")
DEFAULT_MAX_RUN = "6h"


class _Fired(TypedDict):
    fired: bool
    why: str


class _Schedule(_Fired):
    condition: Literal["schedule"]
    cron: str
    last_fire: str
    next_fire: str


class ScheduleResult(_Schedule, total=False):
    since: str  # the time fire times must come after (absent: never run, no champion)


class _NewData(_Fired):
    condition: Literal["new_data"]
    inputs: dict[str, str]  # the watched inputs' digests now


class NewDataResult(_NewData, total=False):
    changed: list[str]  # the inputs that differ from the first reference
    new_rows: int  # with min_new_rows: the fewest new rows over the references


class _Monitored(_Fired):
    condition: Literal["drift", "performance"]
    monitor: str  # the Monitor spec, as the trigger names it


class MonitorResult(_Monitored, total=False):
    event: str  # the monitor check's drift event
    report: str
    drift_share: float
    drifted_features: list[str]
    metric: str
    value: float
    source: Literal["events"]  # judged from recorded monitor checks


Condition = ScheduleResult | NewDataResult | MonitorResult


class Cooldown(TypedDict):
    duration: str  # as the spec writes it
    until: str | None  # None: never run
    active: bool


class RunningClaim(TypedDict):
    """The last trigger-started run while its claim still says running."""

    firing: str | None
    started: str
    max_run: str
    stale_at: str
    stale: bool  # max_run has passed since it started: taken for crashed


# -- schedule -----------------------------------------------------------------------------
def check_schedule(ctx: TriggerContext) -> ScheduleResult:
    from mlopsctl.cron import CronError, parse_cron

    try:
        cron = parse_cron(ctx.spec["schedule"])
    except CronError as exc:
        from mlopsctl.errors import Diagnostic, SpecError
        from mlopsctl.spec import load_yaml

        loaded = load_yaml(ctx.spec_path)
        line, column = loaded.value_position(("schedule",))
        raise SpecError([Diagnostic(str(ctx.spec_path), line, column, exc.one_line())]) from None
    previous = cron.previous(ctx.now)
    next_fire = stamp(cron.next(ctx.now))

    def found(fired: bool, why: str, since: datetime | None = None) -> ScheduleResult:
        result: ScheduleResult = {
            "condition": "schedule",
            "cron": cron.expression,
            "last_fire": stamp(previous),
            "next_fire": next_fire,
            "fired": fired,
            "why": why,
        }
        if since is not None:
            result["since"] = stamp(since)
        return result

    if ctx.last_started is not None:
        since, what = ctx.last_started, "the last triggered run"
    elif ctx.champion_registered is not None:
        since, what = ctx.champion_registered, "the champion's registration"
    else:
        return found(True, f"due at {stamp(previous)}; never run, no champion")
    if previous > since:
        return found(True, f"due at {stamp(previous)}, after {what} ({stamp(since)})", since)
    why = f"next at {next_fire}; last fire time {stamp(previous)} is not after {what}"
    return found(False, why, since)


# -- new data -----------------------------------------------------------------------------
def input_digests(plan: PipelinePlan) -> dict[str, str]:
    """The digests of every data input of the plan, as step.param (as a run records them)."""
    from mlopsctl.pipeline.executor import data_digests

    found: dict[str, str] = {}
    for step_name, step in plan.steps.items():
        for key, digest in data_digests(step, plan.project_root).items():
            found[f"{step_name}.{key}"] = digest
    return found


def check_new_data(
    ctx: TriggerContext, inputs: dict[str, str], previous: dict[str, Any] | None
) -> NewDataResult:
    """Fires when the watched `inputs` differ from the champion's run and from the last
    triggered run (`previous`, the state's last_run), each by min_new_rows rows if set."""
    options = ctx.spec["new_data"] if isinstance(ctx.spec["new_data"], dict) else {}
    plan = ctx.plan
    current = dict(inputs)
    wanted = options.get("inputs")
    if wanted:
        unknown = [w for w in wanted if w not in current]
        if unknown:
            raise UsageError(
                f"new_data.inputs names {', '.join(unknown)}, not a data input of {plan.name}",
                f"its data inputs: {', '.join(sorted(current)) or 'none'}",
            )
        current = {k: v for k, v in current.items() if k in wanted}
    if not current:
        raise UsageError(
            f"pipeline {plan.name} reads no data files, so new_data has nothing to watch",
            "give a step a file parameter (like ingest's path), or drop new_data",
        )

    def found(
        fired: bool, why: str, changed: list[str] | None = None, new_rows: int | None = None
    ) -> NewDataResult:
        result: dict[str, Any] = {"condition": "new_data", "inputs": current}
        if changed is not None:
            result["changed"] = changed
        if new_rows is not None:
            result["new_rows"] = new_rows
        result.update(fired=fired, why=why)
        return cast(NewDataResult, result)

    references = _references(ctx, previous)
    if not references:
        return found(True, _no_champion(ctx.model, ctx.alias))
    minimum = int(options.get("min_new_rows") or 0)
    counted: dict[str, int] = {}
    whys: list[str] = []
    first_changed: list[str] | None = None
    fewest: int | None = None
    for who, recorded, run_record in references:
        changed = {k: v for k, v in current.items() if recorded.get(k) != v}
        if not changed:
            return found(False, f"same data as {who}")
        shown = ", ".join(
            f"{k} {_short(recorded.get(k))} -> {_short(v)}" for k, v in sorted(changed.items())
        )
        why = f"{shown} since {who}"
        if first_changed is None:
            first_changed = sorted(changed)
        if minimum:
            for key in changed:
                if key not in counted:
                    counted[key] = _count_rows(plan, key)
            new_rows = sum(counted[k] - _rows_then(run_record, k) for k in changed)
            # The fewest new rows over the references is what min_new_rows is held to.
            fewest = new_rows if fewest is None else min(new_rows, fewest)
            if new_rows < minimum:
                why = (
                    f"data changed since {who}, but {new_rows} new row(s) < min_new_rows {minimum}"
                )
                return found(False, why, first_changed, fewest)
            why += f" ({new_rows} new rows)"
        whys.append(why)
    return found(True, "; ".join(whys), first_changed, fewest)


# (who, the digests it recorded, its run record)
_Reference = tuple[str, dict[str, Any], dict[str, Any] | None]


def _references(ctx: TriggerContext, previous: dict[str, Any] | None) -> list[_Reference]:
    """The data the inputs must have moved away from: the champion's run's, then the last
    triggered run's."""
    references: list[_Reference] = []
    champion = ctx.champion
    if champion is not None:
        recorded = dict((champion.get("data") or {}).get("sources") or {})
        run_id = (champion.get("run") or {}).get("id")
        run_record = _load_run(ctx.store, run_id)
        if run_record is not None:
            recorded = {**recorded, **(run_record.get("data") or {})}
        who = f"{ctx.model}@{ctx.alias} (v{champion['version']}, run {run_id})"
        references.append((who, recorded, run_record))
    if previous and previous.get("inputs"):
        run_id = previous.get("run")
        who = (
            f"the last triggered run ({previous.get('status')}, started {previous.get('started')}"
            + (f", run {run_id})" if run_id else ")")
        )
        references.append((who, dict(previous["inputs"]), _load_run(ctx.store, run_id)))
    return references


def _no_champion(model: str | None, alias: str) -> str:
    if not model:
        return "no model to compare with (name one with model:, or register: in the pipeline)"
    return f"{model}@{alias} does not exist yet"


def _short(digest: str | None) -> str:
    if not digest:
        return "(none)"
    return digest.removeprefix("sha256:")[:12]


def _load_run(store: ObjectStore, run_id: Any) -> dict[str, Any] | None:
    from mlopsctl.runs import load_run

    if not run_id:
        return None
    try:
        return cast("dict[str, Any]", load_run(store, str(run_id)))
    except NotFound:
        return None


def _rows_then(run_record: dict[str, Any] | None, key: str) -> int:
    step = (run_record or {}).get("steps", {}).get(key.partition(".")[0]) or {}
    rows = (step.get("info") or {}).get("rows")
    return int(rows) if isinstance(rows, (int, float)) else 0


def _count_rows(plan: PipelinePlan, key: str) -> int:
    step_name, _, param = key.partition(".")
    value = str(plan.steps[step_name].params.get(param))
    if "://" in value:
        raise UsageError(
            f"min_new_rows cannot count the rows of remote data {value}",
            "drop min_new_rows for remote inputs",
        )
    path = Path(value)
    path = path if path.is_absolute() else plan.project_root / path
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return sum(count_rows(p) for p in files)


def count_rows(path: Path) -> int:
    """Rows of a Parquet file (from its footer) or a CSV/TSV file (lines after the header,
    counted in streamed chunks)."""
    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    lines, last = 0, b"\n"
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    if last != b"\n":
        lines += 1  # a last line without its newline
    return max(0, lines - 1)


# -- drift and performance ------------------------------------------------------------------
def monitor_window_start(ctx: TriggerContext) -> datetime | None:
    """Since when recorded monitor checks count: the last triggered run's start, else the
    champion's registration."""
    return ctx.last_started or ctx.champion_registered


def check_drift(ctx: TriggerContext) -> MonitorResult:
    return _monitored(ctx, "drift")


def check_performance(ctx: TriggerContext) -> MonitorResult:
    return _monitored(ctx, "performance")


def _monitored(ctx: TriggerContext, kind: Literal["drift", "performance"]) -> MonitorResult:
    options: dict[str, Any] = ctx.spec[kind]
    path = project_path(ctx.project, options["monitor"], f"{kind}.monitor")
    if options.get("source") == "events":
        return _recorded(ctx, kind, options, path)
    if path not in ctx.monitor_runs:
        monitor = ctx.monitor
        if monitor is None:
            from mlopsctl.monitor import run_monitor

            monitor = run_monitor
        ctx.monitor_runs[path] = monitor(path, project=ctx.project, store=ctx.store)
    return _judge(kind, options, ctx.monitor_runs[path])


def _recorded(
    ctx: TriggerContext, kind: Literal["drift", "performance"], options: dict[str, Any], path: Path
) -> MonitorResult:
    """Judge the findings `mlopsctl monitor check` recorded (audit events of type drift) for
    this monitor since the window's start: fires if any of them meets the condition; reports
    the latest that does, or else the latest of all."""
    from mlopsctl.events import list_events
    from mlopsctl.spec import load_spec

    name = str(load_spec(path, kind="Monitor")["name"])
    since = monitor_window_start(ctx)
    floor = stamp(since) if since else None
    events = [
        e
        for e in list_events(ctx.store, since=floor[:10] if floor else None, kind="drift")
        if e.get("monitor") == name and (floor is None or str(e.get("time")) > floor)
    ]
    window = f"since {floor}" if floor else "ever"
    if not events:
        why = f"no check of monitor {name} recorded {window}"
        return {"condition": kind, "monitor": str(options["monitor"]), "fired": False, "why": why}
    judged = [
        (
            e.get("time"),
            _judge(
                kind,
                options,
                {
                    "drift": e.get("drift"),
                    "drift_share": e.get("drift_share"),
                    "drifted_features": e.get("drifted_features"),
                    "prediction": {"drifted": e.get("prediction_drift")},
                    "performance": e.get("performance"),
                    "event": e.get("id"),
                    "report": e.get("report"),
                },
            ),
        )
        for e in events
    ]
    fired = [j for j in judged if j[1]["fired"]]
    at, chosen = (fired or judged)[-1]
    count = f"{len(fired)} of {len(events)}" if fired else f"none of {len(events)}"
    chosen["why"] = f"{count} check(s) of {name} {window}; at {at}: {chosen['why']}"
    chosen["source"] = "events"
    return chosen


def _judge(
    kind: Literal["drift", "performance"], options: dict[str, Any], found: dict[str, Any]
) -> MonitorResult:
    """The condition's verdict on one monitor result."""
    extra: dict[str, Any] = {}
    if found.get("event"):
        extra["event"] = found["event"]
    if found.get("report"):
        extra["report"] = str(found["report"])

    def result(fired: bool, why: str, **more: Any) -> MonitorResult:
        judged: dict[str, Any] = {"condition": kind, "monitor": str(options["monitor"])}
        judged.update(extra)
        judged.update(more)
        judged.update(fired=fired, why=why)
        return cast(MonitorResult, judged)

    if kind == "drift":
        share = float(found.get("drift_share") or 0.0)
        drifted = list(found.get("drifted_features") or [])
        listed = ", ".join(drifted[:5]) + (" ..." if len(drifted) > 5 else "")
        detail = f"{len(drifted)} feature(s) drifted ({share:.0%})" + (
            f": {listed}" if listed else ""
        )
        minimum = options.get("min_share")
        if minimum is not None:
            fired = share >= float(minimum) and bool(drifted)
            rule = f"{'>=' if fired else '<'} min_share {float(minimum):.0%}"
            why = f"{detail}, {rule}"
        else:
            predictions = bool((found.get("prediction") or {}).get("drifted"))
            fired = bool(found.get("drift")) or predictions
            verdict = "drift found" if found.get("drift") else "no data drift"
            also = "; the model's predictions drifted" if predictions else ""
            why = f"{verdict}: {detail}{also}"
        return result(fired, why, drift_share=share, drifted_features=drifted)
    performance = found.get("performance")
    if not performance or performance.get("value") is None:
        return result(False, "no ground truth to measure performance yet")
    value = float(performance["value"])
    metric = performance.get("metric") or "metric"
    low, high = options.get("min"), options.get("max")
    if low is not None or high is not None:
        below = low is not None and value < float(low)
        above = high is not None and value > float(high)
        bound = f"min {low}" if below else f"max {high}" if above else "its bounds"
        fired = below or above
        verb = "outside" if fired else "within"
        return result(fired, f"{metric} {value:.4g} {verb} {bound}", metric=metric, value=value)
    fired = bool(performance.get("failed"))
    baseline = performance.get("baseline")
    against = f" (baseline {float(baseline):.4g})" if baseline is not None else ""
    verdict = "dropped" if fired else "holds"
    why = f"{metric} {verdict}: {value:.4g}{against}"
    return result(fired, why, metric=metric, value=value)


# -- cooldown and max_run -------------------------------------------------------------------
def check_cooldown(ctx: TriggerContext) -> Cooldown | None:
    """The cooldown after the last triggered run's start; None when the spec sets none."""
    duration = ctx.spec.get("cooldown")
    if not duration:
        return None
    length = parse_duration(duration, "cooldown")
    started = ctx.last_started
    until = started + length if started else None
    return {
        "duration": duration,
        "until": stamp(until) if until else None,
        "active": bool(until and ctx.now < until),
    }


def check_max_run(ctx: TriggerContext) -> RunningClaim | None:
    """The last trigger-started run when its claim still says running; stale once max_run
    has passed since it started (a crashed check never finishes its claim)."""
    last = ctx.last_run
    if not last or last.get("status") != "running" or not last.get("started"):
        return None
    max_run = str(ctx.spec.get("max_run") or DEFAULT_MAX_RUN)
    started = parse_time(last["started"])
    stale_at = started + parse_duration(max_run, "max_run")
    return {
        "firing": last.get("firing"),
        "started": stamp(started),
        "max_run": max_run,
        "stale_at": stamp(stale_at),
        "stale": ctx.now >= stale_at,
    }
