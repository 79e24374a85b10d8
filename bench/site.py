"""`mlopsctl site build` at scale: a local store with 10,000 pipeline runs (four steps each,
like the quickstart's, over 5 experiments) and 1,000 versions of one model registered from
them (with their audit events and a few alias moves), written with the real writers
(mlopsctl.runs.save_run, mlopsctl.registry.register_version), not through 10,000 real runs.
Then the median time of

  full build           `mlopsctl site build` into an empty folder (a CLI process)
  no-change rebuild    the same again over the built site
  one new run          one more run saved, then a rebuild

Goals: full build < 20 s, an incremental rebuild after one new run < 2 s.

    .venv/bin/python bench/site.py [--runs 10000] [--versions 1000] [--repeat 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mlopsctl.registry import register_version, set_alias, version_record  # noqa: E402
from mlopsctl.runs import save_run  # noqa: E402
from mlopsctl.store.blobs import put_blob_bytes  # noqa: E402
from mlopsctl.store.local import LocalStore  # noqa: E402

MODEL = "bench-model"
EXPERIMENTS = ("baseline", "tuning", "features", "nightly", "ablation")
GOALS = {"full": 20.0, "incremental": 2.0}


def digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def run_record(n: int, rng: random.Random) -> dict[str, Any]:
    """A finished run shaped like the quickstart's (ingest -> split -> train -> evaluate)."""
    when = time.gmtime(1_780_000_000 + n * 60)
    run_id = time.strftime("%Y%m%d-%H%M%S", when) + f"-{n % 1000:03d}-{n:06x}"
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", when)
    depth, trees = rng.choice((3, 4, 5, 6)), rng.choice((20, 50, 100, 200))
    rate = rng.choice((0.05, 0.1, 0.3))
    auc = round(0.9 + rng.random() * 0.09, 6)
    metrics = {
        "roc_auc": auc,
        "accuracy": round(auc - 0.03, 6),
        "f1": round(auc - 0.02, 6),
        "log_loss": round(0.4 - auc / 4, 6),
    }
    cached = n % 3 != 0
    dataset, train, test = digest(f"data{n % 7}"), digest(f"train{n % 7}"), digest(f"test{n % 7}")
    model, scores = digest(f"model{n}"), digest(f"metrics{n}")

    def out(d: str) -> dict[str, Any]:
        return {"digest": d, "kind": "file", "size": 1000 + n % 100}

    steps = {
        "ingest": {
            "status": "cached" if cached else "executed",
            "kind": "component",
            "seconds": 0.01 if cached else 2.1,
            "inputs": {},
            "outputs": {"dataset": out(dataset)},
            "metrics": {},
        },
        "split": {
            "status": "cached" if cached else "executed",
            "kind": "component",
            "seconds": 0.01 if cached else 1.4,
            "inputs": {"dataset": dataset},
            "outputs": {"train": out(train), "test": out(test)},
            "metrics": {},
        },
        "train": {
            "status": "executed",
            "kind": "component",
            "seconds": 5 + rng.random() * 20,
            "inputs": {"train": train},
            "outputs": {"model": out(model)},
            "metrics": {"train_rows": 426},
        },
        "evaluate": {
            "status": "executed",
            "kind": "component",
            "seconds": 3.2,
            "inputs": {"model": model, "test": test},
            "outputs": {"metrics": out(scores)},
            "metrics": metrics,
        },
    }
    return {
        "id": run_id,
        "kind": "pipeline",
        "pipeline": "quickstart",
        "experiment": EXPERIMENTS[n % len(EXPERIMENTS)],
        "status": "succeeded" if n % 50 else "failed",
        "spec": {"path": "pipelines/quickstart.yaml", "digest": digest("spec")},
        "params": {
            "model": {"max_depth": depth, "n_estimators": trees, "learning_rate": rate},
            "target": "target",
        },
        "overrides": [],
        "started": started,
        "ended": started,
        "duration_s": round(sum(s["seconds"] for s in steps.values()), 3),
        "git": {
            "commit": hashlib.sha1(str(n // 20).encode()).hexdigest(),
            "branch": "main",
            "dirty": False,
            "remote": None,
        },
        "user": {"name": f"user{n % 4}@example.com", "source": "git"},
        "where": {"host": "bench", "platform": "linux", "python": "3.11", "ci": False},
        "environment": {"mlopsctl": "0.1.0", "python": "3.11", "libraries": {"xgboost": "2.1"}},
        "image": None,
        "store": None,
        "data": {"ingest.path": digest("source")},
        "order": ["ingest", "split", "train", "evaluate"],
        "steps": steps,
        "metrics": metrics,
    }


def seed(root: Path, runs: int, versions: int) -> list[dict[str, Any]]:
    store = LocalStore(root)
    rng = random.Random(7)
    records = [run_record(n, rng) for n in range(runs)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda r: save_run(store, r), records))
    for n, run in enumerate(records[:versions]):
        blob = put_blob_bytes(store, f"model {n}".encode())
        ref = {"digest": blob, "kind": "file", "size": 7}
        body = version_record(
            run,
            "train",
            ref,  # type: ignore[arg-type]
            {"format": "mlopsctl-model/v1", "flavor": "xgboost", "task": "classification"},
            digest(f"model.json {n}"),
            training_data={
                "train": {
                    "digest": run["steps"]["split"]["outputs"]["train"]["digest"],
                    "rows": 426,
                }
            },
            evaluation={},
            metrics=run["metrics"],
        )
        register_version(store, MODEL, body)
    for version in (1, 2, 3, 2, 5):
        if version <= versions:
            set_alias(store, MODEL, "production", version, reason="bench")
    return records


def cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def build(store: Path, out: Path) -> tuple[float, dict[str, Any]]:
    """One `mlopsctl site build` process: its wall time, and its result with the CPU seconds it
    and its render processes used (`cpu`), which the machine's other load does not inflate."""
    env = {k: v for k, v in os.environ.items() if k != "MLOPSCTL_STORE"}
    cpu = cpu_of_children()
    started = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlopsctl",
            "--store",
            str(store),
            "site",
            "build",
            "-o",
            str(out),
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=store.parent,
        check=False,
    )
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"site build failed: {proc.stderr}")
    result = json.loads(proc.stdout)
    result["cpu"] = cpu_of_children() - cpu
    return seconds, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--versions", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="Keep the store and sites in this folder.")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-site-"))
    work.mkdir(parents=True, exist_ok=True)
    store = work / "store"
    try:
        if not (store / "runs").is_dir():
            print(
                f"seeding {args.runs} runs and {args.versions} versions in {store} ...", flush=True
            )
            started = time.perf_counter()
            seed(store, args.runs, args.versions)
            print(f"seeded in {time.perf_counter() - started:.1f} s", flush=True)
        full, again, incremental = [], [], []
        cpu: dict[str, list[float]] = {"full": [], "again": [], "incremental": []}
        rng = random.Random(11)
        extra = args.runs + len(list(LocalStore(store).list("runs/")))  # ids never reused
        for n in range(args.repeat):
            out = work / f"site-{n}"
            shutil.rmtree(out, ignore_errors=True)
            seconds, result = build(store, out)
            full.append(seconds)
            cpu["full"].append(result["cpu"])
            print(
                f"  full build {n + 1}: {seconds:.2f} s ({result['pages']} pages, "
                f"{result['seconds']:.2f} s in the builder)",
                flush=True,
            )
            seconds, result = build(store, out)
            again.append(seconds)
            cpu["again"].append(result["cpu"])
            save_run(LocalStore(store), run_record(extra, rng))
            extra += 1
            seconds, result = build(store, out)
            incremental.append(seconds)
            cpu["incremental"].append(result["cpu"])
            print(
                f"  one new run {n + 1}: {seconds:.2f} s ({result['written']} pages written, "
                f"{result['records_read']} records read)",
                flush=True,
            )
        rows = [
            ("full build", statistics.median(full), "full", cpu["full"]),
            ("no-change rebuild", statistics.median(again), None, cpu["again"]),
            (
                "rebuild after one new run",
                statistics.median(incremental),
                "incremental",
                cpu["incremental"],
            ),
        ]
        print(
            f"\n{args.runs} runs, {args.versions} versions; medians of {args.repeat} "
            "(a CLI process each, start-up included):"
        )
        load = os.getloadavg()[0]
        print(f"(load average now {load:.1f} on {os.cpu_count()} cores; CPU: seconds of CPU used)")
        for label, value, goal, used in rows:
            verdict = ""
            if goal:
                verdict = f"goal < {GOALS[goal]:.0f} s  " + (
                    "ok" if value < GOALS[goal] else "MISSED"
                )
            print(f"  {label:28s} {value:6.2f} s  CPU {statistics.median(used):6.2f} s  {verdict}")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
