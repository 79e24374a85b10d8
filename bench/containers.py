"""Container costs: a no-change `mlopsctl build` (the content tag exists: nothing to build),
and the overhead of running a no-op step in a container rather than as a local process.

    .venv/bin/python bench/containers.py [--runs N]

Needs the Docker test bed (as root: bash scripts/testbed-docker.sh). Works in a throw-away git
project with the local store, on mlopsctl-base:deps. Prints medians in seconds and verdicts.
Goals: no-change rebuild < 2 s (the whole command); container overhead per no-op step < 1.5 s
(the step's own time in the run record, container vs local; the whole `mlopsctl run` command
is printed beside it).
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
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

REBUILD_GOAL_S = 2.0
OVERHEAD_GOAL_S = 1.5
NOOP = """apiVersion: mlopsctl/v1
kind: Pipeline
name: noop
steps:
  noop: {run: "true"}
"""


def _cli() -> list[str]:
    exe = Path(sys.executable).with_name("mlopsctl")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "mlopsctl"]


def _run(cwd: Path, *args: str) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run([*_cli(), *args], cwd=cwd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"mlopsctl {' '.join(args)} exited {proc.returncode}: {proc.stderr[-800:]}")
    return seconds, proc.stdout


def _project(root: Path) -> Path:
    from mlopsctl.testing.engines import BASE_IMAGE, REGISTRY

    name = f"bench-{uuid.uuid4().hex[:8]}"
    (root / "mlops.yaml").write_text(
        f"apiVersion: mlopsctl/v1\nkind: Project\nname: {name}\nstore: {{url: .mlops}}\n"
        f"registry: {{url: '{REGISTRY}', insecure: true}}\nimage: {{base: '{BASE_IMAGE}'}}\n"
    )
    (root / "noop.yaml").write_text(NOOP)
    (root / ".gitignore").write_text(".mlops/\n")
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "bench"]):
        subprocess.run(
            ["git", "-c", "user.email=b@example.com", "-c", "user.name=b", *args],
            cwd=root,
            check=True,
            capture_output=True,
        )
    return root


def _step_and_wall(root: Path, runs: int, *backend: str) -> tuple[float, float]:
    steps, walls = [], []
    for _ in range(runs):
        wall, out = _run(root, "run", "noop.yaml", "--no-cache", "--json", *backend)
        steps.append(json.loads(out)["steps"]["noop"]["seconds"])
        walls.append(wall)
    return statistics.median(steps), statistics.median(walls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()

    from mlopsctl.testing.engines import testbed_problem

    problem = testbed_problem()
    if problem:
        sys.exit(f"Docker test bed unusable: {problem}; as root: bash scripts/testbed-docker.sh")
    with tempfile.TemporaryDirectory(prefix="mlopsctl-bench-containers-") as tmp:
        root = _project(Path(tmp))
        first, _ = _run(root, "build", "noop.yaml", "-q")
        rebuilds = [_run(root, "build", "noop.yaml", "-q")[0] for _ in range(args.runs)]
        rebuild = statistics.median(rebuilds)

        _step_and_wall(root, 1)  # warm both paths (page cache, image layers)
        _step_and_wall(root, 1, "--backend", "docker")
        local_step, local_wall = _step_and_wall(root, args.runs)
        docker_step, docker_wall = _step_and_wall(root, args.runs, "--backend", "docker")
        _cleanup(root)

    overhead = docker_step - local_step
    load = os.getloadavg()[0]
    print(f"load average {load:.2f} on {os.cpu_count()} cores; {args.runs} runs each, medians")
    rows = [
        ("first build, on cached base layers", first, ""),
        ("no-change rebuild (whole command)", rebuild, ""),
        ("no-op step, local process", local_step, f"  (whole run {local_wall:.3f} s)"),
        ("no-op step, container", docker_step, f"  (whole run {docker_wall:.3f} s)"),
        ("container overhead per step", overhead, ""),
        ("  whole run command, container - local", docker_wall - local_wall, ""),
    ]
    for label, seconds, note in rows:
        print(f"{label:<40}{seconds:7.3f} s{note}")
    rebuild_ok = rebuild < REBUILD_GOAL_S
    overhead_ok = overhead < OVERHEAD_GOAL_S
    print(f"goal no-change rebuild < {REBUILD_GOAL_S} s: {'met' if rebuild_ok else 'MISSED'}")
    print(f"goal container overhead < {OVERHEAD_GOAL_S} s: {'met' if overhead_ok else 'MISSED'}")
    print(f"verdict: {'met' if rebuild_ok and overhead_ok else 'MISSED'}")


def _cleanup(root: Path) -> None:
    from mlopsctl.testing.engines import default_client

    name = next(
        line.split(":", 1)[1].strip()
        for line in (root / "mlops.yaml").read_text().splitlines()
        if line.startswith("name:")
    )
    client = default_client()
    try:
        for image in client.images(filters={"label": f"io.mlopsctl.project={name}"}):
            for tag in image.get("RepoTags") or []:
                client.remove_image(tag, force=True)
    finally:
        client.close()


if __name__ == "__main__":
    main()
