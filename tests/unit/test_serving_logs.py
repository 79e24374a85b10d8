"""The buffered prediction log on a real local store: files in the shared format, flushed by
size and by time, rows kept through failed writes up to the bound and counted when dropped,
everything written on close; and metrics summed across workers."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mlopsctl.logformat import FEEDBACK, PREDICTIONS, log_names
from mlopsctl.serving.logs import BufferedWriter, LogSchema, feedback_table, prediction_table
from mlopsctl.serving.metrics import Metrics, render
from mlopsctl.store.local import LocalStore

NAMES = ["x1", "x2"]
SCHEMA = LogSchema(("x1", "x2"), ("numeric", "numeric"), True, True)


def _entry(i: int, rows: int = 1, ts: int | None = None) -> tuple[object, ...]:
    return (
        f"r{i}",
        ts if ts is not None else int(time.time() * 1000),
        3,
        "production",
        0.5,
        np.full((rows, 2), float(i)),
        np.array([1] * rows),
        np.array([0.9] * rows),
        SCHEMA,
    )


def _writer(store: LocalStore, **kw: object) -> BufferedWriter:
    convert = prediction_table("m")
    return BufferedWriter(store, PREDICTIONS, "m", convert, **kw)  # type: ignore[arg-type]


def _table(root: Path) -> pa.Table | None:
    files = sorted((root / "logs/predictions/m").rglob("*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files]) if files else None


def test_format_size_flush_and_close(tmp_path: Path) -> None:
    with LocalStore(tmp_path / "s") as store:
        writer = _writer(store, batch_rows=4, interval=60)
        for i in range(4):
            writer.append(_entry(i), 1)
        deadline = time.monotonic() + 10
        while writer.written < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert writer.written == 4  # flushed by size, long before the interval
        writer.append(_entry(9, rows=3), 3)
        writer.close()
        table = _table(tmp_path / "s")
    assert table is not None and table.num_rows == 7
    assert table.column_names == [
        "request_id",
        "row",
        "ts",
        "model",
        "version",
        "arm",
        "latency_ms",
        "x1",
        "x2",
        "prediction",
        "score",
    ]
    assert table.schema.field("ts").type == pa.timestamp("ms", tz="UTC")
    # typed as the model returns them: integer class labels stay integers
    assert table.schema.field("prediction").type == pa.int64()
    assert table.column("request_id").to_pylist().count("r9") == 3
    # each row's index within its request, for feedback per row
    assert table.column("row").to_pylist()[-3:] == [0, 1, 2]


def test_versions_with_other_signatures_get_their_own_files(tmp_path: Path) -> None:
    other = LogSchema(("x1", "x2", "x3"), ("numeric", "numeric", "numeric"), False, False)
    with LocalStore(tmp_path / "s") as store:
        writer = _writer(store, interval=60)
        writer.append(_entry(1), 1)
        writer.append(
            (
                "r2",
                int(time.time() * 1000),
                4,
                "candidate",
                0.1,
                np.ones((1, 3)),
                np.array([2.5]),
                None,
                other,
            ),
            1,
        )
        writer.close()
    tables = [
        pq.read_table(f) for f in sorted((tmp_path / "s/logs/predictions/m").rglob("*.parquet"))
    ]
    assert sorted(t.num_columns for t in tables) == [11, 11]
    assert {t.schema.field("prediction").type for t in tables} == {pa.int64(), pa.float64()}


def test_rows_are_partitioned_by_utc_date(tmp_path: Path) -> None:
    with LocalStore(tmp_path / "s") as store:
        writer = _writer(store, interval=60)
        writer.append(_entry(1, ts=1_700_000_000_000), 1)  # 2023-11-14
        writer.append(_entry(2, ts=1_700_100_000_000), 1)  # 2023-11-16
        writer.close()
    dates = sorted(p.name for p in (tmp_path / "s/logs/predictions/m").iterdir())
    assert dates == ["date=2023-11-14", "date=2023-11-16"]
    # A batch within one day is one file of that day (no date per row); a millisecond either
    # side of midnight is two days.
    for name, stamps, expected in (
        ("day", [1_700_000_000_000, 1_700_006_399_999], {"date=2023-11-14": 2}),
        (
            "midnight",
            [1_700_006_399_999, 1_700_006_400_000],
            {"date=2023-11-14": 1, "date=2023-11-15": 1},
        ),
    ):
        with LocalStore(tmp_path / name) as store:
            writer = _writer(store, interval=60)
            for i, ts in enumerate(stamps):
                writer.append(_entry(i, ts=ts), 1)
            writer.close()
        found = {
            p.name: sum(pq.read_table(f).num_rows for f in p.glob("*.parquet"))
            for p in (tmp_path / name / "logs/predictions/m").iterdir()
        }
        assert found == expected, name


def test_failed_writes_keep_rows_up_to_the_bound(tmp_path: Path) -> None:
    root = tmp_path / "s"
    with LocalStore(root) as store:
        (root / "logs").mkdir(parents=True)
        (root / "logs/predictions").write_text("in the way")  # every write fails
        warnings: list[str] = []
        writer = _writer(store, batch_rows=1000, interval=60, max_rows=10, warn=warnings.append)
        for i in range(6):
            writer.append(_entry(i, rows=2), 2)
        assert writer.flush() is False
        assert writer.buffered == 10 and writer.dropped == 2
        assert any("buffer full" in w for w in warnings) and any(
            "cannot write" in w for w in warnings
        )
        (root / "logs/predictions").unlink()  # the store is back
        writer.close()
        assert writer.dropped == 2
    table = _table(root)
    assert table is not None and table.num_rows == 10


def test_feedback_table_types() -> None:
    (cls,) = feedback_table(True)([("a", 0, 1.0), ("b", 0, "yes")])
    assert cls.column("actual").to_pylist() == ["1", "yes"]
    assert cls.column_names == ["request_id", "ts", "actual"]
    (rows,) = feedback_table(True)([("a", 0, 1, 2), ("a", 0, 0, None)])
    assert rows.column("row").to_pylist() == [2, None]
    (reg,) = feedback_table(False)([("a", 0, 2.5)])
    assert reg.schema.field("actual").type == pa.float64()


def _worker_metrics(folder: str, worker: int) -> None:
    from pathlib import Path

    metrics = Metrics(Path(folder), worker, "m", background=False)
    if worker == 0:
        metrics.observe("3", "production", "/invocations", 200, 0.002)
        metrics.add("log_dropped", 5)
    else:
        metrics.observe("3", "production", "/invocations", 400, 0.2)
        metrics.observe("4", "candidate", "/invocations", 200, 0.0001)
    metrics.http("/ping", 200)
    metrics.close()


def _shows(text: str, name: str, value: float) -> bool:
    return f"{name}{{" in text and _series(text, name) == value


def _series(text: str, name: str, **labels: str) -> float:
    total, found = 0.0, False
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        series, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in series for k, v in labels.items()):
            total += float(value)
            found = True
    assert found, (name, labels, text)
    return total


def test_metrics_add_up_across_workers(tmp_path: Path) -> None:
    """Each worker process writes prometheus_client's multiprocess files; any render sums them."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    for worker in (0, 1):
        process = context.Process(target=_worker_metrics, args=(str(tmp_path), worker))
        process.start()
        process.join(30)
        assert process.exitcode == 0
    text = render(tmp_path, "m").decode()
    assert _series(text, "mlopsctl_requests_total", version="3", arm="production") == 2
    assert _series(text, "mlopsctl_request_errors_total", version="3") == 1
    assert _series(text, "mlopsctl_requests_total", version="4", arm="candidate") == 1
    assert _series(text, "mlopsctl_request_latency_seconds_bucket", version="3", le="0.0025") == 1
    assert _series(text, "mlopsctl_request_latency_seconds_bucket", version="3", le="+Inf") == 2
    assert _series(text, "mlopsctl_log_dropped_rows_total", model="m") == 5
    assert _series(text, "mlopsctl_http_requests_total", route="/ping", code="200") == 2
    # one set of process gauges per worker, by pid
    assert len([line for line in text.splitlines() if line.startswith("process_open_fds{")]) == 2


def test_metrics_survive_a_removed_folder(tmp_path: Path) -> None:
    """A temporary-file cleaner removes the folder: the next check says so once, makes the
    files again from the values in memory, and the counts carry on."""
    import shutil

    said: list[str] = []
    folder = tmp_path / "metrics"
    metrics = Metrics(folder, 0, "m", say=said.append, background=False)
    try:
        for _ in range(3):
            metrics.observe("1", "1", "/invocations", 200, 0.001)
        metrics.add("log_written", 7)
        shutil.rmtree(folder)
        assert render(folder, "m") == b""
        assert metrics.check_folder() is False
        metrics.observe("1", "1", "/invocations", 200, 0.001)
        text = render(folder, "m").decode()
        assert _series(text, "mlopsctl_requests_total", version="1") == 4
        assert _series(text, "mlopsctl_log_written_rows_total") == 7
        assert metrics.check_folder() is True
        assert len(said) == 1 and "removed" in said[0]
    finally:
        metrics.close()


def test_a_serving_worker_writes_its_counts_off_the_request_path(tmp_path: Path) -> None:
    """With its thread, a worker's counts change in memory on the request path and reach the
    shared files within WRITE_EVERY_S, at once on flush (before its own scrape), and on close."""
    import time

    from mlopsctl.serving.metrics import WRITE_EVERY_S

    folder = tmp_path / "metrics"
    metrics = Metrics(folder, 0, "m")
    try:
        for _ in range(3):
            metrics.observe("1", "1", "/invocations", 200, 0.001)
        # The thread writes them: another worker's scrape sees them soon, without a flush.
        deadline = time.monotonic() + 50 * WRITE_EVERY_S
        while not _shows(render(folder, "m").decode(), "mlopsctl_requests_total", 3):
            assert time.monotonic() < deadline, "the counts never reached the files"
            time.sleep(WRITE_EVERY_S / 2)
        metrics.http("/ping", 200)
        metrics.flush()
        text = render(folder, "m").decode()
        assert _series(text, "mlopsctl_http_requests_total", route="/ping") == 1
        metrics.observe("1", "1", "/invocations", 200, 0.001)
    finally:
        metrics.close()
    assert _series(render(folder, "m").decode(), "mlopsctl_requests_total") == 4


def test_a_request_with_more_rows_than_the_buffer_is_logged(tmp_path: Path) -> None:
    """--log-buffer 5 and a 20-row request: logged whole, not dropped; the next request, with
    the buffer over its bound, is dropped and the warning names the cause (not the store)."""
    warnings: list[str] = []
    with LocalStore(tmp_path / "s") as store:
        writer = _writer(store, batch_rows=1000, interval=60, max_rows=5, warn=warnings.append)
        writer.append(_entry(1, rows=20), 20)
        writer.append(_entry(2, rows=1), 1)
        assert writer.dropped == 1
        assert any("requests outrun the writer" in w for w in warnings)
        assert not any("reachable" in w for w in warnings)
        writer.close()
    table = _table(tmp_path / "s")
    assert table is not None and table.num_rows == 20


def test_nothing_written_when_nothing_appended(tmp_path: Path) -> None:
    with LocalStore(tmp_path / "s") as store:
        _writer(store, interval=0.05).close()
    assert _table(tmp_path / "s") is None


def test_a_row_the_converter_cannot_take_is_dropped_and_the_flusher_survives(
    tmp_path: Path,
) -> None:
    root = tmp_path / "s"
    warnings: list[str] = []
    with LocalStore(root) as store:
        metrics = Metrics(tmp_path / "metrics", 0, "m")
        # A regression model's feedback: float("abc") raises ValueError in the converter.
        writer = BufferedWriter(
            store,
            FEEDBACK,
            "m",
            feedback_table(False),
            batch_rows=3,
            interval=60,
            metrics=metrics,
            warn=warnings.append,
        )
        try:
            for entry in (("a", 0, 1.5), ("b", 0, "abc"), ("c", 0, 2.5)):
                writer.append(entry, 1)
            deadline = time.monotonic() + 10
            while writer.written < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert writer.written == 2 and writer.dropped == 1
            for entry in (("d", 0, "worse"), ("e", 0, 3.5), ("f", 0, None)):  # thread alive
                writer.append(entry, 1)
            deadline = time.monotonic() + 10
            while writer.written < 4 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert writer.written == 4 and writer.dropped == 2 and writer.buffered == 0
            assert metrics.get("log_dropped") == 2
            assert len(warnings) == 1 and "cannot be written" in warnings[0]
            assert "ValueError" in warnings[0]
        finally:
            writer.close()
            metrics.close()
    files = sorted((root / FEEDBACK / "m").rglob("*.parquet"))
    table = pa.concat_tables([pq.read_table(f) for f in files])
    assert sorted(table.column("request_id").to_pylist()) == ["a", "c", "e", "f"]


def test_a_feature_named_like_a_fixed_column_is_logged_under_a_prefix(tmp_path: Path) -> None:
    schema = LogSchema(("ts", "x", "score"), ("numeric", "categorical", "numeric"), True, True)
    entry = (
        "r1",
        1_700_000_000_000,
        3,
        "production",
        0.5,
        {"ts": [7.0], "x": ["a"], "score": [0.25]},
        np.array([1]),
        np.array([0.9]),
        schema,
    )
    (table,) = prediction_table("m")([entry])
    assert table.column_names == [
        "request_id",
        "row",
        "ts",
        "model",
        "version",
        "arm",
        "latency_ms",
        "feature.ts",
        "x",
        "feature.score",
        "prediction",
        "score",
    ]
    assert table.schema.field("ts").type == pa.timestamp("ms", tz="UTC")
    assert table.column("feature.ts").to_pylist() == [7.0]
    assert table.column("score").to_pylist() == [0.9]
    assert table.column("feature.score").to_pylist() == [0.25]
    assert log_names(("ts", "feature.ts")) == ["feature.feature.ts", "feature.ts"]


def test_feedback_for_a_regression_model_must_be_a_number(tmp_path: Path) -> None:
    import json

    from mlopsctl.serving.app import App

    with LocalStore(tmp_path / "s") as store:
        metrics = Metrics(tmp_path / "metrics", 0, "m")
        writer = BufferedWriter(store, FEEDBACK, "m", feedback_table(False), interval=60)
        app = App("m", None, metrics, tmp_path / "metrics", classification=False)  # type: ignore[arg-type]
        app.feedback = writer
        try:

            def post(body: object) -> tuple[int, dict[str, object]]:
                status, _, payload = app.handle(
                    b"POST",
                    b"/feedback",
                    {b"content-type": b"application/json"},
                    json.dumps(body).encode(),
                )
                return status, json.loads(payload)

            for bad in ("abc", True, "1.5", 10**400):
                status, answer = post({"request_id": "r1", "actual": bad})
                assert status == 400 and answer["error_code"] == "INVALID_PARAMETER_VALUE"
                assert "must be a number" in str(answer["message"])
            assert post(
                [{"request_id": "r1", "actual": 2.5}, {"request_id": "r2", "actual": None}]
            ) == (
                202,
                {"recorded": 2},
            )
            assert writer.buffered == 2
            app.classification = True  # any scalar is a class label
            assert post({"request_id": "r3", "actual": "yes"})[0] == 202
            assert post({"request_id": "r3", "actual": [1]})[0] == 400
        finally:
            writer.close()
            metrics.close()


def test_outlier_scores_are_computed_when_staged_for_every_row(tmp_path: Path) -> None:
    """Each staged batch is scored as it is staged (by the appending thread or the flusher):
    the file holds, row by row, what the model's scorer gives those rows (an extreme row scores
    high), where the position of the column is the one the format has."""
    import pandas as pd

    from mlopsctl.models.artifact import Feature
    from mlopsctl.models.outliers import Scorer, outlier_baseline
    from mlopsctl.models.profile import profile_frame

    rng = np.random.default_rng(3)
    training = pd.DataFrame({"x1": rng.normal(0, 1, 2000), "x2": rng.normal(5, 2, 2000)})
    features = [Feature(n, "float64", "numeric") for n in NAMES]
    scorer = Scorer(
        {
            "features": [f.as_dict() for f in features],
            "profile": {
                "rows": len(training),
                "features": profile_frame(training, [(n, "numeric") for n in NAMES]),
            },
            "outliers": outlier_baseline(training, features),
        }
    )
    matrices = [rng.normal([0, 5], [1, 2], (1 + i % 3, 2)) for i in range(40)]
    matrices[7][0] = [40.0, 5.0]  # far beyond anything seen in training
    from mlopsctl.serving import logs

    logs_stage, logs.STAGE_ENTRIES = logs.STAGE_ENTRIES, 21
    try:
        with LocalStore(tmp_path / "s") as store:
            writer = _writer(store, batch_rows=100_000, interval=60)
            for i, matrix in enumerate(matrices):
                entry = list(_entry(i, rows=len(matrix)))
                entry[5] = matrix if i % 2 else matrix.tobytes()  # as App._record holds them
                writer.append((*entry, scorer), len(matrix))
                if i == 20:  # the first 21 were staged by this thread, apart from the rest
                    assert writer._pending == [] and len(writer._staged) == 1
            writer.close()
    finally:
        logs.STAGE_ENTRIES = logs_stage
        table = _table(tmp_path / "s")
    assert table is not None
    stacked = np.concatenate(matrices)
    expected = scorer.score({n: stacked[:, j] for j, n in enumerate(NAMES)})[0]
    assert table.column_names[-3:] == ["prediction", "score", "outlier_score"]
    logged = np.asarray(table.column("outlier_score").to_pylist(), dtype="float64")
    np.testing.assert_allclose(logged, expected, rtol=1e-12)
    assert logged[sum(len(m) for m in matrices[:7])] > 0.99


def test_rows_held_as_bytes_make_the_tables_arrays_make(tmp_path: Path) -> None:
    """`App._record` holds numeric rows as their float64 bytes: the staged table is the one the
    arrays make, alone, mixed with arrays, with several rows per request, and when requests of
    two models with their own outlier scorers are staged together (scored apart)."""
    from mlopsctl.models.outliers import Scorer

    rng = np.random.default_rng(5)

    def profile(shift: float) -> dict[str, object]:
        quantiles = [shift + q for q in (-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0)]
        features = {n: {"kind": "numeric", "quantiles": quantiles, "count": 500} for n in NAMES}
        return {"rows": 500, "features": features}

    scorers = [Scorer.from_profile(profile(0.0)), Scorer.from_profile(profile(4.0))]
    matrices = [rng.normal([0, 5], [1, 2], (1 + i % 3, 2)) for i in range(30)]
    convert = prediction_table("m")

    def entries(held: list[int], with_scorers: bool) -> list[tuple[object, ...]]:
        out = []
        for i, matrix in enumerate(matrices):
            entry = list(_entry(i, rows=len(matrix), ts=1_700_000_000_000 + i))
            entry[5] = matrix.tobytes() if i in held else matrix
            scorer = scorers[i % 2] if with_scorers else None
            out.append((*entry, scorer, None, None))
        return out

    for with_scorers in (False, True):
        arrays = convert(entries([], with_scorers))
        assert len(arrays) == 1 and arrays[0].num_rows == sum(len(m) for m in matrices)
        for held in (list(range(30)), list(range(0, 30, 3))):
            tables = convert(entries(held, with_scorers))
            assert len(tables) == 1
            assert tables[0].equals(arrays[0])
        if with_scorers:  # each request's rows scored by its own model's scorer
            expected = np.concatenate(
                [
                    scorers[i % 2].score({n: m[:, j] for j, n in enumerate(NAMES)})[0]
                    for i, m in enumerate(matrices)
                ]
            )
            logged = arrays[0].column("outlier_score").to_numpy()
            np.testing.assert_allclose(logged, expected, rtol=1e-12)
            assert logged.std() > 0.01  # the scorers tell the rows apart


def test_the_appending_thread_stages_and_the_flusher_sleeps_until_a_row_is_due(
    tmp_path: Path,
) -> None:
    """Every STAGE_ENTRIES entries, the thread that appends turns them into a table itself,
    unless the flusher holds the write lock (then it never waits) or an entry needs a model's
    work; the flusher sleeps until the oldest row is due, and writes it then."""
    from mlopsctl.serving import logs

    with LocalStore(tmp_path / "s") as store:
        writer = _writer(store, batch_rows=100_000, interval=60)
        assert writer._sleep() is None  # nothing held: no wake-ups at all
        # The first entry wakes the flusher, which stages what it finds; waiting for that
        # here keeps it from taking some of the entries below (on a loaded machine it can
        # run in the middle of the loop).
        writer.append(_entry(-2), 1)
        deadline = time.monotonic() + 10
        while writer._pending and time.monotonic() < deadline:
            time.sleep(0.01)
        assert writer._pending == [] and writer._staged_rows == 1
        for i in range(logs.STAGE_ENTRIES - 1):
            writer.append(_entry(i), 1)
        assert 59 < (writer._sleep() or 0) <= 60  # until the first row is due
        assert len(writer._pending) == logs.STAGE_ENTRIES - 1  # not woken again
        writer.append(_entry(-1), 1)
        assert writer._pending == [] and writer._staged_rows == logs.STAGE_ENTRIES + 1
        assert writer.buffered == logs.STAGE_ENTRIES + 1

        with writer._write_lock:  # as while the flusher writes to a slow store
            started = time.monotonic()
            for i in range(logs.STAGE_ENTRIES):
                writer.append(_entry(i), 1)
            assert time.monotonic() - started < 5
            assert len(writer._pending) == logs.STAGE_ENTRIES  # left for the flusher
        writer.append(_entry(0), 1)  # the lock is free again: staged here
        assert writer._pending == []

        with writer._write_lock:  # (the flusher cannot stage them before the checks)
            for i in range(logs.STAGE_ENTRIES + 1):
                writer.append(_entry(i), 1, heavy=True)
            assert len(writer._pending) == logs.STAGE_ENTRIES + 1  # not on the request path
            assert writer._sleep() == logs.STAGE_EVERY_S  # the flusher stages them soon
        deadline = time.monotonic() + 10
        while writer._pending and time.monotonic() < deadline:
            time.sleep(0.02)
        assert writer._pending == []
        writer.close()
        table = _table(tmp_path / "s")
    assert table is not None and table.num_rows == 3 * logs.STAGE_ENTRIES + 3

    with LocalStore(tmp_path / "t") as store:
        writer = _writer(store, batch_rows=100_000, interval=0.3)
        started = time.monotonic()
        writer.append(_entry(1), 1)
        while writer.written < 1 and time.monotonic() - started < 10:
            time.sleep(0.02)
        assert writer.written == 1  # woken at the deadline, though nothing else happened
        assert 0.25 < time.monotonic() - started < 5
        assert writer._sleep() is None
        writer.close()


def test_a_started_writer_stages_its_first_entries_without_a_cold_start() -> None:
    """The first staging of a fresh server's log used to import pandas (pyarrow's first time
    zone-aware timestamp from integers, 0.2 s holding the interpreter lock) in the middle of
    its first requests; the writer does that before the server is ready."""
    import subprocess
    import sys

    script = """
import time
import numpy as np
from mlopsctl.serving.logs import BufferedWriter, LogSchema, prediction_table
writer = BufferedWriter(object(), "logs/predictions", "m", prediction_table("m"))
schema = LogSchema(("x1", "x2"), ("numeric", "numeric"), True, True)
entry = ("r", 1_700_000_000_000, 1, "a", 0.5, np.ones((3, 2)).tobytes(), np.array([1, 0, 1]),
         np.array([0.1, 0.2, 0.3]), schema, None, None, None)
started = time.perf_counter()
tables = prediction_table("m")([entry])
print(time.perf_counter() - started, tables[0].num_rows)
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    ).stdout.split()
    assert out[1] == "3"
    assert float(out[0]) < 0.1, f"the first staging took {float(out[0]):.3f} s"
