"""Reading the data a monitor checks, in bounded memory: a CSV or Parquet file, a folder of them,
an ``s3://bucket/prefix`` of them, or a ``store:prefix`` in the project's store (prediction and
feedback logs, laid out as ``<prefix>/date=YYYY-MM-DD/<file>.parquet``).

Files are streamed in record batches of ``BATCH_ROWS`` (``ParquetFile.iter_batches``,
``pyarrow.csv.open_csv``), one file at a time; objects in a store are downloaded to a temporary
file one at a time and deleted once read. With a window [since, until), ``date=`` partitions
wholly before ``since`` or at/after ``until`` are not even listed as candidates (the dates are UTC
days); rows are then filtered on the time column. ``baseline: previous_window`` reads the same
source over [now - 2*window, now - window) this way.

CSV columns are read with the types the monitor expects (float64 for numeric features, string
for categorical ones) so that a block whose values look like integers does not clash with a
later block holding decimals; a numeric feature whose first block is not numeric is read as text
and reported as a type mismatch instead.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlopsctl.errors import NotFound, UsageError
from mlopsctl.timeutil import parse_duration, utc_now

if TYPE_CHECKING:
    import pyarrow as pa

    from mlopsctl.records.version import VersionRecord
    from mlopsctl.store.base import ObjectStore

BATCH_ROWS = 262_144
SUFFIXES = (".parquet", ".pq", ".csv", ".csv.gz")
STORE_SCHEME = "store:"
_DATE_PART = re.compile(r"(?:^|/)date=(\d{4}-\d{2}-\d{2})(?:/|$)")


class NoDataFiles(NotFound):
    """A folder or prefix exists (or may) but holds no data file in the window."""


def parse_window(text: str | None) -> timedelta | None:
    """current.window (``30m``, ``24h``, ``7d``, ``2w``) as a timedelta; None without one."""
    if not text:
        return None
    return parse_duration(text, what="window")


def _is_data(name: str) -> bool:
    return name.lower().endswith(SUFFIXES)


def _in_window(key: str, since: datetime | None, until: datetime | None = None) -> bool:
    """Whether a ``date=YYYY-MM-DD`` partition (a UTC day) can hold rows in [since, until); keys
    without a date partition are always candidates."""
    if since is None and until is None:
        return True
    match = _DATE_PART.search(key)
    if match is None:
        return True
    day = match.group(1)
    if since is not None and day < _utc(since).strftime("%Y-%m-%d"):
        return False
    # The day starts at midnight UTC: it holds rows before ``until`` iff it starts before it.
    if until is None:
        return True
    try:
        start = datetime.fromisoformat(day).replace(tzinfo=timezone.utc)
    except ValueError:  # date=2024-13-99 is no date: read it rather than guess
        return True
    return start < _utc(until)


def _utc(moment: datetime) -> datetime:
    """Aware UTC time; naive times are UTC (as in the logs)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


@contextmanager
def _downloads(store: ObjectStore, keys: list[str]) -> Iterator[Iterator[Path]]:
    with tempfile.TemporaryDirectory(prefix="mlopsctl-monitor-") as tmp:

        def each() -> Iterator[Path]:
            for number, key in enumerate(keys):
                dest = Path(tmp) / f"{number}-{key.rsplit('/', 1)[-1]}"
                store.get_file(key, dest)
                try:
                    yield dest
                finally:
                    dest.unlink(missing_ok=True)

        yield each()


def iter_files(
    location: str,
    *,
    root: Path,
    store: ObjectStore | None,
    since: datetime | None = None,
    s3_options: dict[str, Any] | None = None,
    until: datetime | None = None,
) -> Iterator[Path]:
    """Local paths of every data file at ``location``, in name order (downloaded one at a time
    from a store), leaving out ``date=`` partitions outside [since, until). Raises NotFound when
    there is none."""
    if location.startswith(STORE_SCHEME):
        if store is None:
            raise UsageError(f"{location} names the project store, but there is no project store")
        prefix = location[len(STORE_SCHEME) :].lstrip("/")
        yield from _from_store(store, prefix, location, since, until)
        return
    if location.startswith("s3://"):
        from mlopsctl.store import open_store

        parent, _, last = location.rstrip("/").rpartition("/")
        if parent in ("s3:/", "s3:"):
            parent, last = location.rstrip("/"), ""
        with open_store(parent, s3_options=s3_options or {}) as remote:
            yield from _from_store(remote, last, location, since, until)
        return
    path = Path(location)
    if not path.is_absolute():
        path = root / path
    if path.is_file():
        yield path
        return
    if path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file()
            and _is_data(p.name)
            and _in_window(p.relative_to(path).as_posix(), since, until)
        )
        if not files:
            raise NoDataFiles(
                f"no CSV or Parquet files in {path}", "point current.path at your data"
            )
        yield from files
        return
    raise NotFound(
        f"no data at {path}", "check the path (relative paths start at the project root)"
    )


def _from_store(
    store: ObjectStore,
    prefix: str,
    label: str,
    since: datetime | None,
    until: datetime | None = None,
) -> Iterator[Path]:
    keys = sorted(
        k
        for k in store.list(prefix)
        if (not prefix or k == prefix or k.startswith(prefix.rstrip("/") + "/"))
        and _is_data(k)
        and _in_window(k, since, until)
    )
    if not keys:
        raise NoDataFiles(f"no CSV or Parquet files under {label}", "check the prefix and window")
    with _downloads(store, keys) as files:
        yield from files


def feature_column(present: set[str] | list[str], name: str) -> str:
    """Where a feature's values are in data with the columns ``present``: serving logs a
    feature named like one of its own columns (``ts``, ``score``, ...) as ``feature.<name>``,
    so that is read where there is one; otherwise the feature's own name."""
    from mlopsctl.logformat import FEATURE_PREFIX, FIXED_COLUMNS

    logged = FEATURE_PREFIX + name
    return logged if name in FIXED_COLUMNS and logged in present else name


def logged_names(names: list[str]) -> list[str]:
    """``names`` with the feature.<name> column of each that serving logs under that name."""
    from mlopsctl.logformat import FEATURE_PREFIX, FIXED_COLUMNS

    return [*names, *(FEATURE_PREFIX + n for n in names if n in FIXED_COLUMNS)]


def column_names(path: Path) -> list[str]:
    """Column names of a data file, read from its header only."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if _is_parquet(path):
        return list(pq.ParquetFile(path).schema_arrow.names)
    with pacsv.open_csv(path) as reader:
        return list(reader.schema.names)


def _is_parquet(path: Path) -> bool:
    return path.name.lower().endswith((".parquet", ".pq"))


def iter_batches(
    path: Path, columns: list[str], text_columns: set[str], number_columns: set[str]
) -> Iterator[pa.Table]:
    """Tables of at most BATCH_ROWS rows holding ``columns`` (those the file has)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    try:
        if _is_parquet(path):
            parquet = pq.ParquetFile(path)
            present = [c for c in columns if c in parquet.schema_arrow.names]
            for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=present):
                yield pa.Table.from_batches([batch])
            return
        present = [c for c in columns if c in column_names(path)]
        types: dict[str, pa.DataType] = {c: pa.string() for c in present if c in text_columns}
        types.update({c: pa.float64() for c in present if c in number_columns})
        convert = pacsv.ConvertOptions(include_columns=present, column_types=types)
        read = pacsv.ReadOptions(block_size=16 << 20)
        with pacsv.open_csv(path, read_options=read, convert_options=convert) as reader:
            for batch in reader:
                yield pa.Table.from_batches([batch])
    except (pa.ArrowInvalid, OSError) as exc:
        raise UsageError(
            f"cannot read {path.name}: {' '.join(str(exc).split())[:300]}",
            "check the file's format and column types",
        ) from None


def csv_text_columns(path: Path, numeric: list[str]) -> set[str]:
    """Numeric features whose first CSV block is not numbers (read as text, reported)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    if _is_parquet(path):
        return set()
    with pacsv.open_csv(path) as reader:
        schema = reader.schema
    return {
        c
        for c in numeric
        if c in schema.names
        and not (
            pa.types.is_floating(schema.field(c).type) or pa.types.is_integer(schema.field(c).type)
        )
        and not pa.types.is_null(schema.field(c).type)
    }


def window_start(window: str | None, now: datetime | None = None) -> datetime | None:
    span = parse_window(window)
    if span is None:
        return None
    return (now or utc_now()) - span


def previous_window(window: str, now: datetime | None = None) -> tuple[datetime, datetime]:
    """[now - 2*window, now - window): the window just before the current one."""
    span = parse_window(window)
    if span is None:
        raise UsageError("the previous window needs a window", "set current.window, like 7d")
    now = now or utc_now()
    return now - 2 * span, now - span


def filter_since(table: pa.Table, column: str, since: datetime) -> pa.Table:
    """Rows of ``table`` whose ``column`` is at or after ``since`` (naive times are UTC)."""
    return filter_window(table, column, since)


def filter_window(
    table: pa.Table, column: str, since: datetime | None, until: datetime | None = None
) -> pa.Table:
    """Rows of ``table`` whose ``column`` lies in [since, until) (naive times are UTC; an open
    end when None)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if column not in table.column_names:
        raise UsageError(
            f"time column '{column}' is not in the current data",
            "fix current.time_column, or drop the window",
        )
    values = table.column(column)
    if not pa.types.is_timestamp(values.type):
        try:
            values = pc.cast(values, pa.timestamp("us"))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise UsageError(
                f"time column '{column}' does not hold timestamps",
                "write times as ISO 8601 (2024-05-01T12:00:00Z)",
            ) from None
    unit = values.type.unit
    tz = values.type.tz

    def bound(moment: datetime) -> pa.Scalar:
        value = moment if tz else _utc(moment).replace(tzinfo=None)
        return pa.scalar(value, type=pa.timestamp(unit, tz))

    keep = None
    if since is not None:
        keep = pc.greater_equal(values, bound(since))
    if until is not None:
        before = pc.less(values, bound(until))
        keep = before if keep is None else pc.and_(keep, before)
    return table if keep is None else table.filter(keep)


def filter_rows(table: pa.Table, *, version: int | None = None, arm: str | None = None) -> pa.Table:
    """Rows served by model ``version`` and/or through traffic ``arm`` (the serving log's
    ``version`` and ``arm`` columns). Monitoring's ``current.version``/``current.arm`` and the
    canary analysis of `release rollout` both filter with this."""
    import pyarrow as pa
    import pyarrow.compute as pc

    keep = None
    for column, value in (("version", version), ("arm", arm)):
        if value is None:
            continue
        if column not in table.column_names:
            raise UsageError(
                f"the current data have no '{column}' column to filter on",
                f"filter by {column} on serving logs (store:logs/predictions/MODEL/), or drop "
                f"current.{column}",
            )
        values = table.column(column)
        if column == "version":
            target = pa.scalar(int(value), pa.int64())
            if not pa.types.is_integer(values.type):
                values = pc.cast(values, pa.string())
                target = pa.scalar(str(value), pa.string())
        else:
            values = pc.cast(values, pa.string())
            target = pa.scalar(str(value), pa.string())
        match = pc.fill_null(pc.equal(values, target), False)
        keep = match if keep is None else pc.and_(keep, match)
    return table if keep is None else table.filter(keep)


class RowFilter:
    """Which served rows a monitor judges: ``current.version`` (a number, or ``all``) and
    ``current.arm`` of the spec; without ``current.version``, the version the spec's model
    reference resolves to (for ``name@alias``, the one the alias points at now), applied only
    where the data have a ``version`` column (serving logs), so that rows another version served
    (a canary, a rolled-back candidate) are not judged against this model's baseline."""

    def __init__(self, current: dict[str, Any], record: VersionRecord | None) -> None:
        wanted = current.get("version")
        self.strict_version = wanted not in (None, "all")
        self.version: int | None = None
        self.source = "all rows"
        if wanted is not None and wanted != "all":
            self.version = int(wanted)
            self.source = "current.version"
        elif wanted is None and record is not None:
            self.version = int(record["version"])
            self.source = "the monitored model's version"
        self.arm: str | None = str(current["arm"]) if current.get("arm") is not None else None
        self.kept = 0
        self.excluded = 0
        self.unfiltered = 0  # rows of files without a version column (the default filter only)

    @property
    def columns(self) -> list[str]:
        return [c for c, v in (("version", self.version), ("arm", self.arm)) if v is not None]

    def apply(
        self,
        tables: Iterator[pa.Table],
        time_column: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[pa.Table]:
        for table in tables:
            if time_column and (since is not None or until is not None):
                table = filter_window(table, time_column, since, until)
            before = table.num_rows
            version = self.version
            if version is not None and "version" not in table.column_names:
                if self.strict_version:
                    filter_rows(table, version=version)  # raises, naming the missing column
                self.unfiltered += before
                version = None
            table = filter_rows(table, version=version, arm=self.arm)
            self.kept += table.num_rows
            self.excluded += before - table.num_rows
            yield table

    def describe(self) -> dict[str, Any]:
        """What was used, for the result and the report."""
        return {
            "version": self.version,
            "arm": self.arm,
            "source": self.source,
            "rows": self.kept,
            "excluded_rows": self.excluded,
            "rows_without_version": self.unfiltered,
        }

    def what(self) -> str:
        parts = []
        if self.version is not None:
            parts.append(f"version {self.version} ({self.source})")
        if self.arm is not None:
            parts.append(f"arm {self.arm}")
        return " and ".join(parts) or "any version"

    def note(self) -> str | None:
        if self.version is None and self.arm is None:
            return None
        text = f"rows served by {self.what()}: {self.excluded} other row(s) left out"
        if self.unfiltered:
            text += f"; {self.unfiltered} row(s) in files without a version column kept"
        if self.source == "the monitored model's version":
            text += " (current.version: all judges every row)"
        return text
