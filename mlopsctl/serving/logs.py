"""Prediction and feedback logs: appended in the request path, written to the store elsewhere.

The request path appends one tuple per request to a list under a lock (well under a
microsecond). Every ``STAGE_ENTRIES`` entries, the thread that appended the last one turns them
into Arrow tables itself (compact columns instead of Python objects: about 1 µs a row), unless
the flusher is busy writing. That is cheaper than a thread doing it: each of the many calls of
a conversion that let go of the interpreter lock handed it to the request path and back, and
with a flusher staging every 50 ms the server spent 238 µs of CPU per one-row prediction,
against 210 µs staging this way (same run, interleaved). Numeric rows are held as their float64
bytes, not as arrays (see `App._record`). Entries that take a model's work to convert
(contributions to compute) are left to a flusher thread, which stages them every
``STAGE_EVERY_S``; otherwise it sleeps until the oldest row held is due. It writes them as one
Parquet file per model, schema and UTC date under
``logs/predictions/<model>/date=YYYY-MM-DD/<HHMMSS>-<pid>-<seq>.parquet`` (or
``logs/feedback/...``) once ``batch_rows`` rows are waiting or the oldest has waited
``interval`` seconds, whichever comes first: few, large files per worker. `compact_logs` merges
the small files of a partition into one after the fact (``mlopsctl logs compact``).

A failed write keeps its rows for the next try. The buffer is bounded by ``max_rows``: an
entry is taken while fewer rows than that are held (so one request with more rows than the
whole buffer is still logged: the bound is overshot by at most one request, whose size the
server bounds by --max-rows), and anything past it is dropped, counted, and warned about at
most once per interval, naming the cause (the store failing, or requests outrunning the
writer). ``close`` writes everything that is left (bounded in time), so a graceful stop loses
nothing while the store answers. Rows that cannot be turned into a table at all (a bug or a
value the converter cannot take) are dropped, counted with the other drops and warned about
once; the flusher thread never dies of them, and the other rows of their batch are written.

The prediction log's fixed columns (``request_id``, ``row`` (the row's index within its
request, for feedback per row), ``ts``, ``model``, ``version``, ``arm``, ``latency_ms``,
``prediction`` (typed as the model returns it: integer, boolean, float or text), ``score``,
and ``outlier_score`` when the model stores what it takes: the format README "Serving"
documents and mlopsctl/monitor reads) always hold what they say. A model feature named like one
of them is logged as ``feature.<name>`` (``feature.ts``), so that it can neither overwrite nor
be overwritten by the fixed column.

Contributions (``serve --log-contributions RATE``): a sampled request's rows also carry each
feature's contribution and the bias as ``contrib.<feature>`` and ``contrib.bias`` float columns
(mlopsctl/models/explain.py; null on the rows of requests that were not sampled). Which
requests are sampled is decided by `contrib_sampled`, a hash of the request id, so that any
rerun agrees; their contributions are computed by the flusher, in one batch per model, off the
request path (requests that asked for explanations log those). A table holds the contrib
columns when its server logged contributions for that model; older logs have none, and readers
take either.

Outlier scores are computed when a batch is staged (`Scorer.scores`: only the values beyond
their feature's central band are looked up, about 0.2 us a row), by the thread that stages it:
usually the request path's own, every `STAGE_ENTRIES` entries, which costs it less than a
flusher thread scoring whole files while holding the interpreter lock.
"""

from __future__ import annotations

import io
import os
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlopsctl.errors import MlopsError
from mlopsctl.logformat import (
    CONTRIB_BIAS,
    CONTRIB_PREFIX,
    PREDICTIONS,
    log_names,
)
from mlopsctl.models.outliers import LOG_COLUMN as OUTLIER_SCORE

if TYPE_CHECKING:
    import pyarrow as pa

    from mlopsctl.serving.metrics import Metrics
    from mlopsctl.store.base import ObjectStore

# How often the flusher turns appended entries into Arrow tables when some need a model's work.
STAGE_EVERY_S = 0.05
# Entries held before the appending thread turns them into tables itself.
STAGE_ENTRIES = 512

# (request_id, ts_ms, version, arm, latency_ms, features, labels, scores, LogSchema[, outlier
# scorer or None[, (key, value) or None[, Contributions or None]]]) per request, the features
# being the float64 bytes of a numeric [rows, features] matrix, the matrix, or the columns by
# name; feedback entries are (request_id, ts_ms, actual[, row])
Entry = tuple[Any, ...]
# Where a prediction entry keeps its Contributions.
CONTRIB_SLOT = 11


def contrib_sampled(request_id: str, rate: float) -> bool:
    """Whether the contributions of the request ``request_id`` are logged at ``rate`` (0..1):
    the same answer for the same id every time (a hash of it, salted so that the choice does
    not line up with the arm a request id is routed to)."""
    if rate <= 0.0:
        return False
    if rate >= 1.0:
        return True
    data = ("contrib:" + request_id).encode("utf-8", "surrogatepass")
    return zlib.crc32(data) / 4294967296.0 < rate


@dataclass(frozen=True)
class Contributions:
    """What a prediction entry logs of its rows' contributions: the model's features (the
    columns ``contrib.<name>``, then ``contrib.bias``) and either the values already computed
    (``values``, [rows, features + 1]: the request asked for them), or the model and inputs to
    explain them with in the flusher, or neither (not sampled: the columns are null)."""

    names: tuple[str, ...]
    values: Any = None
    model: Any = None
    inputs: Any = None

    @property
    def wanted(self) -> bool:
        return self.values is not None or self.model is not None


def contrib_columns(names: tuple[str, ...] | list[str]) -> list[str]:
    """The log columns of contributions to features ``names``, the bias last."""
    return [CONTRIB_PREFIX + name for name in (*names, CONTRIB_BIAS)]


def partition_key(prefix: str, model: str, date: str, pid: int, seq: int, token: str = "") -> str:
    """``<prefix>/<model>/date=<date>/<HHMMSS>-<pid>-<seq>[-<token>].parquet``: the token keeps
    two writers of one process (or a reused pid) apart."""
    stamp = time.strftime("%H%M%S", time.gmtime())
    tail = f"-{token}" if token else ""
    return f"{prefix}/{model}/date={date}/{stamp}-{pid}-{seq:06d}{tail}.parquet"


class BufferedWriter:
    """A bounded buffer of entries, staged as Arrow tables and written to Parquet files by a
    background thread."""

    def __init__(
        self,
        store: ObjectStore,
        prefix: str,
        model: str,
        to_table: Callable[[list[Entry]], list[Any]],
        *,
        batch_rows: int = 1000,
        interval: float = 5.0,
        max_rows: int = 100_000,
        metrics: Metrics | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.prefix = prefix
        self.model = model
        self.to_table = to_table
        self.batch_rows = max(1, batch_rows)
        self.interval = max(0.05, interval)
        self.max_rows = max(1, max_rows)
        self.metrics = metrics
        self.warn = warn or (lambda _text: None)
        self._lock = threading.Lock()  # guards the lists and counts below
        self._write_lock = threading.Lock()  # one staging/writing pass at a time
        self._pending: list[Entry] = []
        self._counts: list[int] = []  # the rows of each pending entry
        self._pending_rows = 0
        self._staged: list[tuple[int, Any]] = []  # tables not yet written
        self._staged_rows = 0
        self._oldest: float | None = None  # when the oldest row held was appended
        self._heavy = False  # an entry held takes a model's work to convert: the flusher's
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._seq = 0
        self._token = os.urandom(3).hex()
        self._failing = False  # the last write failed
        # One clock per kind of warning, so a stream of write failures cannot hide drops.
        self._last_warning = {"drop": -1e9, "write": -1e9}
        self._warned_unwritable = False
        self.dropped = 0
        self.written = 0
        # Imported now, before the server is ready: a first import inside the flusher thread
        # would hold the interpreter lock for most of a second while requests wait. (So does
        # pyarrow's first time zone-aware timestamp from Python integers: it imports pandas,
        # 0.2 s, which the first staging of the log paid.)
        import pyarrow as pa
        import pyarrow.compute
        import pyarrow.parquet

        pa.array([0], pa.timestamp("ms", tz="UTC"))

        self._thread = threading.Thread(target=self._run, name=f"log-{prefix}", daemon=True)
        self._thread.start()

    def append(self, entry: Entry, rows: int, *, heavy: bool = False) -> None:
        """Hold ``entry`` (``rows`` log rows) for the next file; ``heavy``: converting it takes a
        model's work (contributions to compute), done by the flusher, off the request path."""
        with self._lock:
            if self._pending_rows + self._staged_rows >= self.max_rows:
                self._drop(rows)
                return
            self._pending.append(entry)
            self._counts.append(rows)
            self._pending_rows += rows
            # The flusher sleeps until the oldest entry is due: it learns of a first one.
            wake = self._oldest is None or (heavy and not self._heavy)
            if self._oldest is None:
                self._oldest = time.monotonic()
            self._heavy = self._heavy or heavy
            wake = wake or self._pending_rows + self._staged_rows >= self.batch_rows
            stage = not self._heavy and len(self._pending) >= STAGE_ENTRIES
        if wake:
            self._wake.set()
        elif stage and self._write_lock.acquire(blocking=False):
            # (Never waits: when the flusher is writing, it stages these itself.)
            try:
                self._stage()
            except Exception as exc:  # noqa: BLE001 - the request is answered all the same
                if self._may_warn("write"):
                    self.warn(f"warning: staging {self.prefix} failed: {type(exc).__name__}: {exc}")
            finally:
                self._write_lock.release()

    def _drop(self, rows: int) -> None:
        # Called with self._lock held: both the request path and the flusher drop rows.
        self._drop_counted(rows)
        if self._may_warn("drop"):
            cause = (
                "the store is not taking the files; is it reachable?"
                if self._failing
                else "requests outrun the writer: raise --log-buffer or lower --log-sample"
            )
            self.warn(
                f"warning: {self.prefix} buffer full ({self.max_rows} rows): dropped "
                f"{self.dropped} row(s) so far; {cause}"
            )

    def _may_warn(self, kind: str) -> bool:
        now = time.monotonic()
        if now - self._last_warning[kind] < max(self.interval, 1.0):
            return False
        self._last_warning[kind] = now
        return True

    def _sleep(self) -> float | None:
        """How long the flusher may sleep: until the oldest entry is due, a moment when some
        entries take a model's work or the last write failed, for ever when nothing is held."""
        with self._lock:
            if self._heavy or self._failing:
                return min(STAGE_EVERY_S, self.interval)
            if self._oldest is None:
                return None
            return max(0.0, self._oldest + self.interval - time.monotonic())

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._sleep())
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                with self._lock:
                    held = self._pending_rows + self._staged_rows
                    oldest = self._oldest
                due = held >= self.batch_rows or (
                    oldest is not None and time.monotonic() - oldest >= self.interval
                )
                if due:
                    self.flush()
                else:
                    with self._write_lock:
                        self._stage()
            except Exception as exc:  # noqa: BLE001 - the flusher must outlive any one batch
                if self._may_warn("write"):
                    failure = f"{type(exc).__name__}: {exc}"
                    self.warn(f"warning: flushing {self.prefix} failed: {failure}")

    def _stage(self) -> None:
        """Turn the appended entries into tables (called with the write lock held)."""
        with self._lock:
            batch, counts = self._pending, self._counts
            rows = self._pending_rows
            self._pending, self._counts, self._pending_rows = [], [], 0
            self._heavy = False
            # The rows stay counted against the bound while they are converted.
            self._staged_rows += rows
        if not batch:
            return
        tables, kept = self._convert(batch, counts, rows)
        with self._lock:
            self._staged_rows -= rows - kept
            self._staged.extend((t.num_rows, t) for t in tables)

    def flush(self) -> bool:
        """Write everything held; False when a write failed (its rows are kept)."""
        with self._write_lock:
            self._stage()
            with self._lock:
                staged = self._staged
                rows = self._staged_rows
                self._staged = []
            if not staged:
                with self._lock:
                    if not self._pending:
                        self._oldest = None
                return True
            try:
                self._write([t for _, t in staged])
            except (MlopsError, OSError) as exc:
                if self.metrics is not None:
                    self.metrics.add("log_failures")
                with self._lock:
                    self._failing = True
                    self._staged = staged + self._staged
                if self._may_warn("write"):
                    self.warn(f"warning: cannot write {self.prefix} to the store: {exc}")
                return False
            except Exception as exc:  # noqa: BLE001 - not the store's fault: retrying cannot help
                with self._lock:
                    self._staged_rows -= rows
                self._unwritable(rows, exc)
                return True
            with self._lock:
                self._failing = False
                self._staged_rows -= rows
                if not self._pending and not self._staged:
                    self._oldest = None
                elif self._oldest is not None:
                    self._oldest = time.monotonic()
            self.written += rows
            if self.metrics is not None:
                self.metrics.add("log_written", rows)
            return True

    def _convert(self, batch: list[Entry], counts: list[int], rows: int) -> tuple[list[Any], int]:
        """The batch (``counts``: each entry's rows) as tables, and the rows they hold;
        entries that cannot be converted are dropped and counted."""
        try:
            return self.to_table(batch), rows
        except Exception:  # noqa: BLE001 - found below, one entry at a time
            pass
        good: list[tuple[int, Entry]] = []
        error: Exception | None = None
        for n, entry in zip(counts, batch, strict=True):
            try:
                self.to_table([entry])
            except Exception as exc:  # noqa: BLE001 - any failure: this entry cannot be logged
                error = error or exc
                continue
            good.append((n, entry))
        kept = sum(n for n, _ in good)
        if error is not None:
            self._unwritable(rows - kept, error)
        try:
            return (self.to_table([entry for _, entry in good]) if good else []), kept
        except Exception as exc:  # noqa: BLE001 - entries fine alone but not together
            self._unwritable(kept, exc)
            return [], 0

    def _unwritable(self, rows: int, exc: Exception) -> None:
        with self._lock:
            if rows:
                self._drop_counted(rows)
            first = not self._warned_unwritable
            self._warned_unwritable = True
        if first:
            self.warn(
                f"warning: dropped {rows} {self.prefix} row(s) that cannot be written "
                f"({type(exc).__name__}: {exc}); further such rows are dropped and counted "
                "in mlopsctl_log_dropped_rows_total without a warning"
            )

    def _drop_counted(self, rows: int) -> None:
        self.dropped += rows
        if self.metrics is not None:
            self.metrics.add("log_dropped", rows)

    def _write(self, tables: list[Any]) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        # One file per schema and date: staged tables of the same schema are written together.
        groups: dict[Any, list[pa.Table]] = {}
        for table in tables:
            groups.setdefault(table.schema, []).append(table)
        for group in groups.values():
            table = pa.concat_tables(group) if len(group) > 1 else group[0]
            try:
                span = pc.min_max(table.column("ts")).as_py()
                first, last = span["min"], span["max"]
            except (ValueError, OverflowError):  # beyond Python's dates: per row, below
                first = last = None
            if first is not None and first.date() == last.date():
                # One day (nearly every file): no date string per row (70 ms per 100k rows).
                distinct, dates = [first.date().isoformat()], None
            else:
                dates = pc.strftime(table.column("ts"), format="%Y-%m-%d", locale="C")
                distinct = sorted(pc.unique(dates).to_pylist())  # a day or two, not every row
            for date in distinct:
                part = table if dates is None else table.filter(pc.equal(dates, date))
                sink = io.BytesIO()
                pq.write_table(part, sink, compression="zstd")
                self._seq += 1
                key = partition_key(
                    self.prefix, self.model, date, os.getpid(), self._seq, self._token
                )
                # A batch that spans two dates or schemas and fails half way is retried
                # whole: its first file may then be written twice (at least once, never lost).
                self.store.put_if_absent(key, sink.getvalue())

    def close(self, timeout: float = 30.0) -> None:
        """Stop the thread and write what is left, retrying for up to ``timeout`` seconds."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=max(1.0, self.interval * 2))
        deadline = time.monotonic() + timeout
        while not self.flush() and time.monotonic() < deadline:
            time.sleep(min(0.5, self.interval))
        with self._lock:
            lost = self._staged_rows + self._pending_rows
            if lost:
                self._drop(lost)

    @property
    def buffered(self) -> int:
        with self._lock:
            return self._pending_rows + self._staged_rows


@dataclass(frozen=True)
class LogSchema:
    """The feature and output columns of one model version's log rows. Arms serving versions
    with different signatures write separate files, each in its own schema."""

    names: tuple[str, ...]
    kinds: tuple[str, ...]
    classification: bool
    with_score: bool


def prediction_table(model: str) -> Callable[[list[Entry]], list[Any]]:
    """The converter from buffered prediction entries (the last item of each is its
    LogSchema) to tables in the shared log schema, one per distinct schema."""

    def convert(batch: list[Entry]) -> list[Any]:
        # One table per log schema and set of contribution columns (none, or the model's),
        # grouped by identity: a server shares one schema object per served version (equal
        # schemas of different objects make tables of one schema, written together).
        slots = list(zip(*batch, strict=False))  # the entries' slots as columns, in one C call
        schemas = slots[8]
        plain = _slot(batch, slots, CONTRIB_SLOT).count(None) == len(batch)
        if plain and schemas.count(schemas[0]) == len(batch):
            return [_prediction_table(model, schemas[0], batch, slots=slots)]
        groups: dict[tuple[int, int], tuple[LogSchema, tuple[str, ...] | None, list[Entry]]]
        groups = {}
        for entry in batch:
            contrib = entry[CONTRIB_SLOT] if len(entry) > CONTRIB_SLOT else None
            names = contrib.names if contrib is not None else None
            group = groups.get((id(entry[8]), id(names)))
            if group is None:
                group = groups[(id(entry[8]), id(names))] = (entry[8], names, [])
            group[2].append(entry)
        return [
            _prediction_table(model, schema, entries, names)
            for schema, names, entries in groups.values()
        ]

    return convert


def _prediction_table(
    model: str,
    schema: LogSchema,
    batch: list[Entry],
    contrib: tuple[str, ...] | None = None,
    slots: list[tuple[Any, ...]] | None = None,
) -> Any:
    """The table of ``batch``, entries of one schema; ``slots``: the batch transposed, when
    the caller has it."""
    import numpy as np
    import pyarrow as pa

    if slots is None:
        slots = list(zip(*batch, strict=False))
    counts = list(map(len, slots[6]))
    total = sum(counts)
    # One value per request, repeated for each of its rows (a take in C, not a Python loop);
    # no take at all when every request has one row (the common case).
    one_each = total == len(batch)
    index = None if one_each else pa.array(np.repeat(np.arange(len(batch), dtype="int64"), counts))

    def repeat(position: int, kind: pa.DataType) -> pa.Array:
        values = pa.array(slots[position], kind)
        return values if index is None else values.take(index)

    if one_each:
        row = np.zeros(total, dtype="int32")
    else:
        row = np.concatenate([np.arange(n, dtype="int32") for n in counts])
    columns: dict[str, pa.Array] = {
        "request_id": repeat(0, pa.string()),
        "row": pa.array(row, pa.int32()),
        "ts": repeat(1, pa.timestamp("ms", tz="UTC")),
        "model": pa.repeat(pa.scalar(model, pa.string()), total),
        "version": repeat(2, pa.int64()),
        "arm": repeat(3, pa.string()),
        "latency_ms": repeat(4, pa.float64()),
    }
    logged = log_names(schema.names)
    width = len(schema.names)
    matrices: list[Any] = list(slots[5])
    scorers = list(_slot(batch, slots, 9))
    stacked = None
    if set(map(type, matrices)) == {bytes}:
        # Numeric rows, held as their float64 bytes (`App._record`): one join, one view.
        stacked = np.frombuffer(b"".join(matrices), dtype="float64").reshape(-1, width)
        mixed = _one_scorer(scorers) is None and scorers.count(None) != len(scorers)
        # Each request's own rows only where several models' scorers need them apart.
        matrices = np.split(stacked, np.cumsum(counts)[:-1]) if mixed else []
    else:
        matrices = [
            np.frombuffer(m, dtype="float64").reshape(-1, width) if type(m) is bytes else m
            for m in matrices
        ]
        if all(isinstance(m, np.ndarray) and m.ndim == 2 for m in matrices):
            stacked = np.concatenate(matrices)
    if stacked is not None:
        # One transposing pass, then each column a view of that one buffer (no copies).
        buffer = pa.py_buffer(np.ascontiguousarray(stacked.T))
        float64 = pa.float64()
        for i, column in enumerate(logged):
            columns[column] = pa.Array.from_buffers(
                float64, total, [None, buffer], null_count=0, offset=i * total
            )
    else:
        for i, (name, kind) in enumerate(zip(schema.names, schema.kinds, strict=True)):
            values: list[Any] = []
            for m in matrices:
                values.extend(m[:, i].tolist() if isinstance(m, np.ndarray) else m[name])
            if kind == "numeric":
                columns[logged[i]] = pa.array(values, pa.float64(), from_pandas=True)
            else:
                columns[logged[i]] = pa.array(
                    [None if v is None or v != v else str(v) for v in values], pa.string()
                )
    labels = np.concatenate(slots[6])
    if schema.classification:
        columns["prediction"] = _typed_labels(labels)
    else:
        columns["prediction"] = pa.array(labels.astype("float64"), pa.float64())
    if schema.with_score:
        columns["score"] = pa.array(
            np.concatenate(slots[7]).astype("float64", copy=False), pa.float64()
        )
    scores = _outlier_scores(batch, counts, schema, matrices, stacked, scorers)
    if scores is not None:
        columns[OUTLIER_SCORE] = pa.array(scores, pa.float64(), from_pandas=True)
    # The sticky key (serve --key) when it is not a feature: the value that chose the arm, on
    # every row of its request, under the key's name (``key.<name>`` if that name is taken).
    keys = slots[10] if len(slots) > 10 else [e[10] if len(e) > 10 else None for e in batch]
    named = set() if keys.count(None) == len(keys) else {k[0] for k in keys if k is not None}
    for name in sorted(named - set(schema.names)):
        values = [k[1] if k is not None and k[0] == name else None for k in keys]
        column = name if name not in columns else f"key.{name}"
        strings = pa.array(values, pa.string())
        columns[column] = strings if index is None else strings.take(index)
    if contrib is not None:
        matrix = _contribution_values(batch, counts, contrib)
        for column, series in zip(contrib_columns(contrib), matrix.T, strict=True):
            columns[column] = pa.array(series, pa.float64(), from_pandas=True)
    return pa.table(columns)


def _slot(batch: list[Entry], slots: list[tuple[Any, ...]], position: int) -> tuple[Any, ...]:
    """Each entry's value at ``position``, None for an entry of a shorter shape: the column
    of ``slots`` (the batch transposed) when every entry has one."""
    if len(slots) > position:
        return slots[position]
    return tuple(e[position] if len(e) > position else None for e in batch)


def _one_scorer(scorers: list[Any]) -> Any:
    """The outlier scorer of every entry (``scorers``: each entry's), if they share one; else
    None (none has one, or several models' rows are mixed: each model scores its own)."""
    first = scorers[0]
    # (count compares by identity first: a scorer is only ever equal to itself)
    return first if first is not None and scorers.count(first) == len(scorers) else None


def _contribution_values(batch: list[Entry], counts: list[int], names: tuple[str, ...]) -> Any:
    """[rows, features + 1] contributions of every row of ``batch`` (whose entries all carry
    Contributions to ``names``): the values given, those of sampled entries computed in one call
    per model, NaN (null in the table) for the rest and for rows that could not be explained."""
    import numpy as np

    out = np.full((sum(counts), len(names) + 1), np.nan)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype("int64")
    todo: dict[int, list[int]] = {}
    for i, entry in enumerate(batch):
        contrib: Contributions = entry[CONTRIB_SLOT]
        if contrib.values is not None:
            values = np.asarray(contrib.values, dtype="float64")
            if values.shape == (counts[i], len(names) + 1):
                out[starts[i] : starts[i] + counts[i]] = values
        elif contrib.model is not None:
            todo.setdefault(id(contrib.model), []).append(i)
    for members in todo.values():
        first: Contributions = batch[members[0]][CONTRIB_SLOT]
        try:
            values = _explain_rows(first.model, [batch[i][CONTRIB_SLOT].inputs for i in members])
        except Exception:  # noqa: BLE001 - contributions are extra: the rows are logged without
            continue
        if values.shape != (sum(counts[i] for i in members), len(names) + 1):
            continue
        offset = 0
        for i in members:
            out[starts[i] : starts[i] + counts[i]] = values[offset : offset + counts[i]]
            offset += counts[i]
    return out


def _explain_rows(model: Any, inputs: list[Any]) -> Any:
    """The contributions of the rows of several requests' inputs to one model, in one call:
    the same frame each request's own explanation is computed from (`Inputs.frame`)."""
    import numpy as np
    import pandas as pd

    from mlopsctl.models.explain import contributions

    names = [f.name for f in model.features]
    if all(i.matrix is not None for i in inputs):
        frame = pd.DataFrame(np.vstack([i.matrix for i in inputs]), columns=names)
    else:
        frame = pd.concat([i.frame(names) for i in inputs], ignore_index=True)
    values, _ = contributions(model, frame, one_thread=True)
    return np.asarray(values, dtype="float64")


def _outlier_scores(
    batch: list[Entry],
    counts: list[int],
    schema: LogSchema,
    matrices: list[Any],
    stacked: Any,
    scorers: list[Any],
) -> Any:
    """Each row's outlier score (NaN where its model keeps no outlier tables), scored in one
    call per model version; None when no entry's model has a scorer. ``stacked``: the
    matrices stacked (None unless they all are numeric); ``scorers``: each entry's scorer."""
    import numpy as np

    if scorers.count(None) == len(scorers):
        return None
    out = np.full(sum(counts), np.nan)
    groups: dict[int, list[int]] = {}
    shared = _one_scorer(scorers)
    if shared is not None:
        groups[id(shared)] = list(range(len(batch)))
    else:
        for i, scorer in enumerate(scorers):
            if scorer is not None:
                groups.setdefault(id(scorer), []).append(i)
    for members in groups.values():
        scorer = scorers[members[0]]
        assert scorer is not None
        columns: dict[str, Any] = {}
        if stacked is not None and len(members) == len(batch):
            # One model scores every row (the common case): the table's own stack, as the
            # scorer's numeric matrix when the model has no categorical feature.
            at = _numeric_columns(scorer, schema)
            if at is not None:
                whole = at == list(range(stacked.shape[1]))
                scores = _scores(scorer, {}, stacked if whole else stacked[:, at])
                if scores is not None:
                    out[:] = scores
                continue
            columns = {name: stacked[:, j] for j, name in enumerate(schema.names)}
        elif all(isinstance(matrices[i], np.ndarray) for i in members):
            # Numeric requests: one stack, its columns as views (no loop over rows).
            group = np.vstack([matrices[i] for i in members])
            columns = {name: group[:, j] for j, name in enumerate(schema.names)}
        for j, name in enumerate(schema.names if not columns else ()):
            parts = []
            for i in members:
                m = matrices[i]
                parts.append(m[:, j] if isinstance(m, np.ndarray) else np.asarray(m[name], object))
            columns[name] = np.concatenate(parts)
        scores = _scores(scorer, columns)
        if scores is None:
            continue
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype("int64")
        offset = 0
        for i in members:
            out[starts[i] : starts[i] + counts[i]] = scores[offset : offset + counts[i]]
            offset += counts[i]
    return out


def _numeric_columns(scorer: Any, schema: LogSchema) -> Any:
    """The positions of the scorer's numeric features among ``schema``'s columns; None when
    the scorer also takes categorical features or a feature the schema lacks (then it reads
    named columns)."""
    if scorer.categorical:
        return None
    wanted = scorer.numeric
    position = {name: j for j, name in enumerate(schema.names)}
    if any(name not in position for name in wanted):
        return None
    return [position[name] for name in wanted]


def _scores(scorer: Any, columns: Any, numeric: Any = None) -> Any:
    """The scorer's scores of the rows (None when scoring fails: a score is extra, the rows
    are logged without it)."""
    import numpy as np

    try:
        return np.asarray(scorer.scores(columns, numeric), dtype="float64")
    except Exception:  # noqa: BLE001 - a score is extra: the rows are logged without it
        return None


def _typed_labels(labels: Any) -> pa.Array:
    """Class labels as the model returns them: integers, booleans or floats keep their type;
    anything else (text, mixed) is logged as text."""
    import pyarrow as pa

    kind = labels.dtype.kind
    if kind in "iu":
        return pa.array(labels.astype("int64"), pa.int64())
    if kind == "b":
        return pa.array(labels, pa.bool_())
    if kind == "f":
        return pa.array(labels.astype("float64"), pa.float64())
    return pa.array([None if v is None else str(v) for v in labels.tolist()], pa.string())


def feedback_table(classification: bool | None) -> Callable[[list[Entry]], list[pa.Table]]:
    """Entries (request_id, ts_ms, actual[, row]) to the ground-truth schema; ``actual`` is a
    string unless the model is known to be a regression; ``row`` (the row's index within its
    request, null for every row of it) is a column when some entry gives one."""

    def convert(batch: list[Entry]) -> list[pa.Table]:
        import pyarrow as pa

        if classification is False:
            actual = pa.array([None if e[2] is None else float(e[2]) for e in batch], pa.float64())
        else:
            actual = pa.array([None if e[2] is None else _label(e[2]) for e in batch], pa.string())
        columns = {
            "request_id": pa.array([str(e[0]) for e in batch], pa.string()),
            "ts": pa.array([e[1] for e in batch], pa.timestamp("ms", tz="UTC")),
            "actual": actual,
        }
        rows = [e[3] if len(e) > 3 else None for e in batch]
        if any(r is not None for r in rows):
            columns["row"] = pa.array(rows, pa.int32())
        return [pa.table(columns)]

    return convert


def _label(value: Any) -> str:
    # 1.0 and 1 name the same class label "1", as the prediction log writes it.
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def error_table(model: str) -> Callable[[list[Entry]], list[pa.Table]]:
    """Entries (request_id, ts_ms, version, arm, latency_ms, status, route) of requests answered
    with an error to one table: the same fixed columns as the prediction log (no features, no
    prediction) plus ``status`` and ``route``. Sampled like the prediction log (--log-sample),
    so that errors / (errors + logged requests) is each arm's error share."""

    def convert(batch: list[Entry]) -> list[pa.Table]:
        import pyarrow as pa

        return [
            pa.table(
                {
                    "request_id": pa.array([str(e[0]) for e in batch], pa.string()),
                    "ts": pa.array([e[1] for e in batch], pa.timestamp("ms", tz="UTC")),
                    "model": pa.array([model] * len(batch), pa.string()),
                    "version": pa.array([e[2] for e in batch], pa.int64()),
                    "arm": pa.array([e[3] for e in batch], pa.string()),
                    "latency_ms": pa.array([e[4] for e in batch], pa.float64()),
                    "status": pa.array([e[5] for e in batch], pa.int32()),
                    "route": pa.array([e[6] for e in batch], pa.string()),
                }
            )
        ]

    return convert


def compact_logs(
    store: ObjectStore,
    model: str,
    *,
    kind: str = PREDICTIONS,
    date: str | None = None,
    min_files: int = 2,
) -> dict[str, Any]:
    """Merge the Parquet files of each date partition of ``<kind>/<model>/`` into one file per
    schema (``compact-<HHMMSS>-<digest>.parquet``), then delete the files merged. Readers that
    list the partition while this runs may see a row twice (both the new file and an old one),
    never lose one. Partitions with fewer than ``min_files`` files are left alone."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlopsctl.digest import sha256_bytes
    from mlopsctl.registry import check_name

    check_name(model)
    prefix = f"{kind}/{model}/"
    partitions: dict[str, list[str]] = {}
    for key in store.list(prefix):
        rest = key[len(prefix) :]
        part, _, name = rest.partition("/")
        if not part.startswith("date=") or not name.endswith(".parquet") or "/" in name:
            continue
        if date is not None and part != f"date={date}":
            continue
        partitions.setdefault(part, []).append(key)
    done = []
    for part, keys in sorted(partitions.items()):
        if len(keys) < max(2, min_files):
            continue
        groups: dict[Any, list[pa.Table]] = {}
        rows = 0
        for key in sorted(keys):
            table = pq.read_table(io.BytesIO(store.get(key)))
            rows += table.num_rows
            groups.setdefault(table.schema, []).append(table)
        if len(groups) == len(keys):
            continue  # one file per schema already
        written = []
        for tables in groups.values():
            merged = pa.concat_tables(tables)
            sink = io.BytesIO()
            pq.write_table(merged, sink, compression="zstd")
            data = sink.getvalue()
            stamp = time.strftime("%H%M%S", time.gmtime())
            digest = sha256_bytes(data).split(":", 1)[1][:16]
            key = f"{prefix}{part}/compact-{stamp}-{digest}.parquet"
            store.put_if_absent(key, data)
            written.append(key)
        for key in keys:
            if key not in written:
                store.delete(key)
        done.append({"partition": part, "files": len(keys), "rows": rows, "written": written})
    return {"model": model, "kind": kind, "partitions": done}
