"""Building a training window from production logs: 5,000,000 logged prediction rows and
1,000,000 outcomes in a local store, laid out as `mlopsctl serve` writes them
(logs/predictions|feedback/<model>/date=YYYY-MM-DD/*.parquet, zstd, 100,000 rows a file), joined
by `mlopsctl.datasets.build` (DuckDB: list, hash every file for the lineage, join, dedupe,
write the table, store it and its record), against the same join done by pyarrow
(Table.join and group_by) and by pandas (read_parquet, drop_duplicates, merge), in the same run.

    .venv/bin/python bench/datasets.py [--rows N] [--feedback N] [--features N] [--runs N]
                                       [--fresh]

The logs are generated once into .bench/datasets-store (again with --fresh, or other sizes);
only the builds and the joins are timed, each --runs times (medians printed).

Goal: the build under 10 s. The pyarrow and pandas figures apply the same rules (latest outcome
per (request id, row), one row per logged key, unlabelled rows dropped) but neither hashes the
files nor stores anything, so they are timed with less work than the build does. Prints one
JSON object (also the machine's load average and CPU count, since other work on the machine
shows in every wall-clock figure; CPU seconds, all threads, are printed beside them).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

GOAL_S = 10.0
MODEL = "bench-model"
DAYS = 7
FILE_ROWS = 100_000
UNTIL = datetime(2026, 3, 8, tzinfo=timezone.utc)


def make_logs(store: Any, rows: int, feedback: int, features: int, seed: int = 7) -> None:
    """Prediction logs over DAYS days and outcomes for a random fifth of them (about 2% sent
    twice, a few for ids that were never logged), written as the server writes them."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    start_ms = int((UNTIL - timedelta(days=DAYS)).timestamp() * 1000)
    span_ms = DAYS * 86_400_000
    ts = np.sort(rng.integers(start_ms, start_ms + span_ms, rows))
    ids = np.char.add("r", np.arange(rows).astype(str))
    names = [f"x{i:02d}" for i in range(features)]

    def put(kind: str, table: pa.Table, day: str, seq: int) -> None:
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="zstd")
        key = f"logs/{kind}/{MODEL}/date={day}/000000-1-{seq:06d}.parquet"
        store.put(key, sink.getvalue())

    def day_of(ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d")

    written = 0
    for begin in range(0, rows, FILE_ROWS):
        stop = min(rows, begin + FILE_ROWS)
        n = stop - begin
        chunk_ts = ts[begin:stop]
        for day in sorted({day_of(int(t)) for t in np.unique(chunk_ts // 86_400_000) * 86_400_000}):
            lo = int(datetime.fromisoformat(day).replace(tzinfo=timezone.utc).timestamp() * 1000)
            mask = (chunk_ts >= lo) & (chunk_ts < lo + 86_400_000)
            if not mask.any():
                continue
            columns: dict[str, Any] = {
                "request_id": pa.array(ids[begin:stop][mask]),
                "row": pa.array(np.zeros(int(mask.sum()), dtype="int32")),
                "ts": pa.array(chunk_ts[mask], pa.timestamp("ms", tz="UTC")),
                "model": pa.array([MODEL] * int(mask.sum())),
                "version": pa.array(np.ones(int(mask.sum()), dtype="int64")),
                "arm": pa.array(["default"] * int(mask.sum())),
                "latency_ms": pa.array(rng.random(n)[mask] * 5),
            }
            for name in names:
                columns[name] = pa.array(rng.normal(size=n)[mask])
            columns["prediction"] = pa.array(rng.integers(0, 2, n)[mask])
            columns["score"] = pa.array(rng.random(n)[mask])
            written += 1
            put("predictions", pa.table(columns), day, written)
    chosen = rng.choice(rows, size=int(feedback * 0.97), replace=False)
    again = rng.choice(chosen, size=int(feedback * 0.02), replace=False)
    unknown = feedback - len(chosen) - len(again)
    fb_ids = np.concatenate(
        [ids[chosen], ids[again], np.char.add("u", np.arange(unknown).astype(str))]
    )
    fb_ts = np.concatenate(
        [
            ts[chosen] + rng.integers(1000, 3_600_000, len(chosen)),
            ts[again] + rng.integers(3_600_000, 7_200_000, len(again)),
            np.full(unknown, start_ms + 1000),
        ]
    )
    order = np.argsort(fb_ts, kind="stable")
    fb_ids, fb_ts = fb_ids[order], fb_ts[order]
    actual = rng.integers(0, 2, len(fb_ids)).astype(str)
    for seq, begin in enumerate(range(0, len(fb_ids), FILE_ROWS)):
        stop = min(len(fb_ids), begin + FILE_ROWS)
        table = pa.table(
            {
                "request_id": pa.array(fb_ids[begin:stop]),
                "ts": pa.array(fb_ts[begin:stop], pa.timestamp("ms", tz="UTC")),
                "actual": pa.array(actual[begin:stop]),
            }
        )
        put("feedback", table, day_of(int(fb_ts[begin])), seq)


def files_of(root: Path, kind: str) -> list[str]:
    return sorted(str(p) for p in (root / "logs" / kind / MODEL).rglob("*.parquet"))


def pyarrow_join(root: Path, since_ms: int, until_ms: int) -> int:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    pred = pa.concat_tables([pq.read_table(f) for f in files_of(root, "predictions")])
    t = pc.cast(pred.column("ts"), pa.int64())
    pred = pred.filter(pc.and_(pc.greater_equal(t, since_ms), pc.less(t, until_ms)))
    pred = pred.drop_columns(["model", "arm", "latency_ms", "prediction", "score", "version"])
    # One row per (request id, row): the latest (group_by keeps the max ts, joined back).
    latest = pred.group_by(["request_id", "row"]).aggregate([("ts", "max")])
    pred = pred.join(
        latest, ["request_id", "row", "ts"], ["request_id", "row", "ts_max"], join_type="inner"
    )
    feed = pa.concat_tables([pq.read_table(f) for f in files_of(root, "feedback")])
    feed = feed.append_column("row", pa.array([0] * feed.num_rows, pa.int32()))
    newest = feed.group_by(["request_id", "row"]).aggregate([("ts", "max")])
    feed = feed.join(
        newest, ["request_id", "row", "ts"], ["request_id", "row", "ts_max"], join_type="inner"
    )
    feed = feed.rename_columns(["request_id", "label_ts", "actual", "row"])
    joined = pred.join(feed, ["request_id", "row"], join_type="inner")
    joined = joined.filter(pc.is_valid(joined.column("actual")))
    joined = joined.sort_by([("ts", "ascending"), ("request_id", "ascending")])
    return joined.num_rows


def pandas_merge(root: Path, since_ms: int, until_ms: int) -> int:
    import pandas as pd

    pred = pd.concat([pd.read_parquet(f) for f in files_of(root, "predictions")])
    since = pd.Timestamp(since_ms, unit="ms", tz="UTC")
    until = pd.Timestamp(until_ms, unit="ms", tz="UTC")
    pred = pred[(pred["ts"] >= since) & (pred["ts"] < until)]
    pred = pred.sort_values("ts").drop_duplicates(["request_id", "row"], keep="last")
    feed = pd.concat([pd.read_parquet(f) for f in files_of(root, "feedback")])
    feed["row"] = 0
    feed = feed.sort_values("ts").drop_duplicates(["request_id", "row"], keep="last")
    joined = pred.merge(feed, on=["request_id", "row"], suffixes=("", "_label"))
    joined = joined[joined["actual"].notna()].sort_values(["ts", "request_id"])
    return len(joined)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--feedback", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=12)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-pandas", action="store_true")
    parser.add_argument("--fresh", action="store_true", help="generate the logs again")
    parser.add_argument("--root", type=Path, default=REPO / ".bench" / "datasets-store")
    args = parser.parse_args()

    from mlopsctl.datasets import build
    from mlopsctl.store import open_store

    root = args.root
    stamp = root / ".generated"
    wanted = f"{args.rows} {args.feedback} {args.features}"
    made = None
    if args.fresh or not stamp.is_file() or stamp.read_text() != wanted:
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        clock = time.perf_counter()
        make_logs(open_store(str(root)), args.rows, args.feedback, args.features)
        made = time.perf_counter() - clock
        stamp.write_text(wanted)
    store = open_store(str(root))
    size = sum(p.stat().st_size for p in (root / "logs").rglob("*.parquet"))
    load_before = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="mlopsctl-bench-datasets-") as tmp:
        definition = {"from_logs": {"model": MODEL, "window": f"{DAYS}d", "until": "2026-03-08"}}
        now = UNTIL + timedelta(days=1)
        since_ms = int((UNTIL - timedelta(days=DAYS)).timestamp() * 1000)
        until_ms = int(UNTIL.timestamp() * 1000)
        builds, build_cpu, details, rows = [], [], [], 0
        arrow_times, arrow_cpu, arrow_rows = [], [], 0
        pandas_times, pandas_cpu, pandas_rows = [], [], 0
        # The three alternate, run by run, so that other work on the machine weighs on each.
        for _ in range(args.runs):
            clock, cpu = time.perf_counter(), time.process_time()
            built = build(store, definition, name="bench", root=Path(tmp), now=now)
            builds.append(time.perf_counter() - clock)
            build_cpu.append(time.process_time() - cpu)
            details.append({k: round(v, 3) for k, v in built.timings.items()})
            rows = built.rows
            clock, cpu = time.perf_counter(), time.process_time()
            arrow_rows = pyarrow_join(root, since_ms, until_ms)
            arrow_times.append(time.perf_counter() - clock)
            arrow_cpu.append(time.process_time() - cpu)
            if not args.skip_pandas:
                clock, cpu = time.perf_counter(), time.process_time()
                pandas_rows = pandas_merge(root, since_ms, until_ms)
                pandas_times.append(time.perf_counter() - clock)
                pandas_cpu.append(time.process_time() - cpu)
    build_s = statistics.median(builds)
    result: dict[str, Any] = {
        "logged_rows": args.rows,
        "feedback_rows": args.feedback,
        "features": args.features,
        "log_bytes": size,
        "generate_s": round(made, 1) if made is not None else "cached",
        "table_rows": rows,
        "build_s": round(build_s, 2),
        "build_cpu_s": round(statistics.median(build_cpu), 2),
        "build_runs_s": [round(t, 2) for t in builds],
        "build_parts_s": details,
        "pyarrow_join_s": round(statistics.median(arrow_times), 2),
        "pyarrow_cpu_s": round(statistics.median(arrow_cpu), 2),
        "pyarrow_rows": arrow_rows,
        "pyarrow_runs_s": [round(t, 2) for t in arrow_times],
        "goal_s": GOAL_S,
        "met": build_s < GOAL_S,
        "cpus": os.cpu_count(),
        "load_average_before": load_before,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    if pandas_times:
        pandas_s = statistics.median(pandas_times)
        result.update(
            pandas_merge_s=round(pandas_s, 2),
            pandas_cpu_s=round(statistics.median(pandas_cpu), 2),
            pandas_rows=pandas_rows,
            pandas_over_build=round(pandas_s / build_s, 2),
            pandas_over_build_cpu=round(
                statistics.median(pandas_cpu) / statistics.median(build_cpu), 2
            ),
            pandas_runs_s=[round(t, 2) for t in pandas_times],
        )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
