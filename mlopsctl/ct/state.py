"""A trigger's state and history in the store.

    ct/<trigger>/state.json                 the last trigger-started run (compare-and-swap)
    ct/<trigger>/history/<time>-<id>.json   one record per firing acted upon (put-if-absent)

A check that acts first *claims* the trigger: it swaps a `running` last_run into the state
against the etag it read, so of two checks at once only one gets on (the other gets
Conflict), and later checks see the run in progress. A claim older than max_run is stale and
a check may claim over it (the old one is kept as `abandoned`). The outcome of the run goes
into the state by re-reading it and swapping in the finished claim (a few tries), only while
the claim is still this one's; the history record and the audit event (type `trigger`) are
written whatever happens to that state write.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypedDict

from mlopsctl.digest import canonical_json
from mlopsctl.errors import Conflict, MlopsError, NotFound
from mlopsctl.names import check_name
from mlopsctl.records import trigger_firing, trigger_state
from mlopsctl.timeutil import stamp

if TYPE_CHECKING:
    from mlopsctl.ct.conditions import RunningClaim
    from mlopsctl.ct.trigger import CheckResult
    from mlopsctl.records.trigger_firing import TriggerFiring
    from mlopsctl.records.trigger_state import TriggerState
    from mlopsctl.store.base import ObjectStore

PREFIX = "ct/"
# Re-reads of the state when recording a run's outcome: only a check taking over a stale
# claim, or a hand edit, writes it meanwhile, so a few tries are plenty.
STATE_TRIES = 5


class _RunOutcome(TypedDict):
    id: str | None
    status: str | None
    registered: dict[str, Any] | None


class RunOutcome(_RunOutcome, total=False):
    """What became of a trigger-started run (a check result's `run`)."""

    error: str  # why it failed
    state_error: str  # why its outcome could not be written into the state
    signal: str  # the signal that interrupted it (status interrupted)
    then: dict[str, Any]  # what the trigger's then: chained after it (app.retrain)


def state_key(name: str) -> str:
    return f"{PREFIX}{check_name('trigger', name)}/state.json"


def history_prefix(name: str) -> str:
    return f"{PREFIX}{check_name('trigger', name)}/history/"


def read_state(store: ObjectStore, name: str) -> tuple[TriggerState | None, str | None]:
    """The trigger's state and its etag; (None, None) when it never ran."""
    try:
        data, etag = store.get_versioned(state_key(name))
    except NotFound:
        return None, None
    return trigger_state.from_json(data), etag


def write_state(
    store: ObjectStore, name: str, state: dict[str, Any], expected_etag: str | None
) -> str:
    """Replace the state only if it is still the one read (etag; None: still absent)."""
    try:
        return store.compare_and_swap(state_key(name), canonical_json(state), expected_etag)
    except Conflict:
        raise Conflict(
            f"trigger '{name}' was claimed by another check since this one read its state",
            "another `mlopsctl ct check --run` is acting on it; check again later",
        ) from None


def list_history(store: ObjectStore, name: str) -> list[TriggerFiring]:
    keys = sorted(k for k in store.list(history_prefix(name)) if k.endswith(".json"))
    return [trigger_firing.from_json(store.get(k)) for k in keys]


def new_firing_id(now: datetime) -> str:
    """A firing's id: its time, then a random part (two checks in one second differ)."""
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


def claim_trigger(
    store: ObjectStore,
    result: CheckResult,
    now: datetime,
    etag: str | None,
    inputs: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """Claim the trigger for a run starting `now`, after the check `result`: swap a running
    last_run into the state read with `etag` (Conflict when another check wrote it since).
    `inputs` are the data digests the check saw; `extra` more facts of the run kept with the
    claim (its dataset and params, which firing it retries). Returns the firing's id."""
    firing = new_firing_id(now)
    last_run: dict[str, Any] = {
        "firing": firing,
        "started": stamp(now),
        "status": "running",
        "run": None,
        "fired": result["fired"],
    }
    if inputs:
        last_run["inputs"] = inputs
    last_run.update(extra or {})
    claim: dict[str, Any] = {
        "trigger": result["trigger"],
        "last_run": last_run,
        "firings": int(result["state"].get("firings", 0) if result["state"] else 0) + 1,
    }
    stale: RunningClaim | None = result["running"]
    if stale:  # a stale claim, taken over: keep a trace of it
        claim["abandoned"] = {"firing": stale["firing"], "started": stale["started"]}
    write_state(store, result["trigger"], claim, etag)
    return firing


def finish_state(
    store: ObjectStore, name: str, firing: str, update: dict[str, Any], tries: int = STATE_TRIES
) -> str | None:
    """Merge `update` into the state's last_run if that is still the claim `firing` made:
    re-read and compare-and-swap, up to `tries` times. Returns None once written, or why it
    was not (another check took the claim over, or the state kept changing)."""
    for _ in range(tries):
        state, etag = read_state(store, name)
        last: dict[str, Any] = dict(state.get("last_run") or {}) if state is not None else {}
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


def record_outcome(
    store: ObjectStore,
    result: CheckResult,
    firing: str,
    outcome: RunOutcome,
    update: dict[str, Any],
) -> RunOutcome:
    """Record what became of the run `firing` claimed: `update` merged into the state's
    last_run (finish_state; why it could not be goes into the outcome as state_error), then,
    whatever happened to that, the history record and the `trigger` audit event."""
    from mlopsctl.events import record_event

    name = result["trigger"]
    try:
        problem = finish_state(store, name, firing, update)
    except MlopsError as exc:
        problem = exc.one_line()
    if problem:
        outcome["state_error"] = problem
    entry = {k: v for k, v in result.items() if k not in ("state", "run")}
    store.put_if_absent(
        f"{history_prefix(name)}{firing}.json",
        canonical_json({**entry, "firing": firing, "run": outcome}),
    )
    record_event(
        store,
        "trigger",
        trigger=name,
        firing=firing,
        model=(result["model"] or "").partition("@")[0] or None,
        fired=result["fired"],
        why=result["why"],
        run=outcome["id"],
        status=outcome["status"],
        registered=outcome.get("registered"),
    )
    return outcome
