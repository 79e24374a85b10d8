from __future__ import annotations

import json
from typing import Annotated

import typer

from mlopsctl.cli.output import emit_json, err, out


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
    json_out: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """The append-only audit log: registrations, alias moves, gate results, approvals."""
    from mlopsctl.config import load_project, open_project_store
    from mlopsctl.errors import UsageError
    from mlopsctl.events import list_events

    if since and not (len(since) >= 7 and since[:4].isdigit() and since[5:7].isdigit()):
        raise UsageError(
            f"bad --since {since!r}", "give a date like 2026-11-01 or 2026-11-01T12:00:00"
        )
    with open_project_store(load_project()) as store:
        events = list_events(store, since=since, model=model, kind=kind)
    if json_out:
        emit_json(events)
        return
    if not events:
        err("no events")
    skip = {"id", "type", "time", "actor", "host"}
    for e in events:
        rest = " ".join(
            f"{k}={json.dumps(v) if isinstance(v, (dict, list)) else v}"
            for k, v in e.items()
            if k not in skip and v is not None
        )
        out(f"{e['time']}  {e['type']:<11} {(e.get('actor') or {}).get('name', ''):<24} {rest}")
