"""approve, promote and rollback: the moves that follow a check, each an audit event."""

from __future__ import annotations

import getpass
import socket
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlopsctl.errors import CheckFailed, Conflict, UsageError
from mlopsctl.events import list_events, record_event
from mlopsctl.release.gates import approval_gate, approvals_for, candidate_ref, champion_alias

if TYPE_CHECKING:
    from mlopsctl.records.event import Event
    from mlopsctl.store.base import ObjectStore


def approve(
    store: ObjectStore,
    ref: str,
    by: str,
    note: str | None = None,
    *,
    root: Path | None = None,
    require_git_identity: bool = False,
) -> dict[str, Any]:
    """Record an approval of NAME:VERSION by `by` (an email).

    Next to `by`, the event keeps who really ran the command: the git identity configured in
    the project at `root` (user.email, user.name) and the OS user and host. With
    `require_git_identity` (mlops.yaml's release.require_git_identity), `by` must equal the
    git user.email, compared case-insensitively, or nothing is recorded (UsageError, exit 2).
    """
    from mlopsctl.registry import parse_ref, resolve

    parsed = parse_ref(ref)
    if parsed.version is None:
        raise UsageError(f"approve a fixed version, not {ref!r}", "give NAME:VERSION")
    if "@" not in by or by.startswith("@"):
        raise UsageError(f"--by {by!r} is not an email address", "e.g. --by alice@example.com")
    git_user = git_identity(root or Path.cwd())
    if require_git_identity:
        expected = git_user["email"]
        if not expected:
            raise UsageError(
                "this project requires --by to be your git user.email "
                "(release.require_git_identity in mlops.yaml), and none is set",
                "set it with: git config user.email YOU@example.com",
            )
        if by.strip().lower() != expected.strip().lower():
            raise UsageError(
                f"--by {by} is not your git identity: expected --by {expected} (your git "
                "user.email), since mlops.yaml sets release.require_git_identity",
                "approve as yourself, or ask the approver to run this command",
            )
    record = resolve(store, parsed)
    return record_event(
        store,
        "approval",
        model=record["name"],
        version=int(record["version"]),
        by=by,
        note=note,
        git_user=git_user,
        os_user=os_user(),
        identity_checked=require_git_identity,
    )


def git_identity(root: Path) -> dict[str, str | None]:
    """user.email and user.name as git sees them in `root` (None for one that is not set)."""

    def config(key: str) -> str | None:
        try:
            proc = subprocess.run(
                ["git", "config", "--get", key],
                cwd=root,
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return (proc.stdout.strip() or None) if proc.returncode == 0 else None

    return {"email": config("user.email"), "name": config("user.name")}


def os_user() -> dict[str, str]:
    """The login name and host of whoever runs this."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = "unknown"
    return {"name": name, "host": socket.gethostname()}


def latest_check(store: ObjectStore, model: str, version: int, release: str) -> Event | None:
    checks = [
        e
        for e in list_events(store, model=model, kind="gate")
        if e.get("version") == version and e.get("release") == release
    ]
    return checks[-1] if checks else None


def promote(store: ObjectStore, spec: dict[str, Any], reason: str | None = None) -> dict[str, Any]:
    """Move the champion alias to the candidate, or CheckFailed saying why not.

    Promotes run at once (CI jobs on one commit) end in the state they want or say why not: an
    alias already at the candidate, moved there by this promote's rival or earlier, is success
    without a move (``unchanged: True``); an alias that another promotion moved elsewhere since
    the check is a Conflict (exit 7)."""
    from mlopsctl.registry import get_alias, resolve, set_alias

    strategy = str((spec.get("promote") or {}).get("strategy") or "direct")
    if strategy not in ("direct", "replace"):  # replace: the old name of direct
        raise UsageError(
            f"release {spec['name']} has promote.strategy: {strategy}, which moves traffic step "
            "by step: run mlopsctl release rollout SPEC (release promote moves it all at once)"
        )
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
        return _already_there(model, alias, version)
    if (check.get("champion") or {}).get("version") != holder:
        # The check compared against another champion; its verdict says nothing about this one.
        raise Conflict(
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
    try:
        move = set_alias(
            store,
            model,
            alias,
            version,
            expect=holder,
            reason=reason or f"release {spec['name']}: check {check['id']} passed",
            action="promote",
        )
    except Conflict:
        # Another move landed between our read and our swap.
        now = get_alias(store, model, alias)
        moved_to = int(now[0]["version"]) if now else None
        if moved_to == version:
            return _already_there(model, alias, version)  # a promote of the same candidate
        raise Conflict(
            f"{model}@{alias} moved to version {moved_to} while this promotion was being made",
            "another promotion won; run release check again against the current champion",
        ) from None
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
    return {**move}  # the alias move (an AliasMove), or _already_there's answer above


def _already_there(model: str, alias: str, version: int) -> dict[str, Any]:
    return {
        "model": model,
        "alias": alias,
        "version": version,
        "previous": version,
        "unchanged": True,
        "note": f"{model}@{alias} already points at version {version}; nothing to do",
    }


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
    return {**move}  # the alias move (an AliasMove)
