"""Canary and A/B rollouts: a resumable state machine that moves traffic to a candidate step by
step, judged at every step on live traffic read from the store (analysis.py).

The state lives in the store, ``rollouts/<model>/<release>.json``, written only by
compare-and-swap: every transition (start, advance, hold, promote, roll back, abort) is one
conditional write of the whole state, so of two runners that judged the same state only one
moves it; the other gets Conflict (exit 7) and nothing it computed is applied. A call advances
at most one step, so `mlopsctl release rollout SPEC` can run from cron or CI; ``watch`` calls it
until the rollout ends.

One call (``advance``):
  * no rollout yet (or the last one ended and the candidate or its passed check is new): the
    same preconditions as `release promote` (the candidate's latest check of this release
    passed against the current champion, approvals in), then the first step's split is written
    to the deployment record that `mlopsctl serve` follows
    (``deployments/<model>/<deployment>.json``: the champion alias at 100 - p, the candidate's
    version at p);
  * running: the deployment record is put back to the step's split if someone changed it, the
    checks are judged on the window since the step began (look ``k``, see analysis.py), and
    - a failed check rolls back: the champion alias gets all traffic (the alias itself never
      moved), the state ends ``rolled_back``, and the caller exits 4;
    - every check passed and the hold is met (``hold.duration`` since the step began and
      ``hold.min_requests`` candidate requests): the next step's split, or after the last
      step the promotion: the alias moves by compare-and-swap from the champion the rollout
      started with to the candidate, then the deployment returns to one arm (the alias);
    - otherwise (inconclusive, the hold not met): the look is recorded and nothing moves;
  * ``promoting`` (a promotion that stopped half way): finished, each part only if not done;
  * ended (``done``, ``rolled_back``, ``aborted``): reported as it is.

Every transition is a ``rollout`` audit event (action start, advance, rollback, abort,
promote, done); the alias move is also the usual ``alias_move`` and ``promotion`` events.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from mlopsctl import registry
from mlopsctl.digest import canonical_json
from mlopsctl.errors import CheckFailed, Conflict, NotFound, UsageError
from mlopsctl.events import record_event
from mlopsctl.names import check_name
from mlopsctl.records import rollout as rollout_kind
from mlopsctl.release import ab, analysis  # noqa: F401 - importing ab registers type: ab
from mlopsctl.release.actions import latest_check
from mlopsctl.release.gates import approval_gate, approvals_for, candidate_ref, champion_alias
from mlopsctl.serving.arms import ArmSpec, arms_of, read_deployment, set_traffic
from mlopsctl.timeutil import parse_duration, parse_time, stamp, utc_now

if TYPE_CHECKING:
    from mlopsctl.records.rollout import RolloutState
    from mlopsctl.store.base import ObjectStore

ROLLOUTS = "rollouts/"
TERMINAL = frozenset({"done", "rolled_back", "aborted"})
STRATEGIES = ("direct", "canary", "ab")
DEFAULT_STEPS = {"canary": [1.0, 5.0, 25.0, 50.0, 100.0], "ab": [50.0]}
DEFAULT_HOLD = {"duration": "5m", "min_requests": 200}
CHAMPION_LOOKBACK = timedelta(hours=1)
# The Release spec's name grammar (release.schema.json): it becomes part of the state's key.
_RELEASE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.ASCII)


# -- the plan: what the spec asks for ------------------------------------------------------


@dataclass
class Plan:
    model: str
    release: str
    strategy: str
    steps: list[float]
    hold: timedelta
    min_requests: int
    analysis: list[dict[str, Any]]
    alpha: float
    alias: str
    deployment: str | None

    @property
    def deployment_name(self) -> str:
        return self.deployment or self.model


def strategy_of(spec: dict[str, Any]) -> str:
    """direct, canary or ab (``replace``, the old name of direct, counts as direct)."""
    value = str((spec.get("promote") or {}).get("strategy") or "direct")
    return "direct" if value == "replace" else value


def plan_of(spec: dict[str, Any]) -> Plan:
    promote = dict(spec.get("promote") or {})
    strategy = strategy_of(spec)
    if strategy == "direct":
        raise UsageError(
            f"release {spec['name']} promotes directly (promote.strategy: direct)",
            "use mlopsctl release promote SPEC, or set promote.strategy: canary (or ab)",
        )
    steps = [float(s) for s in promote.get("steps") or []]
    if not steps and promote.get("traffic") is not None:  # the older single-share form
        steps = [100.0 * float(promote["traffic"])]
    if not steps:
        steps = list(DEFAULT_STEPS[strategy])
    if any(b <= a for a, b in itertools.pairwise(steps)):
        raise UsageError(
            f"promote.steps {steps} must grow from step to step", "e.g. steps: [1, 5, 25, 50, 100]"
        )
    hold = {**DEFAULT_HOLD, **(promote.get("hold") or {})}
    duration = parse_duration(hold["duration"], what="hold.duration")
    return Plan(
        model=str(spec["model"]),
        release=str(spec["name"]),
        strategy=strategy,
        steps=steps,
        hold=duration,
        min_requests=int(hold["min_requests"]),
        analysis=analysis.analysis_of(promote),
        alpha=float(promote.get("alpha", analysis.DEFAULT_ALPHA)),
        alias=champion_alias(spec),
        deployment=promote.get("deployment"),
    )


# -- the state record ------------------------------------------------------------------------


def rollout_key(model: str, release: str) -> str:
    check_name("model", model)
    if not _RELEASE.fullmatch(release):
        raise UsageError(
            f"invalid release name {release[:48]!r}",
            "release names are 1 to 63 lowercase letters, digits and '-', starting and ending "
            "with a letter or digit",
        )
    return f"{ROLLOUTS}{model}/{release}.json"


def read_state(store: ObjectStore, model: str, release: str) -> tuple[RolloutState, str] | None:
    """The rollout's state and its etag (for compare-and-swap); None before its first start.
    The one reader of the kind; _write (every transition) is its one writer."""
    try:
        data, etag = store.get_versioned(rollout_key(model, release))
    except NotFound:
        return None
    return rollout_kind.from_json(data), etag


def _write(store: ObjectStore, state: RolloutState, etag: str | None) -> str:
    """The compare-and-swap every transition goes through."""
    state["seq"] = int(state.get("seq", 0)) + 1
    state["updated"] = stamp()
    try:
        return store.compare_and_swap(
            rollout_key(state["model"], state["release"]), canonical_json(state), etag
        )
    except Conflict:
        raise Conflict(
            f"the rollout of {state['model']} ({state['release']}) was moved by another runner "
            "while this one judged it",
            "nothing was applied; run mlopsctl release status SPEC to see where it stands",
        ) from None


# -- what one call did ---------------------------------------------------------------------


@dataclass
class Outcome:
    action: str  # started, held, advanced, promoted, rolled_back, aborted, ended
    state: RolloutState
    checks: list[dict[str, Any]] = field(default_factory=list)
    needed: list[str] = field(default_factory=list)
    message: str = ""

    @property
    def failed(self) -> bool:
        return self.state.get("status") == "rolled_back"

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "message": self.message,
            "status": self.state.get("status"),
            "step": _step_view(self.state),
            "checks": self.checks,
            "needed": self.needed,
            "rollout": self.state,
        }


def _step_view(state: RolloutState) -> dict[str, Any]:
    steps = state.get("steps") or []
    index = int(state.get("step", 0))
    return {
        "index": index + 1,
        "of": len(steps),
        "traffic": steps[index] if 0 <= index < len(steps) else None,
        "since": state.get("step_started"),
    }


def _split(plan: Plan, state: RolloutState, share: float | None = None) -> list[ArmSpec]:
    """The deployment's arms: the alias at 100 - p, the candidate's version at p."""
    if share is None:
        share = float(state["steps"][int(state["step"])])
    candidate = str(state["candidate"]["version"])
    if share >= 100.0:
        return [ArmSpec(candidate, 100.0)]
    if share <= 0.0:
        return [ArmSpec(plan.alias, 100.0)]
    return [ArmSpec(plan.alias, round(100.0 - share, 6)), ArmSpec(candidate, share)]


def _set_split(
    store: ObjectStore, plan: Plan, arms: list[ArmSpec], why: str, force: bool = False
) -> bool:
    """Write the deployment record when it differs from ``arms``; True when written."""
    current = read_deployment(store, plan.model, plan.deployment)
    if not force and current is not None and arms_of(current[0]) == arms:
        return False
    set_traffic(
        store,
        plan.model,
        arms,
        deployment=plan.deployment,
        reason=f"release {plan.release}: {why}",
        actor=f"mlopsctl release rollout {plan.release}",
    )
    return True


def _event(plan: Plan, store: ObjectStore, state: RolloutState, action: str, **extra: Any) -> None:
    record_event(
        store,
        "rollout",
        model=plan.model,
        version=state["candidate"]["version"],
        release=plan.release,
        action=action,
        strategy=state.get("strategy"),
        step=_step_view(state),
        champion=state["champion"],
        deployment=plan.deployment_name,
        **extra,
    )


def _history(state: RolloutState, action: str, now: datetime, **extra: Any) -> None:
    state.setdefault("history", []).append({"time": stamp(now), "action": action, **extra})


# -- one call ------------------------------------------------------------------------------


def advance(
    store: ObjectStore,
    spec: dict[str, Any],
    *,
    now: datetime | None = None,
    reason: str | None = None,
) -> Outcome:
    """Move the rollout of ``spec`` by at most one step (see the module docstring)."""
    plan = plan_of(spec)
    now = now or utc_now()
    found = read_state(store, plan.model, plan.release)
    if found is None:
        return _start(store, spec, plan, None, now, reason)
    state, etag = found
    if state["status"] in TERMINAL:
        if _is_new(store, spec, plan, state):
            return _start(store, spec, plan, (state, etag), now, reason)
        _settle(store, plan, state)
        return Outcome("ended", state, message=_ended_message(state))
    if state["status"] == "promoting":
        return _promote(store, plan, state, etag, now)
    if _set_split(store, plan, _split(plan, state), "put back to the rollout's current step"):
        _history(state, "traffic_restored", now)
    window = _window(store, plan, state, now)
    look = analysis.Look(int(state.get("looks", 0)) + 1, len(plan.analysis), plan.alpha)
    results = analysis.run_checks(plan.analysis, window, look)
    checks = [r.as_dict() for r in results]
    needed = _hold_needed(plan, state, window, now) + [
        f"{r.name}: {r.needed or r.verdict}" for r in results if r.verdict == "inconclusive"
    ]
    state["looks"] = look.number
    state["last"] = {
        "time": stamp(now),
        "look": look.number,
        "window": {"since": stamp(window.since), "until": stamp(window.until)},
        "candidate": window.candidate.summary(),
        "champion": window.champion.summary(),
        "checks": checks,
        "needed": needed,
    }
    failed = [r for r in results if r.verdict == "fail"]
    if failed:
        return _roll_back(store, plan, state, etag, now, failed, checks)
    if needed:
        _write(store, state, etag)
        return Outcome("held", state, checks, needed, _held_message(state, needed))
    index = int(state["step"])
    if index + 1 < len(state["steps"]):
        before = state["steps"][index]
        state["step"] = index + 1
        state["step_started"] = stamp(now)
        _history(state, "advance", now, traffic=state["steps"][index + 1], previous=before)
        _write(store, state, etag)
        _set_split(store, plan, _split(plan, state), f"step {index + 2} of {len(state['steps'])}")
        _event(plan, store, state, "advance", previous=before, checks=_brief(checks))
        share = state["steps"][index + 1]
        return Outcome(
            "advanced",
            state,
            checks,
            message=f"step {index + 2} of {len(state['steps'])}: {share:g}% to "
            f"{plan.model}:{state['candidate']['version']} (every check passed at {before:g}%)",
        )
    state["status"] = "promoting"
    _history(state, "promote", now)
    etag = _write(store, state, etag)
    _event(plan, store, state, "promote", checks=_brief(checks))
    return _promote(store, plan, state, etag, now, checks)


def _settle(store: ObjectStore, plan: Plan, state: RolloutState) -> None:
    """An ended rollout whose last call stopped before the deployment record was put back on
    the alias alone (it still gives the candidate's arm traffic): put it back now."""
    current = read_deployment(store, plan.model, plan.deployment)
    if current is None or not str(current[0].get("reason") or "").startswith(
        f"release {plan.release}:"
    ):
        return  # changed by someone else since: theirs now
    candidate = str(state["candidate"]["version"])
    if any(a.label == candidate and a.weight > 0 for a in arms_of(current[0])):
        _set_split(store, plan, [ArmSpec(plan.alias, 100.0)], f"rollout {state['status']}")


def _brief(checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {k: c.get(k) for k in ("name", "type", "verdict", "value", "bound") if k in c}
        for c in checks
    ]


def _start(
    store: ObjectStore,
    spec: dict[str, Any],
    plan: Plan,
    previous: tuple[RolloutState, str] | None,
    now: datetime,
    reason: str | None,
) -> Outcome:
    """A new rollout at the first step; ``previous`` is the ended one it replaces."""
    candidate, holder, check, approvers = promotion_ready(store, spec)
    state: RolloutState = {
        "model": plan.model,
        "release": plan.release,
        "strategy": plan.strategy,
        "deployment": plan.deployment_name,
        "alias": plan.alias,
        "candidate": {"version": candidate},
        "champion": {"version": holder},
        "check": check,
        "approvals": approvers,
        "steps": plan.steps,
        "step": 0,
        "status": "running",
        "started": stamp(now),
        "step_started": stamp(now),
        "looks": 0,
        "reason": reason,
        "history": [],
        # _write sets both: the seq continues the ended rollout's this one replaces.
        "seq": int(previous[0].get("seq", 0)) if previous is not None else 0,
        "updated": stamp(now),
    }
    _history(state, "start", now, traffic=plan.steps[0])
    _write(store, state, previous[1] if previous else None)
    _set_split(store, plan, _split(plan, state), f"rollout started, step 1 of {len(plan.steps)}")
    _event(plan, store, state, "start", reason=reason, check=check)
    return Outcome(
        "started",
        state,
        message=f"rollout of {plan.model}:{candidate} started: {plan.steps[0]:g}% of "
        f"{plan.deployment_name}'s traffic (champion @{plan.alias} is version {holder})",
    )


def promotion_ready(store: ObjectStore, spec: dict[str, Any]) -> tuple[int, int, str, list[str]]:
    """(candidate, champion, check id, approvers) when the candidate may take traffic: its
    latest check of this release passed against the current champion and the approvals are
    in (what `release promote` demands before moving the alias); CheckFailed otherwise."""
    model = spec["model"]
    cand = registry.resolve(store, candidate_ref(model, spec.get("candidate")))
    version = int(cand["version"])
    alias = champion_alias(spec)
    current = registry.get_alias(store, model, alias)
    if current is None:
        raise UsageError(
            f"{model}@{alias} is not set: a rollout needs a champion serving to compare with",
            "promote the first version directly (promote.strategy: direct)",
        )
    holder = int(current[0]["version"])
    if holder == version:
        raise UsageError(f"{model}@{alias} already points at version {version}")
    check = latest_check(store, model, version, spec["name"])
    if check is None:
        raise CheckFailed(
            f"{model}:{version} has no release check for {spec['name']}",
            "run: mlopsctl release check SPEC",
        )
    if not check.get("passed"):
        raise CheckFailed(
            f"the latest check of {model}:{version} ({check['time']}) failed",
            "fix what failed and run release check again",
        )
    if (check.get("champion") or {}).get("version") != holder:
        raise CheckFailed(
            f"{model}@{alias} moved to version {holder} after the check",
            "run release check again against the current champion",
        )
    approvers: list[str] = []
    for gate in spec["gates"]:
        if gate["type"] == "approval":
            enough, counted, needed, people = approval_gate(
                gate, approvals_for(store, model, version)
            )
            if not enough:
                raise CheckFailed(
                    f"{model}:{version} has {counted} of {needed} approval(s) needed",
                    f"approve with: mlopsctl release approve {model}:{version} --by EMAIL",
                )
            approvers += people
    return version, holder, str(check["id"]), sorted(set(approvers))


def _is_new(store: ObjectStore, spec: dict[str, Any], plan: Plan, state: RolloutState) -> bool:
    """Whether an ended rollout gives way to a new one: another candidate, or a newer check."""
    cand = registry.resolve(store, candidate_ref(plan.model, spec.get("candidate")))
    version = int(cand["version"])
    if version != int(state["candidate"]["version"]):
        return True
    check = latest_check(store, plan.model, version, plan.release)
    return check is not None and str(check["id"]) != str(state.get("check"))


def _window(store: ObjectStore, plan: Plan, state: RolloutState, now: datetime) -> analysis.Window:
    since = parse_time(state["step_started"])
    share = float(state["steps"][int(state["step"])])
    # A step that gives the champion no traffic compares with the champion's rows of the
    # rollout's earlier steps (the same period's traffic); when it is the first step, with its
    # rows from an hour before the rollout began on.
    champion_since = None
    if share >= 100.0:
        champion_since = parse_time(state["started"])
        if int(state["step"]) == 0:
            champion_since -= CHAMPION_LOOKBACK
    record = registry.get_version(store, plan.model, int(state["candidate"]["version"]))
    task = (record.get("signature") or {}).get("task")
    return analysis.read_window(
        store,
        plan.model,
        int(state["candidate"]["version"]),
        int(state["champion"]["version"]),
        since,
        now,
        classification=task != "regression",
        champion_since=champion_since,
    )


def _hold_needed(
    plan: Plan, state: RolloutState, window: analysis.Window, now: datetime
) -> list[str]:
    needed = []
    waited = now - parse_time(state["step_started"])
    if waited < plan.hold:
        left = int((plan.hold - waited).total_seconds() + 0.999)
        needed.append(f"hold: {left} s more at this step")
    requests = window.candidate.total
    if requests < plan.min_requests:
        needed.append(f"hold: candidate requests {requests} of {plan.min_requests}")
    return needed


def _roll_back(
    store: ObjectStore,
    plan: Plan,
    state: RolloutState,
    etag: str,
    now: datetime,
    failed: list[analysis.CheckResult],
    checks: list[dict[str, Any]],
) -> Outcome:
    why = "; ".join(
        f"{r.name} failed ({_num(r.value)} vs {r.bound})" + (f": {r.note}" if r.note else "")
        for r in failed
    )
    state["status"] = "rolled_back"
    state["ended"] = stamp(now)
    state["reason"] = why
    _history(state, "rollback", now, reason=why)
    _write(store, state, etag)
    _set_split(store, plan, _split(plan, state, 0.0), f"rolled back: {why}", force=False)
    _event(plan, store, state, "rollback", reason=why, checks=_brief(checks))
    return Outcome(
        "rolled_back",
        state,
        checks,
        message=f"rolled back {plan.model}:{state['candidate']['version']}: {why}; all "
        f"traffic is back on @{plan.alias} (version {state['champion']['version']})",
    )


def _num(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _promote(
    store: ObjectStore,
    plan: Plan,
    state: RolloutState,
    etag: str,
    now: datetime,
    checks: list[dict[str, Any]] | None = None,
) -> Outcome:
    """Move the alias (compare-and-swap from the champion the rollout began with), put the
    deployment back on one arm, end the rollout. Each part is skipped when already done."""
    candidate = int(state["candidate"]["version"])
    champion = int(state["champion"]["version"])
    current = registry.get_alias(store, plan.model, plan.alias)
    holder = int(current[0]["version"]) if current else None
    if holder != candidate:
        if holder != champion:
            state["status"] = "aborted"
            state["ended"] = stamp(now)
            state["reason"] = f"@{plan.alias} moved to version {holder} during the rollout"
            _history(state, "abort", now, reason=state["reason"])
            _write(store, state, etag)
            _set_split(store, plan, _split(plan, state, 0.0), "rollout aborted")
            _event(plan, store, state, "abort", reason=state["reason"])
            raise Conflict(
                f"{plan.model}@{plan.alias} points at version {holder}, not {champion} as when "
                "the rollout began: the rollout was aborted and the alias left alone",
                "run release check again against the current champion",
            )
        registry.set_alias(
            store,
            plan.model,
            plan.alias,
            candidate,
            expect=champion,
            reason=f"release {plan.release}: the rollout passed every step",
            action="promote",
        )
        record_event(
            store,
            "promotion",
            model=plan.model,
            version=candidate,
            previous=champion,
            alias=plan.alias,
            release=plan.release,
            check=state.get("check"),
            approvals=state.get("approvals") or [],
            rollout=True,
        )
    _set_split(store, plan, [ArmSpec(plan.alias, 100.0)], "rollout done: one arm again")
    state["status"] = "done"
    state["ended"] = stamp(now)
    _history(state, "done", now)
    _write(store, state, etag)
    _event(plan, store, state, "done")
    return Outcome(
        "promoted",
        state,
        checks or [],
        message=f"{plan.model}@{plan.alias}: {champion} -> {candidate} (the rollout passed "
        f"every step); {plan.deployment_name} serves @{plan.alias} alone",
    )


def _held_message(state: RolloutState, needed: list[str]) -> str:
    view = _step_view(state)
    return f"holding at step {view['index']} of {view['of']} ({view['traffic']:g}%): " + "; ".join(
        needed
    )


def _ended_message(state: RolloutState) -> str:
    status = state["status"]
    version = state["candidate"]["version"]
    text = {
        "done": f"the rollout of version {version} is done (promoted {state.get('ended')})",
        "rolled_back": f"version {version} was rolled back {state.get('ended')}",
        "aborted": f"the rollout of version {version} was aborted {state.get('ended')}",
    }[status]
    if state.get("reason") and status != "done":
        text += f": {state['reason']}"
    if status != "done":
        text += "; a new candidate (or a new passed release check) starts a new rollout"
    return text


# -- around it -------------------------------------------------------------------------------


def abort(
    store: ObjectStore,
    spec: dict[str, Any],
    *,
    reason: str | None = None,
    now: datetime | None = None,
) -> Outcome:
    """Stop a running rollout: all traffic back on the champion alias, the alias unchanged."""
    plan = plan_of(spec)
    now = now or utc_now()
    found = read_state(store, plan.model, plan.release)
    if found is None:
        raise NotFound(f"release {plan.release} has no rollout of {plan.model}")
    state, etag = found
    if state["status"] in TERMINAL:
        return Outcome("ended", state, message=_ended_message(state))
    if state["status"] == "promoting":
        raise UsageError(
            "the rollout passed every step and is being promoted; it cannot be aborted now",
            "run mlopsctl release rollout SPEC to finish it, then release rollback if needed",
        )
    state["status"] = "aborted"
    state["ended"] = stamp(now)
    state["reason"] = reason or "aborted by hand"
    _history(state, "abort", now, reason=state["reason"])
    _write(store, state, etag)
    _set_split(store, plan, _split(plan, state, 0.0), "rollout aborted")
    _event(plan, store, state, "abort", reason=state["reason"])
    return Outcome(
        "aborted",
        state,
        message=f"aborted the rollout of {plan.model}:{state['candidate']['version']}: all "
        f"traffic is back on @{plan.alias} (version {state['champion']['version']})",
    )


def status(
    store: ObjectStore, spec: dict[str, Any], *, now: datetime | None = None
) -> dict[str, Any]:
    """Where the rollout stands, with every check judged now on the step's window (read only:
    nothing is recorded, no look is spent) and what is needed to advance."""
    plan = plan_of(spec)
    now = now or utc_now()
    found = read_state(store, plan.model, plan.release)
    if found is None:
        return {
            "status": "none",
            "model": plan.model,
            "release": plan.release,
            "message": f"release {plan.release} has no rollout yet: mlopsctl release rollout SPEC "
            "starts one",
        }
    state, _ = found
    view: dict[str, Any] = {
        "status": state["status"],
        "model": plan.model,
        "release": plan.release,
        "strategy": state.get("strategy"),
        "candidate": state["candidate"],
        "champion": state["champion"],
        "alias": plan.alias,
        "deployment": plan.deployment_name,
        "step": _step_view(state),
        "steps": state["steps"],
        "started": state.get("started"),
        "looks": state.get("looks", 0),
        "hold": {"duration_s": plan.hold.total_seconds(), "min_requests": plan.min_requests},
        "checks": [],
        "needed": [],
        "reason": state.get("reason"),
        "ended": state.get("ended"),
    }
    deployment = read_deployment(store, plan.model, plan.deployment)
    view["traffic"] = (deployment[0].get("arms") if deployment else None) or []
    if state["status"] != "running":
        view["message"] = (
            _ended_message(state)
            if state["status"] in TERMINAL
            else "being promoted: run release rollout to finish"
        )
        return view
    window = _window(store, plan, state, now)
    look = analysis.Look(int(state.get("looks", 0)) + 1, len(plan.analysis), plan.alpha)
    results = analysis.run_checks(plan.analysis, window, look)
    view["window"] = {"since": stamp(window.since), "until": stamp(window.until)}
    if window.note:
        view["window"]["note"] = window.note
    view["arms"] = {"candidate": window.candidate.summary(), "champion": window.champion.summary()}
    view["checks"] = [r.as_dict() for r in results]
    view["needed"] = _hold_needed(plan, state, window, now) + [
        f"{r.name}: {r.needed or r.verdict}" for r in results if r.verdict == "inconclusive"
    ]
    failing = [r.name for r in results if r.verdict == "fail"]
    if failing:
        view["message"] = f"the next rollout call rolls back: {', '.join(failing)} failed"
    elif view["needed"]:
        view["message"] = "holding: " + "; ".join(view["needed"])
    else:
        view["message"] = "ready: the next rollout call advances"
    return view


def watch(
    store: ObjectStore,
    spec: dict[str, Any],
    *,
    interval: float = 30.0,
    report: Callable[[Outcome], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    max_calls: int | None = None,
    reason: str | None = None,
) -> Outcome:
    """Call ``advance`` every ``interval`` seconds until the rollout ends (or ``max_calls``)."""
    calls = 0
    while True:
        outcome = advance(store, spec, reason=reason)
        calls += 1
        if report is not None:
            report(outcome)
        if outcome.state.get("status") in TERMINAL:
            return outcome
        if max_calls is not None and calls >= max_calls:
            return outcome
        sleep(interval)
