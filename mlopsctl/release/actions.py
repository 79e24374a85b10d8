"""approve, promote and rollback: the moves that follow a check, each an audit event."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlopsctl.errors import CheckFailed, UsageError
from mlopsctl.events import list_events, record_event
from mlopsctl.release.gates import approval_gate, approvals_for, candidate_ref, champion_alias

if TYPE_CHECKING:
    from mlopsctl.store.base import ObjectStore


def approve(store: ObjectStore, ref: str, by: str, note: str | None = None) -> dict[str, Any]:
    from mlopsctl.registry import parse_ref, resolve

    parsed = parse_ref(ref)
    if parsed.version is None:
        raise UsageError(f"approve a fixed version, not {ref!r}", "give NAME:VERSION")
    if "@" not in by or by.startswith("@"):
        raise UsageError(f"--by {by!r} is not an email address", "e.g. --by alice@example.com")
    record = resolve(store, parsed)
    return record_event(
        store, "approval", model=record["name"], version=int(record["version"]), by=by, note=note
    )


def latest_check(
    store: ObjectStore, model: str, version: int, release: str
) -> dict[str, Any] | None:
    checks = [
        e
        for e in list_events(store, model=model, kind="gate")
        if e.get("version") == version and e.get("release") == release
    ]
    return checks[-1] if checks else None


def promote(store: ObjectStore, spec: dict[str, Any], reason: str | None = None) -> dict[str, Any]:
    """Move the champion alias to the candidate, or CheckFailed saying why not."""
    from mlopsctl.registry import get_alias, resolve, set_alias

    model = spec["model"]
    cand = resolve(store, candidate_ref(model, spec.get("candidate")))
    version = int(cand["version"])
    alias = champion_alias(spec)
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
    current = get_alias(store, model, alias)
    holder = int(current[0]["version"]) if current else None
    if holder == version:
        raise UsageError(f"{model}@{alias} already points at version {version}")
    if (check.get("champion") or {}).get("version") != holder:
        # The check compared against another champion; its verdict says nothing about this one.
        raise CheckFailed(
            f"{model}@{alias} moved to version {holder} after the check",
            "run release check again against the current champion",
        )
    approvals = approvals_for(store, model, version)
    approvers: list[str] = []
    for gate in spec["gates"]:
        if gate["type"] == "approval":
            enough, counted, needed, people = approval_gate(gate, approvals)
            if not enough:
                raise CheckFailed(
                    f"{model}:{version} has {counted} of {needed} approval(s) needed",
                    f"approve with: mlopsctl release approve {model}:{version} --by EMAIL",
                )
            approvers += people
    move = set_alias(
        store,
        model,
        alias,
        version,
        expect=holder,
        reason=reason or f"release {spec['name']}: check {check['id']} passed",
        action="promote",
    )
    record_event(
        store,
        "promotion",
        model=model,
        version=version,
        previous=holder,
        alias=alias,
        release=spec["name"],
        check=check["id"],
        approvals=sorted(set(approvers)),
    )
    return move


def rollback(store: ObjectStore, spec: dict[str, Any], reason: str | None = None) -> dict[str, Any]:
    from mlopsctl import registry

    alias = champion_alias(spec)
    move = registry.rollback(store, spec["model"], alias, reason=reason)
    record_event(
        store,
        "rollback",
        model=spec["model"],
        version=move["version"],
        previous=move["previous"],
        alias=alias,
        release=spec["name"],
        reason=reason,
    )
    return move
