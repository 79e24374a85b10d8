"""Continuous training: decide whether a pipeline should retrain now, and optionally run it.

`check_trigger` reads a Trigger spec, evaluates each condition it names, and says which fired
and why. It keeps no state of its own between calls except in the store, so it can run from
cron, a scheduled CI job or a laptop alike:

    ct/<trigger>/state.json                 the last trigger-started run (compare-and-swap)
    ct/<trigger>/history/<time>-<id>.json   one record per firing acted upon (put-if-absent)

The conditions, with `now` the time of the check (UTC):

- `schedule` (cron, UTC; see ct/cron.py): due when a fire time of the expression lies after
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
  trigger-started run, the check says so ("cooling down until T") and retraining is not due.
- A run in progress: while the last trigger-started run is still `running` (its claim in the
  state), the check says so ("a triggered run started at T is still running") and retraining
  is not due, whatever fired. A claim older than `max_run` (default 6h) is taken for a crashed
  run: the check reports it as stale and may claim the trigger over it.

Retraining is *due* when a condition fired and no cooldown holds. With `run=True` a due check
first claims the trigger (compare-and-swap on the state, so of two checks at once only one
runs the pipeline; the other gets Conflict), then runs the pipeline with the trigger as the
run's `reason` (in the run record), then records the outcome in the state, the history and
the audit log (event type `trigger`). The outcome goes into the state by re-reading it and
swapping in the finished claim (a few tries), only while the claim is still this run's (a
check that took over a stale claim owns the state from then on); the history record and the
audit event are written whatever happens to that state write. A failed run counts as a
started run (for the schedule, the cooldown and new_data), so a pipeline that keeps failing
is not retried in a loop.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlopsctl.errors import Conflict, MlopsError, NotFound, UsageError

if TYPE_CHECKING:
    from mlopsctl.config import Project
    from mlopsctl.store.base import ObjectStore

PREFIX = "ct/"
DEFAULT_ALIAS = "champion"
DEFAULT_MAX_RUN = "6h"
# Re-reads of the state when recording a run's outcome: only a check taking over a stale
# claim, or a hand edit, writes it meanwhile, so a few tries are plenty.
STATE_TRIES = 5
CONDITIONS = ("schedule", "new_data", "drift", "performance")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

MonitorFn = Callable[..., dict[str, Any]]


def state_key(name: str) -> str:
    return f"{PREFIX}{name}/state.json"


def history_prefix(name: str) -> str:
    return f"{PREFIX}{name}/history/"


def parse_duration(text: str) -> timedelta:
    """'30m', '6h', '1d', '2w' (the schema's pattern) as a timedelta."""
    text = str(text).strip()
    if len(text) < 2 or not text[:-1].isdigit() or text[-1] not in _UNITS:
        raise UsageError(f"bad duration '{text}'", "write a whole number and a unit: 30m, 6h, 1d")
    return timedelta(seconds=int(text[:-1]) * _UNITS[text[-1]])


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """An ISO time as written in records ('2026-01-05T03:00:00Z'), as an aware UTC datetime."""
    moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


# -- state --------------------------------------------------------------------------------
def read_state(store: ObjectStore, name: str) -> tuple[dict[str, Any] | None, str | None]:
    """The trigger's state and its etag; (None, None) when it never ran."""
    try:
        data, etag = store.get_versioned(state_key(name))
    except NotFound:
        return None, None
    return dict(json.loads(data)), etag


def write_state(
    store: ObjectStore, name: str, state: dict[str, Any], expected_etag: str | None
) -> str:
    """Replace the state only if it is still the one read (etag; None: still absent)."""
    from mlopsctl.pipeline.hashing import canonical_json

    try:
        return store.compare_and_swap(state_key(name), canonical_json(state), expected_etag)
    except Conflict:
        raise Conflict(
            f"trigger '{name}' was claimed by another check since this one read its state",
            "another `mlopsctl ct check --run` is acting on it; check again later",
        ) from None


def list_history(store: ObjectStore, name: str) -> list[dict[str, Any]]:
    keys = sorted(k for k in store.list(history_prefix(name)) if k.endswith(".json"))
    return [dict(json.loads(store.get(k))) for k in keys]


# -- the check ----------------------------------------------------------------------------
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
    """Evaluate the trigger in `spec_path` (see the module docstring); with `run`, act on it.

    Returns {trigger, spec, checked_at, pipeline, model, champion, conditions: [{condition,
    fired, why, ...}], fired: [names], cooldown: {duration, until, active} | None, due, run:
    None | {id, status, registered, error}, state}. `monitor` replaces run_monitor (tests).
    """
    from mlopsctl.config import load_project, open_project_store
    from mlopsctl.spec import load_spec

    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(microsecond=0)
    if not spec_path.is_file():
        raise NotFound(
            f"no such trigger spec: {spec_path}", "give the path of a kind: Trigger file"
        )
    spec = load_spec(spec_path, kind="Trigger")
    project = project or load_project(spec_path.resolve().parent)
    own_store = store is None
    store = store or open_project_store(project)
    try:
        return _check(spec, spec_path, project, store, now, run, monitor, progress)
    finally:
        if own_store:
            store.close()


def _check(
    spec: dict[str, Any],
    spec_path: Path,
    project: Project,
    store: ObjectStore,
    now: datetime,
    run: bool,
    monitor: MonitorFn | None,
    progress: Any,
) -> dict[str, Any]:
    from mlopsctl.pipeline.plan import load_plan

    name = str(spec["name"])
    pipeline_path = _project_path(project, spec["pipeline"], "pipeline")
    overrides = _overrides(spec.get("params") or {})
    plan = load_plan(pipeline_path, overrides, project_root=project.root)
    model, alias = _model_ref(spec, plan.register)
    champion = _champion(store, model, alias)
    state, etag = read_state(store, name)
    last = (state or {}).get("last_run")
    last_started = parse_time(last["started"]) if last and last.get("started") else None
    running = _running(last, now, spec.get("max_run") or DEFAULT_MAX_RUN)

    conditions: list[dict[str, Any]] = []
    if spec.get("schedule"):
        conditions.append(_schedule(spec, spec_path, now, last_started, champion))
    inputs: dict[str, str] | None = None
    if spec.get("new_data") is not None and spec.get("new_data") is not False:
        inputs = _input_digests(plan)
        # A stale claim never recorded what its run read; it is no reference for new data.
        previous = None if running and running["stale"] else last
        found = _new_data(spec, plan, store, inputs, champion, model, alias, previous)
        conditions.append(found)
    monitors: dict[Path, dict[str, Any]] = {}
    since = last_started
    if since is None and champion and champion.get("created"):
        since = parse_time(champion["created"])
    for kind in ("drift", "performance"):
        if spec.get(kind):
            found = _monitored(kind, spec[kind], project, store, monitor, monitors, since)
            conditions.append(found)

    fired = [c["condition"] for c in conditions if c["fired"]]
    cooldown = None
    if spec.get("cooldown"):
        length = parse_duration(spec["cooldown"])
        until = last_started + length if last_started else None
        active = bool(until and now < until)
        cooldown = {
            "duration": spec["cooldown"],
            "until": iso(until) if until else None,
            "active": active,
        }
    in_progress = bool(running and not running["stale"])
    due = bool(fired) and not (cooldown and cooldown["active"]) and not in_progress
    result: dict[str, Any] = {
        "trigger": name,
        "spec": str(spec_path),
        "checked_at": iso(now),
        "pipeline": str(spec["pipeline"]),
        "model": f"{model}@{alias}" if model else None,
        "champion": None
        if champion is None
        else {
            "version": champion["version"],
            "run": (champion.get("run") or {}).get("id"),
            "registered": champion.get("created"),
        },
        "conditions": conditions,
        "fired": fired,
        "cooldown": cooldown,
        "running": running,
        "due": due,
        "why": _summary(conditions, cooldown, running, due),
        "run": None,
        "state": state,
    }
    if run and due:
        result["run"] = _act(
            spec, result, pipeline_path, project, store, now, etag, inputs, progress
        )
        result["state"] = read_state(store, name)[0]
    return result


def _running(last: dict[str, Any] | None, now: datetime, max_run: str) -> dict[str, Any] | None:
    """The last trigger-started run when its claim still says running: {firing, started,
    max_run, stale_at, stale}; stale once max_run has passed since it started (a crashed
    check never finishes its claim)."""
    if not last or last.get("status") != "running" or not last.get("started"):
        return None
    started = parse_time(last["started"])
    stale_at = started + parse_duration(max_run)
    return {
        "firing": last.get("firing"),
        "started": iso(started),
        "max_run": max_run,
        "stale_at": iso(stale_at),
        "stale": now >= stale_at,
    }


def _summary(
    conditions: list[dict[str, Any]],
    cooldown: dict[str, Any] | None,
    running: dict[str, Any] | None,
    due: bool,
) -> str:
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
    elif not due and cooldown:
        text = f"would fire ({text}) but cooling down until {cooldown['until']}"
    if running:
        text += (
            f"; the triggered run started at {running['started']} did not finish within "
            f"max_run {running['max_run']} and is taken as crashed"
        )
    return text


def _act(
    spec: dict[str, Any],
    result: dict[str, Any],
    pipeline_path: Path,
    project: Project,
    store: ObjectStore,
    now: datetime,
    etag: str | None,
    inputs: dict[str, str] | None,
    progress: Any,
) -> dict[str, Any]:
    import time

    from mlopsctl.events import record_event
    from mlopsctl.pipeline import run_pipeline
    from mlopsctl.pipeline.executor import RunOptions
    from mlopsctl.pipeline.hashing import canonical_json

    name = result["trigger"]
    firing_id = f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"
    last_run: dict[str, Any] = {
        "firing": firing_id,
        "started": iso(now),
        "status": "running",
        "run": None,
        "fired": result["fired"],
    }
    if inputs:
        last_run["inputs"] = inputs
    claim: dict[str, Any] = {
        "trigger": name,
        "last_run": last_run,
        "firings": int((result["state"] or {}).get("firings") or 0) + 1,
    }
    if result.get("running"):  # a stale claim, taken over: keep a trace of it
        claim["abandoned"] = {k: result["running"][k] for k in ("firing", "started")}
    # Claim first: a second check racing this one loses here and runs nothing, and later
    # checks see the run in progress.
    write_state(store, name, claim, etag)
    clock = time.monotonic()
    reason = {
        "trigger": name,
        "spec": result["spec"],
        "firing": firing_id,
        "fired": result["fired"],
        "why": result["why"],
        "checked_at": result["checked_at"],
    }
    options = RunOptions(experiment=spec.get("experiment"), reason=reason)
    if progress is not None:
        options.progress = progress
    outcome: dict[str, Any]
    read: dict[str, str] = {}
    try:
        record = run_pipeline(
            pipeline_path,
            _overrides(spec.get("params") or {}),
            options=options,
            start=project.root,
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
    ended = now + timedelta(seconds=round(time.monotonic() - clock))
    update: dict[str, Any] = {
        "status": outcome["status"],
        "run": outcome["id"],
        "ended": iso(ended),
    }
    if inputs or read:
        # What the run hashed when it read its data, over what the check saw before it.
        update["inputs"] = {**(inputs or {}), **read}
    try:
        problem = finish_state(store, name, firing_id, update)
    except MlopsError as exc:
        problem = exc.one_line()
    if problem:
        outcome["state_error"] = problem
    entry = {k: v for k, v in result.items() if k not in ("state", "run")}
    store.put_if_absent(
        f"{history_prefix(name)}{firing_id}.json",
        canonical_json({**entry, "firing": firing_id, "run": outcome}),
    )
    record_event(
        store,
        "trigger",
        trigger=name,
        firing=firing_id,
        model=(result["model"] or "").partition("@")[0] or None,
        fired=result["fired"],
        why=result["why"],
        run=outcome["id"],
        status=outcome["status"],
        registered=outcome.get("registered"),
    )
    return outcome


def finish_state(
    store: ObjectStore, name: str, firing: str, update: dict[str, Any], tries: int = STATE_TRIES
) -> str | None:
    """Merge `update` into the state's last_run if that is still the claim `firing` made:
    re-read and compare-and-swap, up to `tries` times. Returns None once written, or why it
    was not (another check took the claim over, or the state kept changing)."""
    from mlopsctl.pipeline.hashing import canonical_json

    for _ in range(tries):
        state, etag = read_state(store, name)
        last = dict((state or {}).get("last_run") or {})
        if state is None or last.get("firing") != firing:
            holder = last.get("firing") or "none"
            return (
                f"the state of trigger '{name}' no longer holds firing {firing} "
                f"(it holds {holder}: taken over as stale?); the outcome is in its history"
            )
        merged = {**state, "last_run": {**last, **update}}
        try:
            store.compare_and_swap(state_key(name), canonical_json(merged), etag)
        except Conflict:
            continue
        return None
    return f"the state of trigger '{name}' changed {tries} times while recording firing {firing}"


def raise_for_run(result: dict[str, Any]) -> None:
    """MlopsError when a triggered run was started and did not succeed (exit 1)."""
    outcome = result.get("run")
    if outcome and outcome.get("status") != "succeeded":
        shown = outcome.get("id") or "(not recorded)"
        raise MlopsError(
            f"trigger '{result['trigger']}' started run {shown}, which failed: "
            f"{outcome.get('error') or outcome.get('status')}",
            f"see mlopsctl runs show {shown}" if outcome.get("id") else "fix it and check again",
        )


# -- helpers ------------------------------------------------------------------------------
def _project_path(project: Project, text: str, what: str) -> Path:
    path = Path(text)
    path = path if path.is_absolute() else project.root / path
    if not path.is_file():
        raise NotFound(
            f"the trigger's {what} spec {text} does not exist (looked in {project.root})",
            f"paths in a Trigger are relative to the project root; fix '{what}'",
        )
    return path


def _overrides(params: dict[str, Any]) -> list[str]:
    from mlopsctl.pipeline.params import flatten

    # JSON is YAML, so each value reads back as it was written (numbers stay numbers).
    return [f"{key}={json.dumps(value)}" for key, value in flatten(params).items()]


def _model_ref(spec: dict[str, Any], register: dict[str, Any] | None) -> tuple[str | None, str]:
    from mlopsctl.registry import check_alias, check_name

    text = spec.get("model")
    if not text:
        name = (register or {}).get("model")
        return (check_name(str(name)) if name else None), DEFAULT_ALIAS
    name, _, alias = str(text).partition("@")
    return check_name(name), check_alias(alias or DEFAULT_ALIAS)


def _champion(store: ObjectStore, model: str | None, alias: str) -> dict[str, Any] | None:
    from mlopsctl.registry import Ref, resolve

    if not model:
        return None
    try:
        return resolve(store, Ref(model, alias=alias))
    except NotFound:
        return None


def _no_champion(model: str | None, alias: str) -> str:
    if not model:
        return "no model to compare with (name one with model:, or register: in the pipeline)"
    return f"{model}@{alias} does not exist yet"


def _schedule(
    spec: dict[str, Any],
    spec_path: Path,
    now: datetime,
    last_started: datetime | None,
    champion: dict[str, Any] | None,
) -> dict[str, Any]:
    from mlopsctl.ct.cron import CronError, parse_cron

    try:
        cron = parse_cron(spec["schedule"])
    except CronError as exc:
        from mlopsctl.errors import Diagnostic, SpecError
        from mlopsctl.spec import load_yaml

        loaded = load_yaml(spec_path)
        line, column = loaded.value_position(("schedule",))
        raise SpecError([Diagnostic(str(spec_path), line, column, exc.one_line())]) from None
    previous = cron.previous(now)
    base: dict[str, Any] = {
        "condition": "schedule",
        "cron": cron.expression,
        "last_fire": iso(previous),
        "next_fire": iso(cron.next(now)),
    }
    if last_started is not None:
        since, what = last_started, "the last triggered run"
    elif champion and champion.get("created"):
        since, what = parse_time(champion["created"]), "the champion's registration"
    else:
        return {**base, "fired": True, "why": f"due at {iso(previous)}; never run, no champion"}
    if previous > since:
        why = f"due at {iso(previous)}, after {what} ({iso(since)})"
        return {**base, "fired": True, "why": why, "since": iso(since)}
    why = f"next at {base['next_fire']}; last fire time {iso(previous)} is not after {what}"
    return {**base, "fired": False, "why": why, "since": iso(since)}


def _input_digests(plan: Any) -> dict[str, str]:
    """The digests of every data input of the plan, as step.param (as a run records them)."""
    from mlopsctl.pipeline.executor import data_digests

    found: dict[str, str] = {}
    for step_name, step in plan.steps.items():
        for key, digest in data_digests(step, plan.project_root).items():
            found[f"{step_name}.{key}"] = digest
    return found


def _new_data(
    spec: dict[str, Any],
    plan: Any,
    store: ObjectStore,
    inputs: dict[str, str],
    champion: dict[str, Any] | None,
    model: str | None,
    alias: str,
    previous: dict[str, Any] | None,
) -> dict[str, Any]:
    """Fires when the watched inputs differ from the champion's run and from the last
    triggered run (`previous`, the state's last_run), each by min_new_rows rows if set."""
    options = spec["new_data"] if isinstance(spec["new_data"], dict) else {}
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
    base: dict[str, Any] = {"condition": "new_data", "inputs": current}
    # The references the data must have moved away from: (who, digests, run record).
    references: list[tuple[str, dict[str, Any], dict[str, Any] | None]] = []
    if champion is not None:
        recorded = dict((champion.get("data") or {}).get("sources") or {})
        run_record = _champion_run(store, champion)
        if run_record is not None:
            recorded = {**recorded, **(run_record.get("data") or {})}
        version, run_id = champion["version"], (champion.get("run") or {}).get("id")
        references.append((f"{model}@{alias} (v{version}, run {run_id})", recorded, run_record))
    if previous and previous.get("inputs"):
        run_id = previous.get("run")
        who = (
            f"the last triggered run ({previous.get('status')}, started {previous.get('started')}"
            + (f", run {run_id})" if run_id else ")")
        )
        references.append((who, dict(previous["inputs"]), _load_run(store, run_id)))
    if not references:
        return {**base, "fired": True, "why": _no_champion(model, alias)}
    minimum = int(options.get("min_new_rows") or 0)
    counted: dict[str, int] = {}
    whys: list[str] = []
    result = dict(base)
    for index, (who, recorded, run_record) in enumerate(references):
        changed = {k: v for k, v in current.items() if recorded.get(k) != v}
        if not changed:
            return {**base, "fired": False, "why": f"same data as {who}"}
        shown = ", ".join(
            f"{k} {_short(recorded.get(k))} -> {_short(v)}" for k, v in sorted(changed.items())
        )
        why = f"{shown} since {who}"
        if index == 0:
            result["changed"] = sorted(changed)
        if minimum:
            for key in changed:
                if key not in counted:
                    counted[key] = _count_rows(plan, key)
            new_rows = sum(counted[k] - _rows_then(run_record, k) for k in changed)
            # The fewest new rows over the references is what min_new_rows is held to.
            result["new_rows"] = min(new_rows, result.get("new_rows", new_rows))
            if new_rows < minimum:
                why = (
                    f"data changed since {who}, but {new_rows} new row(s) < min_new_rows {minimum}"
                )
                return {**result, "fired": False, "why": why}
            why += f" ({new_rows} new rows)"
        whys.append(why)
    return {**result, "fired": True, "why": "; ".join(whys)}


def _short(digest: str | None) -> str:
    if not digest:
        return "(none)"
    return digest.removeprefix("sha256:")[:12]


def _champion_run(store: ObjectStore, champion: dict[str, Any]) -> dict[str, Any] | None:
    return _load_run(store, (champion.get("run") or {}).get("id"))


def _load_run(store: ObjectStore, run_id: Any) -> dict[str, Any] | None:
    from mlopsctl.runs import load_run

    if not run_id:
        return None
    try:
        return load_run(store, str(run_id))
    except NotFound:
        return None


def _rows_then(run_record: dict[str, Any] | None, key: str) -> int:
    step = (run_record or {}).get("steps", {}).get(key.partition(".")[0]) or {}
    rows = (step.get("info") or {}).get("rows")
    return int(rows) if isinstance(rows, (int, float)) else 0


def _count_rows(plan: Any, key: str) -> int:
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


def _monitored(
    kind: str,
    options: dict[str, Any],
    project: Project,
    store: ObjectStore,
    monitor: MonitorFn | None,
    done: dict[Path, dict[str, Any]],
    since: datetime | None,
) -> dict[str, Any]:
    path = _project_path(project, options["monitor"], f"{kind}.monitor")
    if options.get("source") == "events":
        return _recorded(kind, options, path, store, since)
    if path not in done:
        if monitor is None:
            from mlopsctl.monitor import run_monitor

            monitor = run_monitor
        done[path] = monitor(path, project=project, store=store)
    return _judge(kind, options, done[path])


def _recorded(
    kind: str, options: dict[str, Any], path: Path, store: ObjectStore, since: datetime | None
) -> dict[str, Any]:
    """Judge the findings `mlopsctl monitor check` recorded (audit events of type drift) for
    this monitor since `since`: fires if any of them meets the condition; reports the latest
    that does, or else the latest of all."""
    from mlopsctl.events import list_events
    from mlopsctl.spec import load_spec

    name = str(load_spec(path, kind="Monitor")["name"])
    floor = iso(since) if since else None
    events = [
        e
        for e in list_events(store, since=floor[:10] if floor else None, kind="drift")
        if e.get("monitor") == name and (floor is None or str(e.get("time")) > floor)
    ]
    window = f"since {floor}" if floor else "ever"
    if not events:
        why = f"no check of monitor {name} recorded {window}"
        return {"condition": kind, "monitor": str(options["monitor"]), "fired": False, "why": why}
    judged = [
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
        )
        for e in events
    ]
    times = {e.get("id"): e.get("time") for e in events}
    fired = [j for j in judged if j["fired"]]
    chosen = (fired or judged)[-1]
    count = f"{len(fired)} of {len(events)}" if fired else f"none of {len(events)}"
    why = f"{count} check(s) of {name} {window}; at {times[chosen['event']]}: {chosen['why']}"
    return {**chosen, "why": why, "source": "events"}


def _judge(kind: str, options: dict[str, Any], found: dict[str, Any]) -> dict[str, Any]:
    base: dict[str, Any] = {"condition": kind, "monitor": str(options["monitor"])}
    if found.get("event"):
        base["event"] = found["event"]
    if found.get("report"):
        base["report"] = str(found["report"])
    if kind == "drift":
        share = float(found.get("drift_share") or 0.0)
        drifted = list(found.get("drifted_features") or [])
        base.update(drift_share=share, drifted_features=drifted)
        listed = ", ".join(drifted[:5]) + (" ..." if len(drifted) > 5 else "")
        detail = f"{len(drifted)} feature(s) drifted ({share:.0%})" + (
            f": {listed}" if listed else ""
        )
        minimum = options.get("min_share")
        if minimum is not None:
            fired = share >= float(minimum) and bool(drifted)
            rule = f"{'>=' if fired else '<'} min_share {float(minimum):.0%}"
            return {**base, "fired": fired, "why": f"{detail}, {rule}"}
        predictions = bool((found.get("prediction") or {}).get("drifted"))
        fired = bool(found.get("drift")) or predictions
        verdict = "drift found" if found.get("drift") else "no data drift"
        also = "; the model's predictions drifted" if predictions else ""
        return {**base, "fired": fired, "why": f"{verdict}: {detail}{also}"}
    performance = found.get("performance")
    if not performance or performance.get("value") is None:
        return {**base, "fired": False, "why": "no ground truth to measure performance yet"}
    value = float(performance["value"])
    metric = performance.get("metric") or "metric"
    base.update(metric=metric, value=value)
    low, high = options.get("min"), options.get("max")
    if low is not None or high is not None:
        below = low is not None and value < float(low)
        above = high is not None and value > float(high)
        bound = f"min {low}" if below else f"max {high}" if above else "its bounds"
        fired = below or above
        verb = "outside" if fired else "within"
        return {**base, "fired": fired, "why": f"{metric} {value:.4g} {verb} {bound}"}
    fired = bool(performance.get("failed"))
    baseline = performance.get("baseline")
    against = f" (baseline {float(baseline):.4g})" if baseline is not None else ""
    verdict = "dropped" if fired else "holds"
    return {**base, "fired": fired, "why": f"{metric} {verdict}: {value:.4g}{against}"}
