"""Aliases (``name@production``): pointers to a version, moved only by compare-and-swap, with a
history of every move, and rollback along it.

Every alias move is in the history: the winner of a move writes its entry, and whoever replaces
a move makes sure that move's entry exists first, so a mover killed between the two writes loses
nothing."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import TYPE_CHECKING, cast

from mlopsctl.digest import canonical_json
from mlopsctl.errors import AlreadyExists, Conflict, NotFound
from mlopsctl.events import record_event
from mlopsctl.provenance import who
from mlopsctl.records import alias_move as alias_move_kind
from mlopsctl.registry.keys import alias_key, history_key, history_prefix
from mlopsctl.registry.refs import check_alias, check_name
from mlopsctl.registry.versions import get_version
from mlopsctl.timeutil import stamp

if TYPE_CHECKING:
    from mlopsctl.records.alias_move import AliasMove
    from mlopsctl.records.common import Actor
    from mlopsctl.store.base import ObjectStore


def get_alias(store: ObjectStore, name: str, alias: str) -> tuple[AliasMove, str] | None:
    """The alias pointer (its latest move) and its etag (for compare-and-swap); None when the
    alias is not set. The one reader of alias moves; set_alias is their one writer."""
    try:
        data, etag = store.get_versioned(alias_key(name, alias))
    except NotFound:
        return None
    return alias_move_kind.from_json(data), etag


def set_alias(
    store: ObjectStore,
    name: str,
    alias: str,
    version: int,
    *,
    expect: int | None = None,
    reason: str | None = None,
    action: str = "set",
) -> AliasMove:
    """Move `alias` to `version` by compare-and-swap. With `expect`, only if the alias still
    points at that version. A lost race raises Conflict naming the current holder."""
    check_name(name)
    check_alias(alias)
    target = get_version(store, name, version)  # the target must exist
    current = get_alias(store, name, alias)
    holder = int(current[0]["version"]) if current else None
    if expect is not None and holder != expect:
        raise Conflict(
            f"{name}@{alias} points at version {holder if holder is not None else '(none)'}, "
            f"not {expect}",
            "re-read it (mlopsctl models show) and retry with the right --expect",
        )
    if current is not None:
        # The move being replaced may have died before writing its history entry.
        _keep_history(store, name, alias, current[0])
    seq = int(current[0].get("seq", 0)) + 1 if current else 1
    actor = cast("Actor", who(Path.cwd()))  # provenance builds it untyped
    record: AliasMove = {
        "id": secrets.token_hex(8),
        "model": name,
        "alias": alias,
        "version": version,
        "previous": holder,
        "seq": seq,
        "time": stamp(),
        "by": actor,
        "reason": reason,
        "action": action,
        "artifact": target["artifact"]["digest"],
    }
    try:
        store.compare_and_swap(
            alias_key(name, alias), canonical_json(record), current[1] if current else None
        )
    except Conflict:
        now = get_alias(store, name, alias)
        # The store may have retried this very write after losing its response: then the
        # alias holds this move and it won.
        if now is None or now[0].get("id") != record["id"]:
            holder_now = now[0]["version"] if now else "(none)"
            raise Conflict(
                f"{name}@{alias} moved while this move was being made; it now points at "
                f"version {holder_now}",
                "re-read it and retry (use --expect to say which version you expect to replace)",
            ) from None
    # The move won. Its history entry may already be there, written by a mover that read the
    # new pointer first (same bytes); its audit event can only come from this process.
    _keep_history(store, name, alias, record)
    record_event(
        store,
        "alias_move",
        model=name,
        alias=alias,
        version=version,
        previous=holder,
        reason=reason,
        action=action,
        actor=actor,
    )
    return record


def _keep_history(store: ObjectStore, name: str, alias: str, record: AliasMove) -> None:
    try:
        store.put_if_absent(history_key(name, alias, record.get("seq", 1)), canonical_json(record))
    except AlreadyExists:
        pass


def alias_history(store: ObjectStore, name: str, alias: str) -> list[AliasMove]:
    """Every move of the alias, oldest first, the current one included even when its mover
    died before writing its history entry."""
    from concurrent.futures import ThreadPoolExecutor

    check_name(name)
    check_alias(alias)
    keys = sorted(store.list(history_prefix(name, alias)))
    with ThreadPoolExecutor(max_workers=16) as pool:
        moves = list(pool.map(lambda k: alias_move_kind.from_json(store.get(k)), keys))
    current = get_alias(store, name, alias)
    if current is not None and all(m.get("seq") != current[0].get("seq") for m in moves):
        moves.append(current[0])
    return moves


def _rollback_target(moves: list[AliasMove]) -> int | None:
    """The version a rollback returns to: replay the moves as a stack (a move pushes the
    version it replaced, a rollback pops), so rolling back twice goes two versions back
    rather than returning to the version the first rollback left."""
    stack: list[int] = []
    for move in moves:
        previous = move.get("previous")
        if move.get("action") == "rollback":
            if stack:
                stack.pop()
        elif previous is not None and previous != move.get("version"):
            stack.append(int(previous))
    return stack[-1] if stack else None


def rollback(store: ObjectStore, name: str, alias: str, reason: str | None = None) -> AliasMove:
    """Move the alias back to the version it pointed at before the move that put the current
    version there (rollbacks undone in turn, like an undo stack)."""
    current = get_alias(store, name, alias)
    if current is None:
        raise NotFound(f"model '{name}' has no alias '{alias}'", "nothing to roll back")
    target = _rollback_target(alias_history(store, name, alias))
    if target is None:
        raise NotFound(
            f"{name}@{alias} has no earlier version to roll back to",
            "set it explicitly with: mlopsctl models alias set",
        )
    return set_alias(
        store,
        name,
        alias,
        target,
        expect=int(current[0]["version"]),
        reason=reason or f"rollback from version {current[0]['version']}",
        action="rollback",
    )
