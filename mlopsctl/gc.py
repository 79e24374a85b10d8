"""Garbage collection: delete blobs and cache entries that no model version and no kept run
reaches. Nothing younger than the grace period is touched, so a registration or run still in
flight (blob written, record not yet) never loses its blob. Records themselves (runs, versions,
events) are the audit trail and are never deleted."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from mlopsctl.records import cache_entry, decode_stored

if TYPE_CHECKING:
    from mlopsctl.store.base import ObjectStore

DEFAULT_GRACE_S = 3600.0


@dataclass
class GcReport:
    dry_run: bool
    runs_total: int = 0
    runs_kept: int = 0
    versions: int = 0
    blobs_total: int = 0
    blobs_deleted: list[str] = field(default_factory=list)
    bytes_freed: int = 0
    cache_deleted: list[str] = field(default_factory=list)
    uploads_aborted: list[str] = field(default_factory=list)
    kept_young: int = 0  # unreachable, but inside the grace period

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _load_all(store: ObjectStore, keys: list[str]) -> list[dict[str, Any]]:
    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(lambda k: decode_stored(k, store.get(k)), keys))


def _version_digests(version: dict[str, Any]) -> set[str]:
    found = {version["artifact"]["digest"]}
    data = version.get("data") or {}
    found |= {d["digest"] for d in (data.get("training") or {}).values()}
    evaluation = version.get("evaluation") or {}
    found |= {d["digest"] for d in (evaluation.get("data") or {}).values()}
    found |= {r["digest"] for r in (evaluation.get("outputs") or {}).values()}
    return found


def _run_digests(run: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    for step in (run.get("steps") or {}).values():
        found |= set((step.get("inputs") or {}).values())
        found |= {r["digest"] for r in (step.get("outputs") or {}).values()}
    return found


def collect_garbage(
    store: ObjectStore,
    *,
    keep_last: int | None = None,
    grace_s: float = DEFAULT_GRACE_S,
    dry_run: bool = False,
) -> GcReport:
    from mlopsctl.registry import MODELS
    from mlopsctl.runs import RUNS, run_ids
    from mlopsctl.store.blobs import blob_key

    report = GcReport(dry_run=dry_run)
    cutoff = time.time() - grace_s

    versions = _load_all(store, [k for k in store.list(MODELS) if "/versions/" in k])
    report.versions = len(versions)
    reachable: set[str] = set()
    version_runs: set[str] = set()
    for version in versions:
        reachable |= _version_digests(version)
        version_runs.add((version.get("run") or {}).get("id", ""))

    ids = run_ids(store)  # pipeline runs, oldest first (ids sort by start time)
    report.runs_total = len(ids)
    kept = set(ids if keep_last is None else ids[len(ids) - keep_last :] if keep_last else [])
    kept |= version_runs & set(ids)
    report.runs_kept = len(kept)
    for run in _load_all(store, [f"{RUNS}{i}.json" for i in sorted(kept)]):
        reachable |= _run_digests(run)

    # A cache entry is worth keeping only while every blob it names stays.
    for info in store.list_info("cache/"):
        if not info.key.endswith(".json"):
            continue
        entry = cache_entry.from_json(store.get(info.key))
        outputs = {r["digest"] for r in (entry.get("outputs") or {}).values()}
        if outputs <= reachable:
            continue
        if info.modified is not None and info.modified > cutoff:
            reachable |= outputs  # young: a run may be about to record it
            report.kept_young += 1
            continue
        report.cache_deleted.append(info.key)
        if not dry_run:
            store.delete(info.key)

    reachable_keys = {blob_key(d) for d in reachable}
    for info in store.list_info("blobs/"):
        report.blobs_total += 1
        if info.key in reachable_keys:
            continue
        if info.modified is not None and info.modified > cutoff:
            report.kept_young += 1
            continue
        report.blobs_deleted.append(info.key)
        report.bytes_freed += info.size
        if not dry_run:
            store.delete(info.key)

    for upload in store.stale_uploads(older_than_s=grace_s):
        report.uploads_aborted.append(upload)
        if not dry_run:
            store.abort_upload(upload)
    return report
