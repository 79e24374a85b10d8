"""The append-only audit log: `events/<yyyy>/<mm>/<timestamp>-<id>.json`, each created with
put-if-absent and never changed. Registrations, alias moves, gate results, approvals,
deployments and drift findings all land here, so `mlopsctl audit` can answer who did what, when,
and why."""

from __future__ import annotations

import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlopsctl.digest import canonical_json
from mlopsctl.provenance import where, who
from mlopsctl.records import event as event_kind

if TYPE_CHECKING:
    from mlopsctl.records.event import Event
    from mlopsctl.store.base import ObjectStore

PREFIX = "events/"


def record_event(store: ObjectStore, kind: str, **fields: Any) -> dict[str, Any]:
    """Write one event of type `kind` with `fields` (records.event.TYPE_FIELDS names what each
    known type carries): the one writer of the kind; list_events is its one reader."""
    now = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now * 1e6) % 1000000:06d}Z"
    event_id = secrets.token_hex(4)
    event: dict[str, Any] = {
        "id": f"{stamp}-{event_id}",
        "type": kind,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        "actor": fields.pop("actor", None) or who(Path.cwd()),
        "host": where()["host"],
        **fields,
    }
    month = time.strftime("%Y/%m", time.gmtime(now))
    store.put_if_absent(f"{PREFIX}{month}/{event['id']}.json", canonical_json(event))
    return event


def _months_since(since: str | None) -> list[str] | None:
    """Month prefixes from `since` (YYYY-MM-DD...) to now; None means every month."""
    if not since:
        return None
    year, month = int(since[:4]), int(since[5:7])
    now = time.gmtime()
    months = []
    while (year, month) <= (now.tm_year, now.tm_mon):
        months.append(f"{PREFIX}{year:04d}/{month:02d}/")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


def list_events(
    store: ObjectStore,
    *,
    since: str | None = None,
    model: str | None = None,
    kind: str | None = None,
) -> list[Event]:
    """Events in time order; `since` (an ISO date or time) skips whole months unread."""
    prefixes = _months_since(since) or [PREFIX]
    keys = [k for p in prefixes for k in store.list(p) if k.endswith(".json")]
    if since:
        floor = since.replace("-", "").replace(":", "")[:15]
        keys = [k for k in keys if k.rsplit("/", 1)[1][: len(floor)] >= floor]
    with ThreadPoolExecutor(max_workers=16) as pool:
        events = list(pool.map(lambda k: event_kind.from_json(store.get(k)), sorted(keys)))
    if model:
        events = [e for e in events if e.get("model") == model]
    if kind:
        events = [e for e in events if e.get("type") == kind]
    return events
