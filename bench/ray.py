"""The Ray backend against local processes, on a real two-node Ray cluster started here with
`ray start` (one CPU per node, in a network namespace: tests/integration/ray_cluster.py):

1. 32 `tune` trials (XGBoost with one thread, as a one-CPU Ray task gets; 3-fold CV on the
   breast-cancer data) as one pipeline step: on
   the cluster (each trial a Ray task, so two at a time, one per node) against `mlopsctl run
   --jobs 2` as local processes (the trials of one step run one after the other there). The
   tune step's own time and the whole command, and local/ray as a ratio (above 1: Ray faster).
2. The per-task overhead: a no-op step (`run: "true"`) on the cluster against a local process,
   the step's time in the run record (dispatch, the relay, the entry point, the streamed
   result) and the whole command (which on Ray also joins the cluster and probes every node).

    .venv/bin/python bench/ray.py [--runs N] [--trials N]

Needs root (the network namespace) and the ray package. Prints medians in seconds and the
machine's load average (other work on the machine moves these figures). Every command is
bounded in time; the cluster is stopped by PID at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.integration.ray_cluster import RayCluster

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

COMMAND_TIMEOUT_S = 900
NOOP = """apiVersion: mlopsctl/v1
kind: Pipeline
name: noop
steps:
  noop: {run: "true"}
"""
TUNE = """apiVersion: mlopsctl/v1
kind: Pipeline
name: tune
params: {target: target}
steps:
  ingest: {component: ingest, with: {sklearn: breast_cancer}}
  split:
    component: split
    inputs: {dataset: ingest.dataset}
    with: {test_size: 0.25, seed: 7, stratify: "${params.target}"}
  tune:
    component: tune
    inputs: {train: split.train}
    with:
      target: "${params.target}"
      estimator: {class: xgboost.XGBClassifier, n_estimators: 30, n_jobs: 1}
      search: random
      n_trials: TRIALS
      seed: 7
      metric: roc_auc
      space:
        max_depth: [2, 3, 4, 6]
        learning_rate: {low: 0.01, high: 0.3, log: true, type: float}
"""


def _project(root: Path, trials: int) -> Path:
    root.mkdir(parents=True)
    (root / "mlops.yaml").write_text(
        "apiVersion: mlopsctl/v1\nkind: Project\nname: bench-ray\nstore: {url: .mlops}\n"
    )
    (root / "noop.yaml").write_text(NOOP)
    (root / "tune.yaml").write_text(TUNE.replace("TRIALS", str(trials)))
    (root / ".gitignore").write_text(".mlops/\n")
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "bench"]):
        subprocess.run(
            ["git", "-c", "user.email=b@example.com", "-c", "user.name=b", *args],
            cwd=root,
            check=True,
            capture_output=True,
        )
    return root


def _run(cluster: RayCluster, root: Path, *args: str) -> tuple[float, dict]:
    command = cluster.command(sys.executable, "-m", "mlopsctl", *args)
    start = time.perf_counter()
    proc = subprocess.run(
        command,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        env=cluster.env(),
        check=False,
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"mlopsctl {' '.join(args)} exited {proc.returncode}: {proc.stderr[-1500:]}")
    return wall, json.loads(proc.stdout)


def _medians(
    cluster: RayCluster, root: Path, runs: int, spec: str, step: str, *extra: str
) -> tuple[float, float, list[float]]:
    steps, walls = [], []
    for _ in range(runs):
        wall, record = _run(cluster, root, "run", spec, "--no-cache", "--json", *extra)
        steps.append(float(record["steps"][step]["seconds"]))
        walls.append(wall)
    return statistics.median(steps), statistics.median(walls), steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each measurement")
    parser.add_argument("--trials", type=int, default=32, help="tune trials")
    args = parser.parse_args()

    from tests.integration.ray_cluster import problem, start_cluster

    trouble = problem()
    if trouble:
        sys.exit(f"cannot start the Ray cluster: {trouble}")
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        root = _project(Path(tmp) / "project", args.trials)
        (Path(tmp) / "cluster").mkdir()
        started = time.perf_counter()
        cluster = start_cluster(Path(tmp) / "cluster")
        print(f"two-node cluster up in {time.perf_counter() - started:.1f} s at {cluster.address}")
        try:
            ray = ("--backend", "ray", "--address", cluster.address)
            print(f"load average before: {os.getloadavg()[0]:.1f}")
            noop_local = _medians(cluster, root, args.runs, "noop.yaml", "noop")
            noop_ray = _medians(cluster, root, args.runs, "noop.yaml", "noop", *ray)
            print(
                f"no-op step   local: step {noop_local[0]:.3f} s, command {noop_local[1]:.2f} s"
                f" | ray: step {noop_ray[0]:.3f} s, command {noop_ray[1]:.2f} s"
                f" | overhead per task {noop_ray[0] - noop_local[0]:+.3f} s"
                f" (command {noop_ray[1] - noop_local[1]:+.2f} s)"
            )
            tune_local = _medians(cluster, root, args.runs, "tune.yaml", "tune", "--jobs", "2")
            tune_ray = _medians(cluster, root, args.runs, "tune.yaml", "tune", *ray)
            print(
                f"{args.trials} tune trials   local --jobs 2: step {tune_local[0]:.1f} s "
                f"(runs {', '.join(f'{s:.1f}' for s in tune_local[2])}), command "
                f"{tune_local[1]:.1f} s | ray, 2 nodes: step {tune_ray[0]:.1f} s (runs "
                f"{', '.join(f'{s:.1f}' for s in tune_ray[2])}), command {tune_ray[1]:.1f} s"
            )
            print(
                f"ratio local/ray: step {tune_local[0] / tune_ray[0]:.2f}, command "
                f"{tune_local[1] / tune_ray[1]:.2f}"
            )
            print(f"load average after: {os.getloadavg()[0]:.1f}")
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
