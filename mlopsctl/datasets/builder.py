"""Build a training table from what a model served and the outcomes that came back, store it
content-addressed, and record where it came from.

    blobs/sha256/<..>/<hex>               the table, Parquet (zstd): features, then the target
    datasets/<name>/<hex>.json            its record: window, counts, and the lineage (every
                                          prediction and feedback log file read, by key and
                                          sha256, and every mixed-in source)

The record's key is the table's digest: building the same table again writes nothing new and
says which build made it first (`existing`). The rules of the join are in join.py; mixed-in
data in mix.py. A build with no labelled row and nothing mixed in is refused (NotFound).
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlopsctl.datasets.join import join_window
from mlopsctl.datasets.logs import feedback_keys, local_files, prediction_keys
from mlopsctl.datasets.mix import cast_target, conform, load_source
from mlopsctl.datasets.spec import mix_sources, resolve_window
from mlopsctl.digest import canonical_json, format_digest, parse_digest, sha256_file
from mlopsctl.errors import AlreadyExists, NotFound, UsageError
from mlopsctl.names import check_name
from mlopsctl.provenance import where, who
from mlopsctl.records import dataset as dataset_kind
from mlopsctl.spec import load_spec
from mlopsctl.store.blobs import put_blob_file
from mlopsctl.timeutil import stamp, utc_now

if TYPE_CHECKING:
    import pyarrow as pa

    from mlopsctl.records.dataset import DatasetRecord
    from mlopsctl.store.base import ObjectStore

PREFIX = "datasets/"
DEFAULT_TARGET = "target"


def record_key(name: str, digest: str) -> str:
    return f"{PREFIX}{check_name('dataset', name)}/{parse_digest(digest)}.json"


def name_prefix(name: str) -> str:
    return f"{PREFIX}{check_name('dataset', name)}/"


@dataclass
class Built:
    """A built table: its digest and record (``key`` once stored)."""

    digest: str
    record: dict[str, Any]
    path: Path | None = None  # the Parquet file, while the build's folder lasts
    key: str | None = None
    existing: bool = False  # an identical table was built and recorded before
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return int(self.record["rows"])

    def summary(self) -> dict[str, Any]:
        """What a run's reason or a trigger's state keeps of it."""
        record = self.record
        sources = record["sources"]
        return {
            "name": record["name"],
            "digest": self.digest,
            "record": self.key,
            "rows": record["rows"],
            "window": record["window"],
            "labels_through": record.get("labels_through"),
            "counts": record["counts"],
            "predictions": {
                "prefix": sources["predictions"]["prefix"],
                "files": len(sources["predictions"]["files"]),
            },
            "feedback": {
                "prefix": sources["feedback"]["prefix"],
                "files": len(sources["feedback"]["files"]),
            },
            "mix": [m.get("source") for m in sources.get("mix") or []],
        }


def model_signature(store: ObjectStore, model: str) -> dict[str, Any] | None:
    """The signature of the model's latest version (None when it has none)."""
    from mlopsctl.registry import get_version, latest_version

    try:
        latest = latest_version(store, model)
        if latest is None:
            return None
        signature = get_version(store, model, latest).get("signature")
    except NotFound:
        return None
    return dict(signature) if signature else None


def build(
    store: ObjectStore,
    definition: dict[str, Any],
    *,
    name: str,
    root: Path,
    now: datetime | None = None,
    spec: dict[str, Any] | None = None,
    save: bool = True,
    new_after: datetime | None = None,
    workdir: Path | None = None,
) -> Built:
    """Build the table `definition` ({from_logs, mix}) names at `now` (default: the clock).
    With `save`, store it and its record under `name`; otherwise only compute its digest and
    record (what `ct check` judges before deciding to run). `spec` ({path, digest}) is the
    Dataset spec it came from; `new_after` counts the labels that came after that time
    (``counts.new_labels``). The Parquet file is left in `workdir` when one is given."""
    check_name("dataset", name)
    moment = (now or utc_now()).astimezone(timezone.utc)
    from_logs = dict(definition["from_logs"])
    model = check_name("model", str(from_logs["model"]))
    window = resolve_window(from_logs, moment)
    if window.since > moment:
        raise UsageError(f"the window starts after now ({stamp(window.since)})")
    signature = model_signature(store, model) or {}
    target = str(from_logs.get("target") or signature.get("target") or DEFAULT_TARGET)
    known = [str(f["name"]) for f in signature.get("features") or [] if "name" in f] or None
    version = from_logs.get("version")
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    pred_keys = prediction_keys(store, model, window)
    feed_keys = feedback_keys(store, model, window) if pred_keys else []
    with local_files(store, pred_keys) as pred_files, local_files(store, feed_keys) as feed_files:
        timings["read_s"] = time.perf_counter() - clock
        clock = time.perf_counter()
        joined = join_window(
            [f.path for f in pred_files],
            [f.path for f in feed_files],
            since=window.since,
            until=window.until,
            labels_until=moment,
            target=target,
            version=None if version in (None, "all") else int(version),
            known_features=known,
            wanted_features=list(from_logs["features"]) if from_logs.get("features") else None,
            new_after=new_after,
        )
        timings["join_s"] = time.perf_counter() - clock
        pred_lineage = [f.lineage() for f in pred_files]
        feed_lineage = [f.lineage() for f in feed_files]
    clock = time.perf_counter()
    table, mixed = _combine(joined.table, joined.features, target, definition, root, store)
    counts = {**joined.counts, "mixed_rows": sum(int(m["rows"]) for m in mixed)}
    if table is None or table.num_rows == 0:
        raise NotFound(
            f"no labelled rows of {model} in [{stamp(window.since)}, {stamp(window.until)}) "
            f"({counts.get('logged_rows', 0)} logged, {counts.get('unlabelled_rows', 0)} "
            "without an outcome) and nothing mixed in",
            "send outcomes (POST /feedback, mlopsctl feedback) or widen the window",
        )
    timings["combine_s"] = time.perf_counter() - clock
    record: dict[str, Any] = {
        "name": name,
        "rows": table.num_rows,
        "columns": list(table.column_names),
        "target": target,
        "format": "parquet",
        "window": {**window.as_dict(), "labels_until": stamp(moment)},
        "labels_through": (
            stamp(datetime.fromtimestamp(joined.labels_through / 1000, timezone.utc))
            if joined.labels_through is not None
            else None
        ),
        "from_logs": from_logs,
        "counts": counts,
        "sources": {
            "predictions": {"prefix": f"logs/predictions/{model}/", "files": pred_lineage},
            "feedback": {"prefix": f"logs/feedback/{model}/", "files": feed_lineage},
            "mix": mixed,
        },
        "spec": spec,
    }
    clock = time.perf_counter()
    own = workdir is None
    folder = Path(tempfile.mkdtemp(prefix="mlopsctl-dataset-")) if workdir is None else workdir
    path = folder / "dataset.parquet"
    try:
        digest = _write(table, path)
        timings["write_s"] = time.perf_counter() - clock
        built = Built(digest, {"digest": digest, **record}, path, timings=timings)
        if save:
            clock = time.perf_counter()
            save_built(store, built, moment)
            timings["store_s"] = time.perf_counter() - clock
    finally:
        if own:
            path.unlink(missing_ok=True)
            os.rmdir(folder)
    if own:
        built.path = None
    return built


def _combine(
    logged: pa.Table | None,
    features: list[str],
    target: str,
    definition: dict[str, Any],
    root: Path,
    store: ObjectStore,
) -> tuple[pa.Table | None, list[dict[str, Any]]]:
    """The logged rows with the outcome typed (see outcome_type), then every mixed-in table
    conformed to them."""
    import pyarrow as pa

    tables: list[pa.Table] = []
    target_type = None
    if logged is not None and logged.num_rows:
        outcome = logged.column(target)
        target_type = outcome_type(outcome)
        logged = logged.set_column(
            logged.num_columns - 1, target, cast_target(outcome, target_type)
        )
        tables.append(logged)
    mixed: list[dict[str, Any]] = []
    for source in mix_sources(definition.get("mix")):
        table, lineage = load_source(source, root, store)
        what = str(lineage["source"])
        if not tables:  # nothing logged: the first mixed table sets the columns
            features = features or [c for c in table.column_names if c != target]
            if target not in table.column_names:
                raise UsageError(f"mix source {what} has no target column {target!r}")
            target_type = table.column(target).type
        tables.append(conform(table, features, target, what, target_type))
        mixed.append(lineage)
    if not tables:
        return None, mixed
    return pa.concat_tables(tables, promote_options="permissive"), mixed


def outcome_type(column: Any) -> Any:
    """The type of the logged outcomes: numbers stay float64; text becomes int64 when every
    outcome is a whole number written as text ("0", "1": the classes of most classifiers),
    float64 when every one is a number, and stays text otherwise."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
        return pa.float64() if pa.types.is_floating(column.type) else column.type
    for kind in (pa.int64(), pa.float64()):
        try:
            pc.cast(column, kind)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        return kind
    return pa.string()


def _write(table: pa.Table, path: Path) -> str:
    """Write the table as Parquet and return its digest: the same table gives the same bytes
    (no pandas metadata; the writer's own version is in the footer)."""
    import hashlib

    import pyarrow.parquet as pq

    table = table.replace_schema_metadata(None)
    pq.write_table(table, path, compression="zstd", row_group_size=1 << 20)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(4 << 20):
            digest.update(chunk)
    return format_digest(digest.hexdigest())


def save_built(store: ObjectStore, built: Built, moment: datetime | None = None) -> Built:
    """Store a table built with save=False (its file still there): the blob, then the record
    pointing at it (put-if-absent: the first build of an identical table keeps its record).
    `moment`: when it was built (default: its window's labels_until)."""
    assert built.path is not None
    digest = put_blob_file(store, built.path)
    if digest != built.digest:  # the file changed under us
        raise UsageError("the dataset file changed while it was stored", "build it again")
    key = record_key(built.record["name"], digest)
    when = stamp(moment) if moment is not None else built.record["window"]["labels_until"]
    record = {**built.record, "built": when, "who": who(Path.cwd()), "where": where()}
    try:
        store.put_if_absent(key, canonical_json(record))
        built.record = record
    except AlreadyExists:
        built.existing = True
        built.record = dict(dataset_kind.from_json(store.get(key)))
    built.key = key
    return built


def list_datasets(store: ObjectStore, name: str | None = None) -> list[DatasetRecord]:
    """Every build's record (of `name`, or of every dataset), oldest first: the one reader of
    dataset records."""
    prefix = name_prefix(name) if name else PREFIX
    records = [
        dataset_kind.from_json(store.get(key))
        for key in store.list(prefix)
        if key.endswith(".json") and key.count("/") == 2
    ]
    return sorted(records, key=lambda r: (str(r.get("built")), str(r.get("digest"))))


def get_dataset(store: ObjectStore, ref: str) -> DatasetRecord:
    """A build's record: NAME (its latest build), NAME@sha256:... or NAME@<hex prefix>."""
    name, _, which = ref.partition("@")
    builds = list_datasets(store, name)
    if not builds:
        raise NotFound(
            f"no dataset named '{name}' in the store", "build it: mlopsctl datasets build"
        )
    if not which:
        return builds[-1]
    wanted = which.removeprefix("sha256:")
    found = [
        b for b in builds if str(b.get("digest", "")).removeprefix("sha256:").startswith(wanted)
    ]
    if len(found) != 1:
        more = "matches several builds" if found else "matches no build"
        raise NotFound(f"{which} {more} of dataset '{name}'", "list them: mlopsctl datasets list")
    return found[0]


def build_spec(
    spec_path: Path,
    *,
    project: Any,
    store: ObjectStore,
    until: str | None = None,
    now: datetime | None = None,
    save: bool = True,
) -> Built:
    """Build the Dataset spec at `spec_path` (a kind: Dataset file) for `project` (mix paths
    are relative to its root); `until` replaces the spec's from_logs.until."""
    if not spec_path.is_file():
        raise NotFound(
            f"no such dataset spec: {spec_path}", "give the path of a kind: Dataset file"
        )
    spec = load_spec(spec_path, kind="Dataset")
    from_logs = dict(spec["from_logs"])
    if until is not None:
        from_logs["until"] = until
    try:
        shown = spec_path.resolve().relative_to(Path(project.root).resolve()).as_posix()
    except ValueError:
        shown = str(spec_path)
    definition = {"from_logs": from_logs, "mix": spec.get("mix")}
    return build(
        store,
        definition,
        name=str(spec["name"]),
        root=Path(project.root),
        now=now,
        spec={"path": shown, "digest": sha256_file(spec_path)},
        save=save,
    )
