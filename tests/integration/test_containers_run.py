"""`mlopsctl run --backend docker` on the local engine: the quickstart pipeline computes exactly
what a local run computes (same output digests), the run and the model version it registers
carry the image digest, a re-run comes from the cache, a failing step fails the run with its
log tail, logs stream with a `[step]` prefix, Ctrl-C kills the running container and records
the run as interrupted, and no container is left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.test_containers_build import mlopsctl

pytestmark = pytest.mark.docker

SPEC = "pipelines/quickstart.yaml"
FAST = ("-p", "model.n_estimators=20")


def _outputs(record: dict) -> dict[str, dict[str, str]]:
    return {
        name: {out: ref["digest"] for out, ref in (step.get("outputs") or {}).items()}
        for name, step in record["steps"].items()
    }


def _containers(*labels: str) -> list[dict]:
    from mlopsctl.testing.engines import default_client

    client = default_client()
    try:
        return client.containers(all=True, filters={"label": list(labels)})
    finally:
        client.close()


def test_quickstart_in_docker_matches_the_local_run(docker_project: Path) -> None:
    proc, _ = mlopsctl(docker_project, "run", SPEC, *FAST, "--backend", "docker", "--json")
    assert proc.returncode == 0, proc.stderr
    in_docker = json.loads(proc.stdout)
    assert in_docker["status"] == "succeeded"
    assert all(s["status"] == "executed" for s in in_docker["steps"].values())
    image = in_docker["image"]
    assert image["ref"].startswith(f"127.0.0.1:5000/{docker_project.name}/quickstart:content-")
    assert image["digest"].startswith("sha256:")

    # The model version registered by that run carries the image (digest, not tag).
    registered = in_docker["registered"]
    assert registered["new"]
    versions = docker_project / ".mlops" / "models" / registered["model"] / "versions"
    version = json.loads((versions / f"{registered['version']}.json").read_text())
    assert version["image"]["digest"] == image["digest"]
    assert version["image"]["ref"] == image["ref"]

    # The same pipeline as local processes: every step runs (the image digest is part of the
    # container runs' cache keys, not of these), and every output is byte for byte the same.
    proc, _ = mlopsctl(docker_project, "run", SPEC, *FAST, "--json")
    assert proc.returncode == 0, proc.stderr
    local = json.loads(proc.stdout)
    assert all(s["status"] == "executed" for s in local["steps"].values())
    assert local["image"] is None
    assert _outputs(local) == _outputs(in_docker)
    for name, step in local["steps"].items():
        assert step["cache_key"] != in_docker["steps"][name]["cache_key"]

    # Again in docker: nothing changed, everything from the cache, no new image built.
    proc, _ = mlopsctl(docker_project, "run", SPEC, *FAST, "--backend", "docker", "--json")
    assert proc.returncode == 0, proc.stderr
    again = json.loads(proc.stdout)
    assert all(s["status"] == "cached" for s in again["steps"].values())
    assert again["image"]["digest"] == image["digest"]
    assert not _containers(f"io.mlopsctl.run={in_docker['id']}")


FAILING = """\
apiVersion: mlopsctl/v1
kind: Pipeline
name: fails
steps:
  hello:
    run: "echo hello-from-the-container; echo made-here > {outputs.out}"
    outputs: [out]
  boom:
    run: "echo boom-marker; cat {inputs.x}; exit 3"
    inputs: {x: hello.out}
"""


def test_a_failing_step_fails_the_run_with_its_log_tail(docker_project: Path) -> None:
    (docker_project / "pipelines" / "fails.yaml").write_text(FAILING)
    proc, _ = mlopsctl(
        docker_project, "-v", "run", "pipelines/fails.yaml", "--backend", "docker", "--json"
    )
    assert proc.returncode == 1, proc.stderr
    record = json.loads(proc.stdout)
    assert record["status"] == "failed"
    assert record["steps"]["hello"]["status"] == "executed"
    boom = record["steps"]["boom"]
    assert boom["status"] == "failed"
    assert "boom-marker" in boom["error"]
    assert "made-here" in boom["error"]  # the input reached the container
    assert "the container exited with status 1" in boom["error"]
    # Logs streamed with the step's name in front.
    assert "[hello] hello-from-the-container" in proc.stderr
    assert "[boom] boom-marker" in proc.stderr
    assert not _containers(f"io.mlopsctl.run={record['id']}")


def test_an_explicit_image_is_used_as_given(docker_project: Path) -> None:
    proc, _ = mlopsctl(docker_project, "build", SPEC, "-q")
    assert proc.returncode == 0, proc.stderr
    ref = proc.stdout.strip()
    (docker_project / "pipelines" / "changed.txt").write_text("not in that image\n")
    proc, _ = mlopsctl(
        docker_project,
        "run",
        SPEC,
        *FAST,
        "--backend",
        "docker",
        "--image",
        ref,
        "--no-register",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["image"]["ref"] == ref
    assert "content_tag" not in record["image"]  # nothing was built for this run


SLEEPY = """\
apiVersion: mlopsctl/v1
kind: Pipeline
name: sleepy
steps:
  nap: {run: "echo napping; sleep 120"}
"""


def test_ctrl_c_kills_the_container_and_records_the_run_as_interrupted(
    docker_project: Path,
) -> None:
    (docker_project / "pipelines" / "sleepy.yaml").write_text(SLEEPY)
    proc, _ = mlopsctl(docker_project, "build", "pipelines/sleepy.yaml", "-q")
    assert proc.returncode == 0, proc.stderr
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlopsctl",
            "-v",
            "run",
            "pipelines/sleepy.yaml",
            "--backend",
            "docker",
        ],
        cwd=docker_project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        mine = (f"io.mlopsctl.project={docker_project.name}", "io.mlopsctl.step=nap")
        deadline = time.monotonic() + 60
        while not _containers(*mine) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)
        t0 = time.monotonic()
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=30)
        stopped = time.monotonic() - t0
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
    assert child.returncode == 130, err
    assert stopped < 10
    assert not _containers(*mine)
    (run,) = (docker_project / ".mlops" / "runs").glob("*.json")
    record = json.loads(run.read_text())
    assert record["status"] == "interrupted"
    assert record["steps"]["nap"]["status"] == "interrupted"
    assert "napping" in record["steps"]["nap"]["error"]
