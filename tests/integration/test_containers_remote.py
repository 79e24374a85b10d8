"""Steps on a "remote" Docker host, for real: a second dockerd (its own data-root, exec-root,
pidfile, unix socket and TCP port) named in mlops.yaml, with the store on the real SeaweedFS
S3 server. The host pulls the pushed image from the registry; the containers read and write
the bucket themselves, with credentials passed in their environment at run time only."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from mlopsctl.testing.engines import SecondEngine
from tests.conftest import S3TestServer
from tests.integration.conftest import remove_images, write_project
from tests.integration.test_containers_build import mlopsctl
from tests.integration.test_containers_run import FAST, SPEC, _outputs

pytestmark = [pytest.mark.docker, pytest.mark.s3]


def _engine_api(url: str):
    import docker

    return docker.APIClient(base_url=url, version="auto", timeout=30)


def test_a_remote_host_runs_the_steps_against_the_s3_store(
    tmp_path: Path, second_engine: SecondEngine, s3_env: S3TestServer, s3_url: str
) -> None:
    name = f"t-{uuid.uuid4().hex[:10]}"
    hosts = (
        "docker:\n  hosts:\n"
        f"    far: {{url: '{second_engine.tcp_url}'}}\n"
        f"    near: {{url: '{second_engine.socket_url}'}}\n"
    )
    store = f"{{url: '{s3_url}', s3: {{endpoint_url: '{s3_env.endpoint}'}}}}"
    root = write_project(tmp_path / name, name, store=store, extra=hosts)
    try:
        # tcp:// is another machine: the task goes in and the result comes out through the
        # engine's archive API; the image comes from the registry (pushed for the purpose).
        proc, _ = mlopsctl(
            root, "run", SPEC, *FAST, "--backend", "docker", "--host", "far", "--json"
        )
        assert proc.returncode == 0, proc.stderr
        far = json.loads(proc.stdout)
        assert far["status"] == "succeeded"
        assert all(s["status"] == "executed" for s in far["steps"].values())
        assert far["store"] == s3_url
        image = far["image"]
        assert image["repo_digest"].startswith("sha256:")

        remote = _engine_api(second_engine.socket_url)
        try:
            pulled = remote.inspect_image(image["ref"])
            assert pulled["Id"] == image["digest"]  # the same image, by id, on the host
            assert not [e for e in pulled["Config"].get("Env") or [] if e.startswith("AWS_")]
            assert not remote.containers(
                all=True, filters={"label": f"io.mlopsctl.run={far['id']}"}
            )
        finally:
            remote.close()

        # The same engine through its unix socket (this machine: the work folder is mounted),
        # the image already there; every output equal to the tcp run's.
        proc, _ = mlopsctl(
            root,
            "run",
            SPEC,
            *FAST,
            "--backend",
            "docker",
            "--host",
            "near",
            "--no-cache",
            "--no-register",
            "--json",
        )
        assert proc.returncode == 0, proc.stderr
        near = json.loads(proc.stdout)
        assert _outputs(near) == _outputs(far)

        # And as local processes on the same S3 store: the same bytes again.
        proc, _ = mlopsctl(root, "run", SPEC, *FAST, "--no-register", "--json")
        assert proc.returncode == 0, proc.stderr
        assert _outputs(json.loads(proc.stdout)) == _outputs(far)
    finally:
        remove_images(name)


def test_a_remote_host_with_a_local_store_is_refused_before_the_run(
    tmp_path: Path, second_engine: SecondEngine
) -> None:
    name = f"t-{uuid.uuid4().hex[:10]}"
    hosts = f"docker:\n  hosts:\n    far: {{url: '{second_engine.tcp_url}'}}\n"
    root = write_project(tmp_path / name, name, extra=hosts)
    proc, _ = mlopsctl(root, "run", SPEC, "--backend", "docker", "--host", "far")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "is another machine: its containers cannot reach the local store folder" in lines[0]
    assert "use an S3 store" in lines[0]
    assert not (root / ".mlops" / "runs").exists()
