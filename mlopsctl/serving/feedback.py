"""Ground truth from a file: ``mlopsctl feedback FILE --model NAME`` records the outcome of
earlier predictions by request id (and ``row``, the row's index within its request), in the
format ``POST /feedback`` writes (``logs/feedback/<model>/date=YYYY-MM-DD/...parquet``), for
monitoring and A/B analysis to join with the prediction logs.

A file may hold a ``timestamp`` per outcome (when it happened; default: now): each row goes to
the date partition of its timestamp, and of two outcomes for one (request id, row) the one with
the latest timestamp wins, here within the file and in every reader across files, so sending an
outcome again, or a corrected one later, is safe. Outcomes for request ids that no prediction
log holds (looked up in the logs from ``lookback`` before the earliest timestamp on) are
recorded all the same, counted and reported."""

from __future__ import annotations

import io
import os
import secrets
import tempfile
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlopsctl import registry
from mlopsctl.errors import NotFound, UsageError
from mlopsctl.logformat import FEEDBACK, PREDICTIONS
from mlopsctl.models.predict import read_input
from mlopsctl.serving.logs import feedback_table, partition_key
from mlopsctl.store.local import LocalStore

if TYPE_CHECKING:
    from mlopsctl.store.base import ObjectStore

_CHUNK_ROWS = 100_000
_DOWNLOAD_THREADS = 8
DEFAULT_LOOKBACK = timedelta(days=30)
# Outcome columns taken when the file has no 'actual' column, and timestamp columns, in order.
_OUTCOME_NAMES = ("actual", "outcome")
_TIME_NAMES = ("timestamp", "ts")


def model_is_classifier(store: ObjectStore, model: str) -> bool | None:
    """True/False from the latest registered version's signature; None when unknown (the
    ``actual`` column is then written as text, which the reader casts)."""
    try:
        latest = registry.latest_version(store, model)
        if latest is None:
            return None
        task = (registry.get_version(store, model, latest).get("signature") or {}).get("task")
    except NotFound:
        return None
    return None if task is None else task == "classification"


def partition_keys(store: ObjectStore, prefix: str, first_day: str, last_day: str) -> list[str]:
    """The Parquet files under ``prefix`` whose ``date=YYYY-MM-DD`` partition lies in
    [first_day, last_day] (files outside any date partition always count): what a reader of a
    window downloads."""
    keys = []
    for key in store.list(prefix):
        if not key.endswith((".parquet", ".pq")):
            continue
        part = key[len(prefix) :].split("/", 1)[0]
        if part.startswith("date=") and not first_day <= part[5:15] <= last_day:
            continue
        keys.append(key)
    return sorted(keys)


def download_files(store: ObjectStore, keys: list[str], folder: Path) -> list[str]:
    """``keys`` downloaded (a few at a time) into ``folder``; their local paths, in order. A
    local store's files are read where they are (a plain file inside the store's folder; a
    link, or anything else, is copied out like a download)."""
    root = store.root.resolve() if isinstance(store, LocalStore) else None

    def one(item: tuple[int, str]) -> str:
        number, key = item
        if root is not None:
            path = root.joinpath(*key.split("/"))
            if not path.is_symlink() and path.is_file() and path.resolve().is_relative_to(root):
                return str(path)
        dest = folder / f"{number:06d}.parquet"
        store.get_file(key, dest)
        return str(dest)

    with ThreadPoolExecutor(max_workers=_DOWNLOAD_THREADS) as pool:
        return list(pool.map(one, enumerate(keys)))


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d")


def unknown_requests(
    store: ObjectStore, model: str, ids: list[str], rows: list[int], first_ms: int, last_ms: int
) -> int:
    """How many (request id, row) pairs no prediction log of ``model`` holds, looking in the
    date partitions from ``first_ms`` to ``last_ms``."""
    import duckdb
    import pyarrow as pa

    keys = partition_keys(store, f"{PREDICTIONS}/{model}/", _day(first_ms), _day(last_ms))
    if not keys:
        return len(ids)
    wanted = pa.table({"rid": pa.array(ids, pa.string()), "r": pa.array(rows, pa.int64())})
    with tempfile.TemporaryDirectory(prefix="mlopsctl-feedback-") as tmp:
        files = download_files(store, keys, Path(tmp))
        con = duckdb.connect()
        try:
            names = {
                str(r[0])
                for r in con.execute(
                    "DESCRIBE SELECT * FROM read_parquet($f, union_by_name = true)", {"f": files}
                ).fetchall()
            }
            row = "COALESCE(CAST(row AS BIGINT), 0)" if "row" in names else "0"
            con.register("wanted", wanted)
            found = con.execute(
                f"""SELECT count(*) FROM wanted w WHERE NOT EXISTS (
                    SELECT 1 FROM read_parquet($f, union_by_name = true) p
                    WHERE CAST(p.request_id AS VARCHAR) = w.rid AND {row} = w.r)""",
                {"f": files},
            ).fetchone()
        finally:
            con.close()
    return int(found[0]) if found else 0


def _column(frame: Any, given: str | None, names: tuple[str, ...], what: str, path: Path) -> str:
    if given is not None:
        if given not in frame.columns:
            raise UsageError(f"{path} has no {what} column {given!r}")
        return given
    for name in names:
        if name in frame.columns:
            return name
    raise UsageError(
        f"{path} has no {what} column", f"name it {' or '.join(repr(n) for n in names)}"
    )


def record_feedback_file(
    store: ObjectStore,
    model: str,
    path: Path,
    *,
    id_column: str = "request_id",
    actual_column: str | None = None,
    time_column: str | None = None,
    lookback: timedelta | None = DEFAULT_LOOKBACK,
) -> dict[str, Any]:
    """Write the file's outcomes as ground truth (see the module docstring); returns counts
    (rows, duplicates left out, unknown request ids) and the keys written."""
    import pandas as pd
    import pyarrow.parquet as pq

    registry.check_name(model)
    frame = read_input(path)
    if id_column not in frame.columns:
        raise UsageError(
            f"{path} lacks column {id_column}",
            f"give a table with '{id_column}', an outcome ('actual') and optionally 'row' "
            "and 'timestamp'",
        )
    actual_name = _column(frame, actual_column, _OUTCOME_NAMES, "outcome", path)
    stamp_name = None
    if time_column is not None or any(n in frame.columns for n in _TIME_NAMES):
        stamp_name = _column(frame, time_column, _TIME_NAMES, "timestamp", path)
    frame = frame[frame[id_column].notna()]
    if frame.empty:
        raise UsageError(f"{path} has no rows with a request id", "nothing was recorded")
    now = int(datetime.now(timezone.utc).timestamp() * 1000)
    ms = pd.Series(now, index=frame.index, dtype="int64")
    if stamp_name is not None:
        try:
            column = frame[stamp_name]
            try:
                moments = pd.to_datetime(column, utc=True, format="ISO8601")
            except (ValueError, TypeError):
                moments = pd.to_datetime(column, utc=True, format="mixed")
        except (ValueError, TypeError) as exc:
            raise UsageError(
                f"{path}: column {stamp_name!r} holds a value that is not a time: {exc}"
            ) from None
        ms = moments.dt.as_unit("ms").astype("int64").where(moments.notna(), now)
    has_row = "row" in frame.columns
    table = pd.DataFrame(
        {
            "rid": frame[id_column].astype(str),
            "row": frame["row"].fillna(0).astype("int64") if has_row else 0,
            "ms": ms.astype("int64"),
            "actual": frame[actual_name],
        }
    )
    # Of duplicates in the file the latest timestamp wins (the last one written on a tie).
    table = table.reset_index(drop=True).sort_values("ms", kind="stable")
    deduped = table.drop_duplicates(["rid", "row"], keep="last").sort_index()
    duplicates = len(table) - len(deduped)
    convert = feedback_table(model_is_classifier(store, model))
    ids = deduped["rid"].tolist()
    rows = deduped["row"].tolist()
    stamps = deduped["ms"].tolist()
    actual = [None if v != v else v for v in deduped["actual"].tolist()]  # NaN -> None
    days = [_day(m) for m in stamps]
    keys = []
    token = secrets.token_hex(3)
    seq = 0
    for date in sorted(set(days)):
        picked = [i for i, d in enumerate(days) if d == date]
        for start in range(0, len(picked), _CHUNK_ROWS):
            chunk = picked[start : start + _CHUNK_ROWS]
            entries = [(ids[i], stamps[i], actual[i], rows[i] if has_row else None) for i in chunk]
            (part,) = convert(entries)
            sink = io.BytesIO()
            pq.write_table(part, sink, compression="zstd")
            seq += 1
            key = partition_key(FEEDBACK, model, date, os.getpid(), seq, token)
            store.put_if_absent(key, sink.getvalue())
            keys.append(key)
    result: dict[str, Any] = {
        "model": model,
        "rows": len(ids),
        "duplicates": duplicates,
        "files": keys,
    }
    if lookback is not None:
        first = min(stamps) - int(lookback.total_seconds() * 1000)
        result["unknown"] = unknown_requests(store, model, ids, rows, first, max(stamps))
        result["lookback"] = _day(first)
    return result
