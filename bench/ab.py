"""`release ab`'s analysis on 10 million logged predictions and 1 million outcomes (goal: under
10 s), against the same per-unit join and aggregation in pandas (merge and groupby), in the
same run.

The store is a local folder with the real layout: ``logs/predictions/<model>/date=D/*.parquet``
in the log writer's schema (request_id, row, ts, model, version, arm, latency_ms, two features,
prediction, score and the sticky key ``customer_id``) and ``logs/feedback/<model>/date=D/``
(request_id, row, ts, actual). One million customers, four million requests of 1-4 rows over
14 days; an outcome for a million of the requests. Generated once into .bench/ab-store
(--fresh makes it again).

Both sides produce the same per-customer table (arm, first request, predictions, outcome sum,
count and maximum, duplicate outcomes dropped by latest timestamp) and the conversion per arm;
mlopsctl then does everything `release ab` does (SRM, three metrics at 16 daily looks), pandas
only the join. Both read the local store's files in place. Each side runs --runs times,
alternating; the medians of wall and CPU seconds (all threads) are printed with the load
average: on a shared machine the CPU seconds are the steadier figure.

.venv/bin/python bench/ab.py [--customers N] [--requests N] [--outcomes N] [--runs N] [--fresh]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

MODEL = "shop"
START = datetime(2026, 11, 1, tzinfo=timezone.utc)
DAYS = 14
FILE_ROWS = 250_000


def _generate(root: Path, customers: int, requests: int, outcomes: int) -> int:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    rng = np.random.default_rng(7)
    who = rng.integers(0, customers, requests)
    arm = ((who * 2654435761) % 2**32) < 2**31  # sticky: a hash of the customer, 50/50
    version = np.where(arm, 2, 1)
    start_ms = int(START.timestamp() * 1000)
    at = np.sort(start_ms + rng.integers(0, DAYS * 86_400_000, requests))
    rows = rng.integers(1, 5, requests)
    total = int(rows.sum())
    req = np.repeat(np.arange(requests), rows)
    starts = np.cumsum(rows) - rows
    row = (np.arange(total) - np.repeat(starts, rows)).astype("int32")

    def ids(prefix: str, values: np.ndarray) -> pa.Array:
        return pc.binary_join_element_wise(prefix, pa.array(values).cast(pa.string()), "")

    pred_dir = root / "logs" / "predictions" / MODEL
    day_of = (at[req] - start_ms) // 86_400_000
    for day in range(DAYS):
        pick = np.nonzero(day_of == day)[0]
        folder = pred_dir / f"date={(START + timedelta(days=day)):%Y-%m-%d}"
        folder.mkdir(parents=True, exist_ok=True)
        for part, begin in enumerate(range(0, len(pick), FILE_ROWS)):
            sel = pick[begin : begin + FILE_ROWS]
            r = req[sel]
            n = len(sel)
            table = pa.table(
                {
                    "request_id": ids("r", r),
                    "row": pa.array(row[sel], pa.int32()),
                    "ts": pa.array(at[r], pa.timestamp("ms", tz="UTC")),
                    "model": pa.array([MODEL] * n),
                    "version": pa.array(version[r], pa.int64()),
                    "arm": pa.array(np.where(arm[r], "candidate", "production")),
                    "latency_ms": rng.uniform(1, 5, n),
                    "x1": rng.normal(size=n),
                    "x2": rng.normal(size=n),
                    "prediction": pa.array(rng.integers(0, 2, n), pa.int64()),
                    "score": rng.uniform(size=n),
                    "customer_id": ids("c", who[r]),
                }
            )
            pq.write_table(table, folder / f"000000-1-{part:06d}.parquet", compression="zstd")
    # Outcomes for a million requests (row 0), 0-2 days later: revenue when bought.
    chosen = rng.choice(requests, size=outcomes, replace=False)
    bought = rng.uniform(size=outcomes) < np.where(arm[chosen], 0.11, 0.10)
    value = np.where(bought, np.round(rng.lognormal(3, 1, outcomes), 2), 0.0)
    when = at[chosen] + rng.integers(0, 2 * 86_400_000, outcomes)
    feed_dir = root / "logs" / "feedback" / MODEL
    day_of = (when - start_ms) // 86_400_000
    for day in np.unique(day_of):
        pick = day_of == day
        folder = feed_dir / f"date={(START + timedelta(days=int(day))):%Y-%m-%d}"
        folder.mkdir(parents=True, exist_ok=True)
        table = pa.table(
            {
                "request_id": ids("r", chosen[pick]),
                "ts": pa.array(when[pick], pa.timestamp("ms", tz="UTC")),
                "actual": pa.array(value[pick].astype(str)),
                "row": pa.array(np.zeros(int(pick.sum()), dtype="int32")),
            }
        )
        pq.write_table(table, folder / "000000-1-000001.parquet", compression="zstd")
    return total


def _pandas(root: Path, until: datetime) -> tuple[dict[int, float], int]:
    """The same per-customer join and aggregation in pandas; conversion per version."""
    import pandas as pd

    preds = pd.concat(
        [
            pd.read_parquet(p, columns=["request_id", "row", "ts", "version", "customer_id"])
            for p in sorted((root / "logs/predictions" / MODEL).rglob("*.parquet"))
        ],
        ignore_index=True,
    )
    preds = preds[(preds["ts"] >= START) & (preds["ts"] < until)]
    preds = preds.sort_values("ts", kind="stable")
    units = preds.groupby("customer_id").agg(
        first=("ts", "first"), version=("version", "first"), versions=("version", "nunique")
    )
    units["exposures"] = preds.groupby("customer_id").size()
    feed = pd.concat(
        [pd.read_parquet(p) for p in sorted((root / "logs/feedback" / MODEL).rglob("*.parquet"))],
        ignore_index=True,
    )
    feed = feed[(feed["ts"] >= START) & (feed["ts"] < until)]
    feed["value"] = pd.to_numeric(feed["actual"], errors="coerce")
    feed = feed.sort_values("ts", kind="stable").drop_duplicates(["request_id", "row"], keep="last")
    keys = preds[["request_id", "row", "customer_id"]].drop_duplicates(["request_id", "row"])
    joined = feed.merge(keys, on=["request_id", "row"], how="inner")
    per_unit = joined.groupby("customer_id")["value"].agg(["sum", "count", "max"])
    units = units.join(per_unit, how="left")
    units = units[units["versions"] == 1]
    units["converted"] = units["max"].fillna(0) > 0
    conversion = units.groupby("version")["converted"].mean().to_dict()
    return {int(k): float(v) for k, v in conversion.items()}, len(units)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=4_000_000)
    parser.add_argument("--outcomes", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument("--root", type=Path, default=Path(".bench/ab-store"))
    args = parser.parse_args()

    from mlopsctl.release import ab
    from mlopsctl.store.local import LocalStore

    stamp = args.root / ".generated"
    wanted = f"{args.customers} {args.requests} {args.outcomes}"
    if args.fresh or not stamp.is_file() or stamp.read_text() != wanted:
        shutil.rmtree(args.root, ignore_errors=True)
        args.root.mkdir(parents=True)
        began = time.perf_counter()
        rows = _generate(args.root, args.customers, args.requests, args.outcomes)
        stamp.write_text(wanted)
        print(f"generated {rows:,} prediction rows in {time.perf_counter() - began:.1f} s")
    files = sorted(args.root.rglob("*.parquet"))
    size = sum(f.stat().st_size for f in files)
    print(
        f"store: {len(files)} Parquet files, {size / 2**20:.0f} MiB; {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f} before the run"
    )

    until = START + timedelta(days=DAYS + 2)
    cfg = ab.config_of(
        {
            "name": "bench",
            "unit": "customer_id",
            "weights": {"control": 50, "treatment": 50},
            "primary": {"name": "conversion", "metric": "proportion"},
            "guardrails": [
                {"name": "revenue", "metric": "mean", "winsorize": 0.99, "max_regression": 1},
                {"name": "per-prediction", "metric": "ratio", "max_regression": 1},
            ],
        }
    )
    ours, ours_cpu, theirs, theirs_cpu = [], [], [], []
    for _ in range(args.runs):
        with LocalStore(args.root) as store:
            began, cpu = time.perf_counter(), time.process_time()
            result = ab.analyze(store, MODEL, cfg, control=1, treatment=2, since=START, until=until)
            ours.append(time.perf_counter() - began)
            ours_cpu.append(time.process_time() - cpu)
        began, cpu = time.perf_counter(), time.process_time()
        baseline, units = _pandas(args.root, until)
        theirs.append(time.perf_counter() - began)
        theirs_cpu.append(time.process_time() - cpu)
    conversion = result["metrics"][0]
    ours_s, ours_c = statistics.median(ours), statistics.median(ours_cpu)
    theirs_s, theirs_c = statistics.median(theirs), statistics.median(theirs_cpu)
    print(
        f"mlopsctl (DuckDB): median {ours_s:.2f} s ({ours_c:.2f} CPU-s) of "
        f"{', '.join(f'{t:.2f}' for t in ours)} s for "
        f"{result['prediction_rows']:,} predictions, "
        f"{result['feedback']['feedback_rows']:,} outcomes, "
        f"{result['srm']['units']['control'] + result['srm']['units']['treatment']:,} customers, "
        f"{len(result['looks'])} looks x 3 metrics: conversion {conversion['control']:.4f} -> "
        f"{conversion['treatment']:.4f}, decision {result['decision']}"
    )
    print(
        f"pandas merge/groupby: median {theirs_s:.2f} s ({theirs_c:.2f} CPU-s) of "
        f"{', '.join(f'{t:.2f}' for t in theirs)} s for the join alone "
        f"({units:,} customers): "
        f"conversion {baseline.get(1, float('nan')):.4f} -> {baseline.get(2, float('nan')):.4f}"
    )
    agree = abs(baseline.get(1, 0) - conversion["control"]) < 1e-9
    print(
        f"ratio pandas / mlopsctl: {theirs_s / ours_s:.1f}x wall, {theirs_c / ours_c:.1f}x CPU "
        f"(same conversion: {agree}); "
        f"goal under 10 s: {'met' if ours_s < 10 else 'MISSED'}; "
        f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} after"
    )


if __name__ == "__main__":
    main()
