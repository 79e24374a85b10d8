"""Point-in-time training sets: each label row joined with the feature values that were true at
its time, with DuckDB's ASOF LEFT JOIN.

The rule is Feast's: for a label row with entity key k at time t, each feature set contributes
its row of key k with the latest event time e such that e <= t and, when the set has a TTL,
e >= t - ttl (both bounds included). No such row: the set's features are NULL (a NULL key
never matches). A value that is NULL in the chosen row stays NULL (an older value does not
show through). Two rows of one key and time cannot both be candidates: the offline store
keeps one of them (offline.py says which). Every label row is kept, in its order, with all
its columns, the features of each set appended in the order given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlopsctl.errors import UsageError
from mlopsctl.features.offline import current_manifest, local_files
from mlopsctl.features.source import connect, literal, quote
from mlopsctl.features.spec import KEY_TYPES, FeatureSet, check_distinct

if TYPE_CHECKING:
    import duckdb
    import pandas as pd
    import pyarrow as pa

    from mlopsctl.store.base import ObjectStore

DEFAULT_TIMESTAMP = "event_timestamp"


@dataclass
class TrainingSet:
    """A joined table, and what it was made of."""

    table: pa.Table | None  # None when written straight to a file
    rows: int
    sets: list[dict[str, Any]] = field(default_factory=list)  # describe() + digest, manifest
    timestamp: str = DEFAULT_TIMESTAMP
    matched: dict[str, int] = field(default_factory=dict)  # set -> label rows that got values


def _labels_view(con: duckdb.DuckDBPyConnection, labels: Any) -> None:
    """``labels_raw``: a file (Parquet/CSV), a pandas DataFrame or a pyarrow Table."""
    if isinstance(labels, (str, Path)):
        path = str(labels)
        lower = path.lower()
        if Path(path).is_dir():
            source = f"read_parquet({literal(path + '/**/*.parquet')})"
        elif lower.endswith((".parquet", ".pq")):
            source = f"read_parquet({literal(path)})"
        elif lower.endswith((".csv", ".csv.gz", ".tsv")):
            source = f"read_csv({literal(path)}, header=true)"
        else:
            raise UsageError(
                f"cannot tell the format of {path}", "give a .parquet or .csv label table"
            )
        con.execute(f"CREATE VIEW labels_raw AS SELECT * FROM {source}")
    else:
        con.register("labels_frame", labels)
        con.execute("CREATE VIEW labels_raw AS SELECT * FROM labels_frame")


def join_files(
    labels: Any,
    sets: list[tuple[FeatureSet, list[Path]]],
    *,
    timestamp: str = DEFAULT_TIMESTAMP,
    out: Path | None = None,
    threads: int | None = None,
) -> TrainingSet:
    """The point-in-time join of ``labels`` with each set's (deduplicated) Parquet files.
    With ``out``, the result is written there as Parquet and not returned."""
    con = connect(threads)
    try:
        _labels_view(con, labels)
        types = {str(r[0]): str(r[1]) for r in con.execute("DESCRIBE labels_raw").fetchall()}
        _check_labels(types, sets, timestamp)
        key_types = _key_types(sets)
        # The label time as a naive UTC timestamp, the keys cast to the sets' key types, and
        # the row number that keeps the labels' order.
        extra = [f"{_utc(timestamp, types[timestamp])} AS __mlopsctl_label_ts"]
        extra += [
            f"TRY_CAST({quote(k)} AS {KEY_TYPES[t]}) AS {_key(k)}" for k, t in key_types.items()
        ]
        con.execute(
            "CREATE TEMP TABLE labels AS SELECT *, "
            + ", ".join(extra)
            + ", row_number() OVER () AS __mlopsctl_row FROM labels_raw"
        )
        select = [
            "l.* EXCLUDE (__mlopsctl_label_ts, __mlopsctl_row, "
            + ", ".join(_key(k) for k in key_types)
            + ")"
        ]
        joins = []
        for i, (fs, files) in enumerate(sets):
            alias = f"f{i}"
            cols = [f"{quote(k)} AS {_key(k)}" for k in fs.keys]
            cols.append(f"{quote(fs.timestamp)} AS __ts")
            cols += [quote(f) for f in fs.feature_names]
            if files:
                listing = "[" + ", ".join(literal(str(p)) for p in files) + "]"
                source = f"read_parquet({listing})"
                con.execute(f"CREATE VIEW {alias}_raw AS SELECT {', '.join(cols)} FROM {source}")
            else:  # a set with no rows: every label gets NULLs
                empty = [f"CAST(NULL AS {KEY_TYPES[t]}) AS {_key(k)}" for k, t in fs.entities]
                empty.append("CAST(NULL AS TIMESTAMP) AS __ts")
                empty += [f"CAST(NULL AS VARCHAR) AS {quote(f)}" for f in fs.feature_names]
                con.execute(f"CREATE VIEW {alias}_raw AS SELECT {', '.join(empty)} LIMIT 0")
            on = [f"l.{_key(k)} = {alias}.{_key(k)}" for k in fs.keys]
            on.append(f"l.__mlopsctl_label_ts >= {alias}.__ts")
            joins.append(f"ASOF LEFT JOIN {alias}_raw AS {alias} ON {' AND '.join(on)}")
            fresh = f"{alias}.__ts IS NOT NULL"
            if fs.ttl is not None:
                seconds = int(fs.ttl.total_seconds())
                fresh = f"{alias}.__ts >= l.__mlopsctl_label_ts - INTERVAL {seconds} SECOND"
            for name in fs.feature_names:
                select.append(f"CASE WHEN {fresh} THEN {alias}.{quote(name)} END AS {quote(name)}")
            select.append(f"({fresh}) AS {_matched(i)}")
        query = (
            f"SELECT {', '.join(select)} FROM labels AS l {' '.join(joins)} "
            "ORDER BY l.__mlopsctl_row"
        )
        con.execute(f"CREATE TEMP TABLE joined AS {query}")
        matched_cols = ", ".join(f"count(*) FILTER (WHERE {_matched(i)})" for i in range(len(sets)))
        counts = con.execute(f"SELECT count(*), {matched_cols} FROM joined").fetchall()[0]
        assert counts is not None
        drop = ", ".join(_matched(i) for i in range(len(sets)))
        final = f"SELECT * EXCLUDE ({drop}) FROM joined"  # in insertion order: the labels'
        table = None
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            target = literal(str(out))
            con.execute(f"COPY ({final}) TO {target} (FORMAT PARQUET, COMPRESSION snappy)")
        else:
            table = arrow_table(con, final)
        return TrainingSet(
            table=table,
            rows=int(counts[0]),
            sets=[fs.describe() for fs, _ in sets],
            timestamp=timestamp,
            matched={fs.name: int(counts[i + 1]) for i, (fs, _) in enumerate(sets)},
        )
    finally:
        con.close()


def _key(name: str) -> str:
    """The column a label's (or a feature row's) key is joined on, cast to the set's type."""
    return quote("__mlopsctl_key_" + name)


def _matched(index: int) -> str:
    return quote(f"__mlopsctl_matched_{index}")


def arrow_table(con: duckdb.DuckDBPyConnection, query: str) -> pa.Table:
    """A query's result as a pyarrow Table (DuckDB 2 names it to_arrow_table, 1.x arrow)."""
    relation = con.sql(query)
    fetch = getattr(relation, "to_arrow_table", None) or relation.arrow
    table: pa.Table = fetch()
    return table


def _utc(column: str, kind: str) -> str:
    kind = kind.upper()
    if kind.startswith("TIMESTAMP") or kind == "DATE":
        return f"CAST({quote(column)} AS TIMESTAMP)"
    if kind == "VARCHAR":
        return f"CAST(CAST({quote(column)} AS TIMESTAMPTZ) AS TIMESTAMP)"
    raise UsageError(
        f"label column '{column}' is {kind}, not a time",
        "give the label time as a timestamp, a date or ISO 8601 text",
    )


def _check_labels(
    types: dict[str, str], sets: list[tuple[FeatureSet, list[Path]]], timestamp: str
) -> None:
    if timestamp not in types:
        raise UsageError(
            f"the label table has no column '{timestamp}' (it has: {', '.join(types)})",
            "name the label time column with --timestamp",
        )
    for fs, _ in sets:
        missing = [k for k in fs.keys if k not in types]
        if missing:
            raise UsageError(
                f"the label table has no entity key column(s) {', '.join(missing)} of feature "
                f"set '{fs.name}'"
            )
        clash = [f for f in fs.feature_names if f in types]
        if clash:
            raise UsageError(
                f"the label table already has column(s) {', '.join(clash)}, which feature set "
                f"'{fs.name}' adds",
                "rename or drop them in the label table",
            )


def _key_types(sets: list[tuple[FeatureSet, list[Path]]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for fs, _ in sets:
        for key, kind in fs.entities:
            if found.setdefault(key, kind) != kind:
                raise UsageError(
                    f"entity key '{key}' is {found[key]} in one feature set and {kind} in "
                    f"'{fs.name}'"
                )
    return found


def training_set(
    store: ObjectStore,
    sets: list[FeatureSet],
    labels: Any,
    *,
    timestamp: str = DEFAULT_TIMESTAMP,
    out: Path | None = None,
    threads: int | None = None,
) -> TrainingSet:
    """Join ``labels`` with the current offline data of each set (fetched into the per-user
    cache, verified). The result's ``sets`` carry each set's content digest and manifest."""
    check_distinct(sets)
    inputs = []
    described = []
    bounds = label_bounds(labels, timestamp)
    for fs in sets:
        manifest = current_manifest(store, fs.name)
        if manifest.get("spec_digest") != fs.spec_digest:
            raise UsageError(
                f"feature set '{fs.name}' changed since it was materialised (its spec digest "
                "differs from the stored data's)",
                f"run `mlopsctl features materialize-offline` for '{fs.name}' again",
            )
        # Only the date partitions a label can reach: from the earliest label's time less the
        # TTL to the latest label's time (rows outside could never be chosen).
        wanted = manifest["partitions"]
        if bounds is not None:
            first, last = bounds
            low = (first - fs.ttl).strftime("%Y-%m-%d") if fs.ttl is not None else ""
            high = last.strftime("%Y-%m-%d")
            wanted = {d: p for d, p in wanted.items() if low <= d <= high}
        inputs.append((fs, local_files(store, {**manifest, "partitions": wanted})))
        described.append(
            {**fs.describe(), "digest": manifest["digest"], "manifest": manifest["manifest"]}
        )
    result = join_files(labels, inputs, timestamp=timestamp, out=out, threads=threads)
    result.sets = described
    return result


def label_bounds(labels: Any, timestamp: str) -> tuple[datetime, datetime] | None:
    """The earliest and latest label time (naive UTC), or None when there is none (or the
    column is missing: join_files says so)."""
    con = connect()
    try:
        _labels_view(con, labels)
        types = {str(r[0]): str(r[1]) for r in con.execute("DESCRIBE labels_raw").fetchall()}
        if timestamp not in types:
            return None
        ts = _utc(timestamp, types[timestamp])
        row = con.execute(f"SELECT min({ts}), max({ts}) FROM labels_raw").fetchall()[0]
    finally:
        con.close()
    if row[0] is None or row[1] is None:
        return None
    return row[0], row[1]


def as_frame(result: TrainingSet) -> pd.DataFrame:
    assert result.table is not None
    frame: pd.DataFrame = result.table.to_pandas()
    return frame
