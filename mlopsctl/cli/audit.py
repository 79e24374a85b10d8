from __future__ import annotations

import json
from typing import Annotated

import typer

from mlopsctl.cli.options import JsonOpt, project_store
from mlopsctl.cli.output import emit_json, err, out
from mlopsctl.errors import UsageError


def audit(
    model: Annotated[
        str | None, typer.Option("--model", help="Only events about this model.")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Only events from this date/time on (2026-11-01).")
    ] = None,
    kind: Annotated[
        str | None, typer.Option("--type", help="Only this event type (register, alias_move, ...).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """The append-only audit log: registrations, alias moves, gate results, approvals."""
    from mlopsctl.events import list_events

    if since and not (len(since) >= 7 and since[:4].isdigit() and since[5:7].isdigit()):
        raise UsageError(
            f"bad --since {since!r}", "give a date like 2026-11-01 or 2026-11-01T12:00:00"
        )
    with project_store() as store:
        events = list_events(store, since=since, model=model, kind=kind)
    if json_out:
        emit_json(events)
        return
    if not events:
        err("no events")
    skip = {"id", "type", "time", "actor", "host"}
    for e in events:
        rest = " ".join(f"{k}={_brief(v)}" for k, v in e.items() if k not in skip and v is not None)
        actor = e.get("actor") or ""
        name = actor if isinstance(actor, str) else actor.get("name", "")
        out(f"{e['time']}  {e['type']:<11} {name:<24} {rest}")


_MAX_ITEMS = 6
_MAX_CHARS = 80


def _brief(value: object) -> str:
    """One event field on one short line: the full record is what --json is for."""
    if isinstance(value, list):
        shown = [_brief(v) for v in value[:_MAX_ITEMS]]
        if len(value) > _MAX_ITEMS:
            shown.append(f"+{len(value) - _MAX_ITEMS} more")
        return "[" + ", ".join(shown) + "]"
    if isinstance(value, dict):
        label = value.get("name") or value.get("gate") or value.get("feature")
        status = value.get("status") or value.get("verdict") or value.get("result")
        if label is not None and status is not None:
            return f"{label}:{status}"
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    else:
        text = str(value)
    return text if len(text) <= _MAX_CHARS else text[: _MAX_CHARS - 1] + "…"
