"""What the site is built from: one listing of the record prefixes, with each record's size,
etag and modification time as its signature, and a small summary of every record kept between
builds (in the site's manifest), so a rebuild reads only the records whose signature changed.

Keys are classified by the record kinds' own key patterns (mlopsctl.records.kind_of_key);
every field shown comes from inside the record."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlopsctl.errors import NotFound
from mlopsctl.names import flatten
from mlopsctl.pipeline.plan import NOTEBOOK_OUTPUT
from mlopsctl.records import RecordInvalid, decode_stored, kind_of_key
from mlopsctl.site.html import short

if TYPE_CHECKING:
    from mlopsctl.store.base import ObjectStore

PREFIXES = ("runs/", "models/", "events/", "rollouts/", "deployments/")
KINDS = ("run", "version", "alias_move", "event", "rollout", "deployment")
_EVENT_SKIP = {"id", "type", "time", "actor", "host"}


def actor_name(actor: Any) -> str | None:
    if isinstance(actor, dict):
        return str(actor.get("name")) if actor.get("name") is not None else None
    return None if actor is None else str(actor)


def scalar_metrics(metrics: Any) -> dict[str, Any]:
    if not isinstance(metrics, dict):
        return {}
    return {
        str(k): v
        for k, v in flatten(metrics).items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def _notebooks(steps: Any) -> dict[str, Any]:
    """{"notebooks": {step: digest}} for the run's notebook steps' executed notebooks (none:
    {}, so the summaries of other runs stay as they were)."""
    found = {}
    for name, step in (steps or {}).items() if isinstance(steps, dict) else ():
        if isinstance(step, dict) and step.get("kind") == "notebook":
            output = (step.get("outputs") or {}).get(NOTEBOOK_OUTPUT)
            if isinstance(output, dict) and isinstance(output.get("digest"), str):
                found[str(name)] = output["digest"]
    return {"notebooks": found} if found else {}


def summarize(kind: str, key: str, record: dict[str, Any]) -> dict[str, Any]:
    """The part of a record the site's tables and indexes show (pages of one record read it
    whole when they are rebuilt)."""
    if kind == "run":
        git = record.get("git") or {}
        return {
            "id": str(record.get("id")),
            "experiment": record.get("experiment"),
            "pipeline": record.get("pipeline"),
            "status": record.get("status"),
            "started": record.get("started"),
            "duration_s": record.get("duration_s"),
            "metrics": scalar_metrics(record.get("metrics")),
            "params": {k: short(v, 60) for k, v in flatten(record.get("params") or {}).items()},
            "user": actor_name(record.get("user")),
            "commit": git.get("commit") if isinstance(git, dict) else None,
            **_notebooks(record.get("steps")),
        }
    if kind == "version":
        run = record.get("run") or {}
        pipeline = record.get("pipeline") or {}
        git = record.get("git") or {}
        return {
            "name": str(record.get("name")),
            "version": record.get("version"),
            "created": record.get("created"),
            "run": run.get("id") if isinstance(run, dict) else None,
            "experiment": run.get("experiment") if isinstance(run, dict) else None,
            "pipeline": pipeline.get("name") if isinstance(pipeline, dict) else None,
            "metrics": scalar_metrics(record.get("metrics")),
            "who": actor_name(record.get("who")),
            "commit": git.get("commit") if isinstance(git, dict) else None,
            "artifact": (record.get("artifact") or {}).get("digest"),
        }
    if kind == "alias_move":
        return {**record, "by": actor_name(record.get("by")), "current": "/aliases/" in key}
    if kind == "event":
        text = "; ".join(
            f"{k}={short(v, 80)}" for k, v in sorted(record.items()) if k not in _EVENT_SKIP
        )
        found = {
            "key": key,
            "id": str(record.get("id")),
            "type": str(record.get("type")),
            "time": str(record.get("time")),
            "actor": actor_name(record.get("actor")),
            "model": record.get("model"),
            "version": record.get("version"),
            "text": short(text, 400),
        }
        for name in (
            "release",
            "decision",
            "passed",
            "monitor",
            "verdict",
            "drift_share",
            "drifted_features",
            "rows",
            "report",
            "alias",
            "action",
            "reason",
        ):
            if name in record:
                found[name] = record[name]
        return found
    return dict(record)  # rollouts and deployments: small, shown whole


class Reads:
    """The store, with the records this build already read served from memory (for the
    services the pages call, like lineage). Only ``get`` is answered here."""

    def __init__(self, store: ObjectStore, records: dict[str, dict[str, Any]]) -> None:
        self._store = store
        self._records = records

    def get(self, key: str) -> bytes:
        record = self._records.get(key)
        if record is not None:
            return json.dumps(record).encode()
        return self._store.get(key)

    def record(self, key: str) -> dict[str, Any]:
        found = self._records.get(key)
        return found if found is not None else decode_stored(key, self._store.get(key))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def signature(size: int, etag: str, modified: float | None) -> str:
    return f"{size}:{etag}:{modified if modified is not None else ''}"


@dataclass
class Snapshot:
    """The store as the site shows it."""

    sigs: dict[str, str] = field(default_factory=dict)  # key -> signature
    records: dict[str, list[Any]] = field(default_factory=dict)  # key -> [sig, kind, summary]
    read: int = 0  # records read by this build
    full: dict[str, dict[str, Any]] = field(default_factory=dict)  # records read, whole
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    run_keys: dict[str, str] = field(default_factory=dict)
    versions: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    version_keys: dict[tuple[str, int], str] = field(default_factory=dict)
    aliases: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    history: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    rollouts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    deployments: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def take(store: ObjectStore, cached: dict[str, list[Any]], threads: int = 16) -> Snapshot:
    """List the store once and read the records whose signature is not the cached one."""
    snap = Snapshot()
    listed: list[tuple[str, str, str]] = []
    for prefix in PREFIXES:
        for info in store.list_info(prefix):
            kind = kind_of_key(info.key)
            if kind in KINDS:
                listed.append((info.key, str(kind), signature(info.size, info.etag, info.modified)))
    todo = []
    for key, kind, sig in listed:
        old = cached.get(key)
        if old is not None and old[0] == sig and old[1] == kind:
            snap.records[key] = old
        else:
            todo.append((key, kind, sig))

    def read(item: tuple[str, str, str]) -> tuple[str, list[Any]] | None:
        key, kind, sig = item
        try:
            record = decode_stored(key, store.get(key))
        except (NotFound, RecordInvalid):
            return None  # deleted since it was listed, or not a record: nothing to show
        if kind in ("run", "version", "event"):
            snap.full[key] = record  # the pages of this record are rebuilt: no second read
        return key, [sig, kind, summarize(kind, key, record)]

    if threads > 1 and len(todo) > 1:
        with ThreadPoolExecutor(max_workers=min(threads, len(todo))) as pool:
            results = list(pool.map(read, todo))
    else:
        results = [read(item) for item in todo]
    for found in results:
        if found is not None:
            snap.records[found[0]] = found[1]
    snap.read = len(todo)
    _assemble(snap)
    return snap


def _assemble(snap: Snapshot) -> None:
    moves: dict[str, dict[str, dict[int, dict[str, Any]]]] = {}
    for key in sorted(snap.records):
        sig, kind, data = snap.records[key]
        snap.sigs[key] = sig
        if kind == "run":
            snap.runs[data["id"]] = data
            snap.run_keys[data["id"]] = key
        elif kind == "version" and isinstance(data.get("version"), int):
            ident = (data["name"], data["version"])
            snap.versions[ident] = data
            snap.version_keys[ident] = key
        elif kind == "alias_move":
            model, alias = str(data.get("model")), str(data.get("alias"))
            seq = data.get("seq") if isinstance(data.get("seq"), int) else 0
            if data.get("current"):
                snap.aliases.setdefault(model, {})[alias] = data
            moves.setdefault(model, {}).setdefault(alias, {}).setdefault(seq, data)
        elif kind == "event":
            snap.events.append(data)
        elif kind == "rollout":
            snap.rollouts.append((key, data))
        elif kind == "deployment":
            snap.deployments.append((key, data))
    for model, by_alias in moves.items():
        snap.history[model] = {a: [m[s] for s in sorted(m)] for a, m in by_alias.items()}
    snap.events.sort(key=lambda e: e["id"])
