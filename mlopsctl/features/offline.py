"""The offline store: a feature set's rows as date-partitioned Parquet in the object store.

    features/<set>/offline/date=YYYY-MM-DD/<sha256>.parquet   one file per event date, named
                                                              by its content (put-if-absent)
    features/<set>/manifests/<sha256>.json                    one materialisation: the spec's
                                                              digest and every partition file
    features/<set>/current.json                               which manifest is current
                                                              (moved by compare-and-swap)

Rows are deduplicated on (entity keys, event time) when written: the row with the latest
created time wins, and without a created_timestamp (or on a tie of it) the row that comes last
in the source. So a point-in-time join never meets two candidate rows with the same time, and
a re-materialisation of unchanged data rewrites nothing. The set's content digest (what
lineage records) is the digest of its list of partition files."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlopsctl.digest import parse_digest, sha256_file, sha256_json
from mlopsctl.errors import AlreadyExists, Conflict, NotFound
from mlopsctl.features.source import check_loaded, connect, quote, source_files, typed_view
from mlopsctl.features.spec import FeatureSet, check_featureset_name
from mlopsctl.timeutil import stamp

if TYPE_CHECKING:
    from mlopsctl.store.base import ObjectStore

PREFIX = "features/"
_CAS_TRIES = 5


def set_prefix(name: str) -> str:
    return f"{PREFIX}{check_featureset_name(name)}/"


def current_key(name: str) -> str:
    return f"{set_prefix(name)}current.json"


def manifest_key(name: str, hex_digest: str) -> str:
    return f"{set_prefix(name)}manifests/{hex_digest}.json"


def part_key(name: str, date: str, hex_digest: str) -> str:
    return f"{set_prefix(name)}offline/date={date}/{hex_digest}.parquet"


@contextmanager
def workdir() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="mlopsctl-features-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def materialize_offline(
    store: ObjectStore, fs: FeatureSet, project_root: Path, *, threads: int | None = None
) -> dict[str, Any]:
    """Read, transform, type and deduplicate the set's source and store it as partitioned
    Parquet; make its manifest current. Returns the manifest with ``changed`` (whether the
    current manifest moved) and ``uploaded`` (partition files new to the store)."""
    with workdir() as work:
        con = connect(threads)
        try:
            files, fmt = source_files(fs, project_root, store, work)
            view = typed_view(con, fs, files, fmt, project_root)
            check_loaded(con, view, fs)
            partitions = _write_partitions(con, fs, view, work / "out")
        finally:
            con.close()
        uploaded = 0
        listed: dict[str, dict[str, Any]] = {}
        for date, (path, rows) in sorted(partitions.items()):
            hex_digest = parse_digest(sha256_file(path))
            key = part_key(fs.name, date, hex_digest)
            try:
                store.put_file(key, path, if_absent=True)
                uploaded += 1
            except AlreadyExists:
                pass  # the same bytes are there already
            listed[date] = {"file": hex_digest, "rows": rows, "bytes": path.stat().st_size}
    data_digest = sha256_json({d: p["file"] for d, p in listed.items()})
    dates = sorted(listed)
    manifest: dict[str, Any] = {
        "name": fs.name,
        "digest": data_digest,
        "spec_digest": fs.spec_digest,
        "featureset": fs.describe(),
        "created_timestamp": fs.created_timestamp,
        "partitions": listed,
        "rows": sum(p["rows"] for p in listed.values()),
        "first_date": dates[0] if dates else None,
        "last_date": dates[-1] if dates else None,
        "created": stamp(),
    }
    hex_key = parse_digest(sha256_json({"data": data_digest, "spec": fs.spec_digest}))
    try:
        store.put_if_absent(manifest_key(fs.name, hex_key), json.dumps(manifest, indent=2).encode())
    except AlreadyExists:
        manifest = json.loads(store.get(manifest_key(fs.name, hex_key)))
    changed = _make_current(store, fs.name, hex_key, manifest)
    return {**manifest, "manifest": hex_key, "changed": changed, "uploaded": uploaded}


def _write_partitions(
    con: Any, fs: FeatureSet, view: str, out: Path
) -> dict[str, tuple[Path, int]]:
    keys = ", ".join(quote(k) for k in fs.keys)
    ts = quote(fs.timestamp)
    tie = f"{quote(fs.created_timestamp)} DESC NULLS LAST, " if fs.created_timestamp else ""
    # Source order is the order DuckDB scans the files in (preserve_insertion_order).
    con.execute(
        f"CREATE TEMP TABLE numbered AS SELECT *, row_number() OVER () AS __pos FROM {view}"
    )
    con.execute(
        f"""CREATE TEMP TABLE deduped AS
        SELECT * EXCLUDE (__pos, __n), strftime({ts}, '%Y-%m-%d') AS __date FROM (
            SELECT *, row_number() OVER (
                PARTITION BY {keys}, {ts} ORDER BY {tie}__pos DESC) AS __n
            FROM numbered WHERE {ts} IS NOT NULL)
        WHERE __n = 1"""
    )
    out.mkdir(parents=True)
    counts = dict(con.execute("SELECT __date, count(*) FROM deduped GROUP BY 1").fetchall())
    if counts:
        con.execute(
            f"""COPY (SELECT * FROM deduped ORDER BY __date, {keys}, {ts})
            TO {_literal(out)} (FORMAT PARQUET, PARTITION_BY (__date), COMPRESSION snappy,
                                OVERWRITE_OR_IGNORE true)"""
        )
    partitions: dict[str, tuple[Path, int]] = {}
    for date, rows in counts.items():
        folder = out / f"__date={date}"
        files = sorted(folder.glob("*.parquet"))
        if len(files) != 1:
            merged = folder / "merged.parquet"
            con.execute(
                f"COPY (SELECT * FROM read_parquet({_literal(folder)} || '/*.parquet') "
                f"ORDER BY {keys}, {ts}) TO {_literal(merged)} (FORMAT PARQUET, COMPRESSION snappy)"
            )
            files = [merged]
        partitions[str(date)] = (files[0], int(rows))
    return partitions


def _literal(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _make_current(store: ObjectStore, name: str, hex_key: str, manifest: dict[str, Any]) -> bool:
    """Point current.json at the manifest; False when it pointed there already."""
    body = {
        "manifest": hex_key,
        "digest": manifest["digest"],
        "spec_digest": manifest["spec_digest"],
        "updated": stamp(),
    }
    for _ in range(_CAS_TRIES):
        try:
            data, etag = store.get_versioned(current_key(name))
            if json.loads(data).get("manifest") == hex_key:
                return False
        except NotFound:
            etag = None
        try:
            store.compare_and_swap(current_key(name), json.dumps(body).encode(), etag)
            return True
        except (Conflict, AlreadyExists):
            continue  # another materialisation moved it: read again
    raise Conflict(
        f"feature set '{name}': current.json kept changing under {_CAS_TRIES} tries",
        "another materialisation is running; retry",
    )


def current_manifest(store: ObjectStore, name: str) -> dict[str, Any]:
    """The current manifest of a set (with ``manifest``, its key's digest); NotFound when the
    set was never materialised."""
    try:
        pointer = json.loads(store.get(current_key(name)))
    except NotFound:
        raise NotFound(
            f"feature set '{name}' has no offline data in the store",
            "run `mlopsctl features materialize-offline SPEC` first",
        ) from None
    hex_key = str(pointer["manifest"])
    manifest = json.loads(store.get(manifest_key(name, hex_key)))
    return {**manifest, "manifest": hex_key}


def cache_folder() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mlopsctl" / "features"


def local_files(store: ObjectStore, manifest: dict[str, Any]) -> list[Path]:
    """The manifest's partition files as local files: from the per-user cache, or fetched
    into it (each checked against its sha256 on the way)."""
    folder = cache_folder()
    folder.mkdir(parents=True, exist_ok=True)
    name = manifest["name"]
    out = []
    for date, part in sorted(manifest["partitions"].items()):
        hex_digest = part["file"]
        path = folder / f"{hex_digest}.parquet"
        if not path.is_file() or path.stat().st_size != part.get("bytes", path.stat().st_size):
            staging = folder / f".{hex_digest}.{os.getpid()}.tmp"
            store.get_file(part_key(name, date, hex_digest), staging, expect_sha256=hex_digest)
            os.replace(staging, path)
        out.append(path)
    return out


def list_featuresets(store: ObjectStore) -> list[dict[str, Any]]:
    """Every materialised set: its current manifest, without the partition list."""
    names = sorted({k[len(PREFIX) :].split("/", 1)[0] for k in store.list(PREFIX)})
    found = []
    for name in names:
        try:
            manifest = current_manifest(store, name)
        except NotFound:
            continue
        manifest.pop("partitions", None)
        found.append(manifest)
    return found
