"""Feature store benchmark (issue 18), with Feast in its own virtualenv as the peer.

    python bench/features.py                      # everything; Feast when .bench/feast-venv exists
    python bench/features.py --only pit           # one part: pit, online, serving
    python bench/features.py --feast-rows 1000000 # the size Feast is timed on (see below)

1. Point-in-time join: 10,000,000 feature rows x 1,000,000 label rows, 100,000 entities, from
   the offline store (date-partitioned Parquet, in the local cache) with DuckDB's ASOF LEFT JOIN;
   goal under 15 s here. Feast 0.67's local offline store (`offline_store: duckdb`, the one that
   keeps label rows without a feature row, see TESTBED.md) joins the same data: its time and
   the ratio (goal: mlopsctl at least 10x faster); its classic `file` store (pandas/dask) is
   timed too, for reference only. Feast is timed on --feast-rows feature rows
   (labels a tenth of that; default 1,000,000, as its join holds everything in memory through
   ibis) and mlopsctl on the same data beside it, so the ratio compares like with like; the
   two results are also compared row by row (they must agree exactly).
2. Online lookup of 20 features for one entity, in process: p50/p99 over 20,000 lookups from
   the SQLite online store (goal p99 < 1 ms) and from a real redis-server started here on a free
   loopback port (goal p99 < 2 ms; skipped, saying so, without redis-server).
3. Serving with a lookup: one-row /invocations answered in process by the serving App, for the
   same model with all features in the request and with only the key (the rest looked up in
   SQLite); the difference of the p50s (goal < 1 ms).

`--feast-worker DIR` is the Feast side, run by the Feast venv's python (also used by
tests/integration/test_features_feast.py): it reads DIR/job.json, runs Feast's
get_historical_features and writes DIR/feast.parquet.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FEAST_PYTHON = ROOT / ".bench" / "feast-venv" / "bin" / "python"


# -- the Feast side (runs in the Feast venv; imports nothing of mlopsctl) ------------------------
def feast_worker(folder: Path) -> None:
    from datetime import timedelta

    import pandas as pd
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
    from feast.infra.offline_stores.dask import DaskOfflineStoreConfig
    from feast.infra.offline_stores.duckdb import DuckDBOfflineStoreConfig
    from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig
    from feast.repo_config import RepoConfig
    from feast.types import Float64, Int64, String

    job = json.loads((folder / "job.json").read_text())
    types = {"float64": Float64, "int64": Int64, "string": String}
    config = RepoConfig(
        project="bench",
        registry=str(folder / "registry.db"),
        provider="local",
        offline_store=(
            DaskOfflineStoreConfig() if job.get("offline") == "file" else DuckDBOfflineStoreConfig()
        ),
        online_store=SqliteOnlineStoreConfig(path=str(folder / "online.db")),
        entity_key_serialization_version=3,
    )
    store = FeatureStore(config=config)
    objects: list[object] = []
    refs = []
    entities = {}
    for spec in job["sets"]:
        for key in spec["keys"]:
            if key not in entities:
                entities[key] = Entity(name=key, join_keys=[key], value_type=ValueType.INT64)
                objects.append(entities[key])
        source = FileSource(
            name=f"{spec['name']}_source",
            path=spec["path"],
            timestamp_field=spec["timestamp"],
            created_timestamp_column=spec.get("created") or "",
        )
        view = FeatureView(
            name=spec["name"],
            entities=[entities[k] for k in spec["keys"]],
            ttl=timedelta(seconds=spec["ttl_s"] or 0),
            schema=[Field(name=f, dtype=types[t]) for f, t in spec["features"]],
            source=source,
        )
        objects.append(view)
        refs += [f"{spec['name']}:{f}" for f, _ in spec["features"]]
    store.apply(objects)
    labels = pd.read_parquet(job["labels"])
    started = time.perf_counter()
    joined = store.get_historical_features(entity_df=labels, features=refs).to_df()
    seconds = time.perf_counter() - started
    joined.to_parquet(folder / "feast.parquet")
    (folder / "feast.json").write_text(json.dumps({"seconds": seconds, "rows": len(joined)}))


def run_feast(folder: Path, job: dict) -> dict:
    """Run the Feast side in its venv on `job`; returns {"seconds", "rows"}."""
    (folder / "job.json").write_text(json.dumps(job))
    subprocess.run(
        [str(FEAST_PYTHON), str(Path(__file__).resolve()), "--feast-worker", str(folder)],
        check=True,
        env={**os.environ, "FEAST_USAGE": "False", "PYTHONWARNINGS": "ignore"},
    )
    result: dict = json.loads((folder / "feast.json").read_text())
    return result


# -- data -----------------------------------------------------------------------------------------
def make_data(
    folder: Path, feature_rows: int, label_rows: int, entities: int, seed: int = 0
) -> None:
    """feature rows over 90 days (20 numeric features), labels over the last 60."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    start = np.datetime64("2026-01-01T00:00:00", "us")
    span = 90 * 86_400 * 1_000_000
    ts = start + rng.integers(0, span, feature_rows).astype("timedelta64[us]")
    columns = {
        "cid": pa.array(rng.integers(0, entities, feature_rows)),
        "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
    }
    for i in range(20):
        columns[f"f{i:02d}"] = pa.array(rng.normal(size=feature_rows).round(4))
    pq.write_table(pa.table(columns), folder / "features.parquet", row_group_size=1_000_000)
    lts = start + (
        30 * 86_400 * 1_000_000 + rng.integers(0, 60 * 86_400 * 1_000_000, label_rows)
    ).astype("timedelta64[us]")
    labels = pa.table(
        {
            "cid": pa.array(rng.integers(0, entities, label_rows)),
            "event_timestamp": pa.array(lts, pa.timestamp("us", tz="UTC")),
            "label": pa.array(rng.integers(0, 2, label_rows)),
        }
    )
    pq.write_table(labels, folder / "labels.parquet")


def spec_data(name: str, path: str, ttl: str = "7d") -> dict:
    return {
        "name": name,
        "entities": [{"name": "cid", "type": "int64"}],
        "timestamp": "ts",
        "source": {"path": path},
        "features": [{"name": f"f{i:02d}", "type": "float64"} for i in range(20)],
        "ttl": ttl,
    }


def feast_job(folder: Path, fs: object, source: Path, labels: Path) -> dict:
    return {
        "labels": str(labels),
        "sets": [
            {
                "name": fs.name,  # type: ignore[attr-defined]
                "keys": fs.keys,  # type: ignore[attr-defined]
                "timestamp": fs.timestamp,  # type: ignore[attr-defined]
                "created": fs.created_timestamp,  # type: ignore[attr-defined]
                "ttl_s": fs.ttl_seconds,  # type: ignore[attr-defined]
                "path": str(source),
                "features": [(f.name, f.type) for f in fs.features],  # type: ignore[attr-defined]
            }
        ],
    }


def compare_with_feast(ours, feast, features: list[str], key: str = "__row") -> int:
    """Rows where the two joins disagree (a value, or missing on one side only)."""
    import numpy as np

    feast = feast.sort_values(key).reset_index(drop=True)
    ours = ours.sort_values(key).reset_index(drop=True)
    assert len(ours) == len(feast), (len(ours), len(feast))
    bad = np.zeros(len(ours), dtype=bool)
    for name in features:
        a = ours[name].to_numpy(dtype="float64")
        b = feast[name].to_numpy(dtype="float64")
        bad |= ~((a == b) | (np.isnan(a) & np.isnan(b)))
    return int(bad.sum())


# -- the parts ----------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(values), q))


def bench_pit(work: Path, args: argparse.Namespace) -> dict:
    import pandas as pd

    from mlopsctl.features import featureset_from_data, materialize_offline, training_set
    from mlopsctl.store.local import LocalStore

    out: dict = {}
    data = work / "pit"
    data.mkdir()
    t0 = time.perf_counter()
    make_data(data, args.feature_rows, args.label_rows, args.entities)
    store = LocalStore(work / "store")
    fs = featureset_from_data(spec_data("stats", "features.parquet"))
    result = materialize_offline(store, fs, data)
    training_set(
        store,
        [fs],
        pd.DataFrame({"cid": [0], "event_timestamp": [pd.Timestamp("2026-03-01", tz="UTC")]}),
    )
    out["prepare_s"] = round(time.perf_counter() - t0, 1)
    out["partitions"] = len(result["partitions"])
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        joined = training_set(store, [fs], data / "labels.parquet", out=work / "joined.parquet")
        times.append(time.perf_counter() - t0)
    out["mlopsctl_s"] = round(min(times), 2)
    out["rows"] = joined.rows
    out["matched"] = joined.matched["stats"]
    print(
        f"PIT join {args.feature_rows:,} feature rows x {args.label_rows:,} labels, "
        f"{args.entities:,} entities: {out['mlopsctl_s']:.2f} s (best of {args.repeat}; "
        f"goal < 15 s) -> {'ok' if out['mlopsctl_s'] < 15 else 'MISSED'}"
    )
    if not FEAST_PYTHON.exists() or args.no_feast:
        out["feast"] = "skipped: .bench/feast-venv is absent (python -m venv .bench/feast-venv; "
        out["feast"] += ".bench/feast-venv/bin/pip install 'feast[duckdb]')"
        print(f"Feast: {out['feast']}")
        return out
    # Feast on a size its in-memory join holds, mlopsctl on the same data beside it.
    small = work / "feast"
    small.mkdir()
    feast_rows = args.feast_rows
    make_data(small, feast_rows, feast_rows // 10, max(feast_rows // 100, 10), seed=1)
    labels = pd.read_parquet(small / "labels.parquet")
    labels["__row"] = range(len(labels))
    labels.to_parquet(small / "labels.parquet")
    store2 = LocalStore(work / "store2")
    fs2 = featureset_from_data(spec_data("stats", "features.parquet"))
    materialize_offline(store2, fs2, small)
    t0 = time.perf_counter()
    ours = training_set(store2, [fs2], small / "labels.parquet").table.to_pandas()
    ours_s = time.perf_counter() - t0
    job = feast_job(small, fs2, small / "features.parquet", small / "labels.parquet")
    out["feast"] = {
        "feature_rows": feast_rows,
        "label_rows": feast_rows // 10,
        "mlopsctl_s": round(ours_s, 3),
    }
    # Feast's duckdb offline store (the same semantics: compared row by row) and its classic
    # file store (pandas/dask; it drops label rows without a feature row inside the TTL, so
    # only its time is reported).
    for offline in ("duckdb", "file"):
        feast = run_feast(small, {**job, "offline": offline})
        seconds = feast["seconds"]
        ratio = round(seconds / ours_s, 1)
        entry = {"feast_s": round(seconds, 2), "ratio": ratio, "rows": feast["rows"]}
        if offline == "duckdb":
            feast_df = pd.read_parquet(small / "feast.parquet")
            entry["rows_disagreeing"] = compare_with_feast(ours, feast_df, fs2.feature_names)
            said = f"rows disagreeing: {entry['rows_disagreeing']}"
        else:
            said = f"{feast['rows']:,} rows returned of {feast_rows // 10:,}"
        out["feast"][offline] = entry
        print(
            f"Feast 0.67 ({offline} offline store) on {feast_rows:,} x {feast_rows // 10:,}: "
            f"{seconds:.2f} s; mlopsctl {ours_s:.3f} s -> {ratio}x "
            f"(goal >= 10x: {'ok' if ratio >= 10 else 'MISSED'}); {said}"
        )
    return out


def start_redis(folder: Path) -> tuple[subprocess.Popen | None, str | None]:
    from mlopsctl.testing.redis import RedisUnavailable
    from mlopsctl.testing.redis import start_redis as start

    try:
        return start(folder, timeout=10.0)
    except RedisUnavailable:
        return None, None


def bench_online(work: Path, args: argparse.Namespace) -> dict:
    import numpy as np

    from mlopsctl.features import SqliteOnline, featureset_from_data, open_online

    fs = featureset_from_data(spec_data("stats", "x.parquet", ttl="0"))
    entities = args.entities
    rng = np.random.default_rng(0)
    rows = [(str(i), 1_000_000 + i, rng.normal(size=20).round(4).tolist()) for i in range(entities)]
    out: dict = {}
    stores = [("sqlite", SqliteOnline(work / "online.sqlite"), 1.0)]
    redis_proc, url = start_redis(work)
    if url is not None:
        stores.append(("redis", open_online(url), 2.0))
    else:
        out["redis"] = "skipped: no redis-server (apt-get install redis-server)"
        print(f"Redis: {out['redis']}")
    try:
        for name, store, goal in stores:
            store.reset(fs)
            store.write(fs, rows)
            keys = [str(k) for k in rng.integers(0, entities, args.lookups)]
            for k in keys[:1000]:
                store.read(fs, [k])
            times = []
            for k in keys:
                t0 = time.perf_counter_ns()
                store.read(fs, [k])
                times.append((time.perf_counter_ns() - t0) / 1e6)
            p50, p99 = percentile(times, 50), percentile(times, 99)
            out[name] = {"p50_ms": round(p50, 4), "p99_ms": round(p99, 4), "goal_p99_ms": goal}
            print(
                f"online lookup, 20 features, {name}: p50 {p50:.3f} ms, p99 {p99:.3f} ms "
                f"(goal p99 < {goal} ms) -> {'ok' if p99 < goal else 'MISSED'}"
            )
            store.close()
    finally:
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(10)
    return out


def bench_serving(work: Path, args: argparse.Namespace) -> dict:
    """The same XGBoost model over 20 features, served in process with all of them in the
    request and with only the entity key (the 20 looked up in SQLite)."""
    import numpy as np
    import pandas as pd

    from mlopsctl.features import Lookup, SqliteOnline, featureset_from_data
    from mlopsctl.models.artifact import load_model_dir
    from mlopsctl.serving.app import App, Arm, make_router
    from mlopsctl.serving.metrics import Metrics
    from mlopsctl.serving.predictor import Predictor

    model_dir = train_model(work)
    fs = featureset_from_data(spec_data("stats", "x.parquet", ttl="0"))
    online = SqliteOnline(work / "serving.sqlite")
    online.reset(fs)
    rng = np.random.default_rng(0)
    now_us = time.time_ns() // 1000
    online.write(
        fs, [(str(i), now_us, rng.normal(size=20).round(4).tolist()) for i in range(10_000)]
    )

    def app_for(lookup: Lookup | None) -> App:
        model = load_model_dir(model_dir)
        predictor = Predictor(model, "bench", 1, lookup=lookup)
        folder = Path(tempfile.mkdtemp(dir=work))
        metrics = Metrics(folder, 0, "bench", background=False)
        return App("bench", make_router([Arm("1", None, predictor)], [1.0]), metrics, folder)

    model = load_model_dir(model_dir)
    lookup = Lookup([fs], [(f.name, f.kind) for f in model.features], online)
    plain, looked = app_for(None), app_for(lookup)
    names = [f"f{i:02d}" for i in range(20)]
    full = [
        json.dumps(
            {"dataframe_split": {"columns": names, "data": [rng.normal(size=20).round(4).tolist()]}}
        ).encode()
        for _ in range(200)
    ]
    keyed = [
        json.dumps({"dataframe_split": {"columns": ["cid"], "data": [[int(k)]]}}).encode()
        for k in rng.integers(0, 10_000, 200)
    ]
    headers = {b"content-type": b"application/json"}

    def timed(app: App, bodies: list[bytes]) -> list[float]:
        for body in bodies[:50]:
            app.handle(b"POST", b"/invocations", headers, body)
        times = []
        for i in range(args.requests):
            body = bodies[i % len(bodies)]
            t0 = time.perf_counter_ns()
            status, _, _ = app.handle(b"POST", b"/invocations", headers, body)
            times.append((time.perf_counter_ns() - t0) / 1e6)
            assert status == 200
        return times

    a, b = timed(plain, full), timed(looked, keyed)
    a2, b2 = timed(plain, full), timed(looked, keyed)  # interleaved twice: a busy machine drifts
    p_plain = min(percentile(a, 50), percentile(a2, 50))
    p_lookup = min(percentile(b, 50), percentile(b2, 50))
    added = p_lookup - p_plain
    print(
        f"serving one row in process: all features sent p50 {p_plain:.3f} ms, key only "
        f"(20 looked up) p50 {p_lookup:.3f} ms -> the lookup adds {added:.3f} ms at p50 "
        f"(goal < 1 ms) -> {'ok' if added < 1 else 'MISSED'}"
    )
    del pd
    return {
        "p50_all_sent_ms": round(p_plain, 4),
        "p50_lookup_ms": round(p_lookup, 4),
        "added_ms": round(added, 4),
    }


def train_model(work: Path) -> Path:
    import numpy as np
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from xgboost import XGBClassifier

    from mlopsctl.models.artifact import Feature, save_model

    rng = np.random.default_rng(0)
    names = [f"f{i:02d}" for i in range(20)]
    frame = pd.DataFrame(rng.normal(size=(2000, 20)), columns=names)
    frame["y"] = (frame["f00"] + frame["f01"] > 0).astype(int)
    features = [Feature(n, "float64", "numeric") for n in names]
    pre = ColumnTransformer(
        [
            (
                "num",
                Pipeline(
                    [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
                ),
                names,
            )
        ]
    )
    pipeline = Pipeline(
        [("preprocess", pre), ("model", XGBClassifier(n_estimators=50, max_depth=4))]
    )
    pipeline.fit(frame[names], frame["y"])
    out = work / "model"
    save_model(
        pipeline,
        out,
        estimator_class="xgboost.XGBClassifier",
        params={},
        task="classification",
        target="y",
        features=features,
        classes=[0, 1],
        frame=frame,
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--feast-worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--only", choices=["pit", "online", "serving"])
    parser.add_argument("--feature-rows", type=int, default=10_000_000)
    parser.add_argument("--label-rows", type=int, default=1_000_000)
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--feast-rows", type=int, default=1_000_000)
    parser.add_argument("--no-feast", action="store_true")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--lookups", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=3_000)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.feast_worker is not None:
        feast_worker(args.feast_worker)
        return
    sys.path.insert(0, str(ROOT))
    work = Path(tempfile.mkdtemp(prefix="bench-features-"))
    os.environ.setdefault("XDG_CACHE_HOME", str(work / "cache"))
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    results: dict = {}
    try:
        if args.only in (None, "pit"):
            results["pit"] = bench_pit(work, args)
        if args.only in (None, "online"):
            results["online"] = bench_online(work, args)
        if args.only in (None, "serving"):
            results["serving"] = bench_serving(work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
