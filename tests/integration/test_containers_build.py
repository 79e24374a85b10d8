"""`mlopsctl build` against the real test bed (dockerd, the registry on 127.0.0.1:5000,
mlopsctl-base:deps): build -> push -> digest recorded; an unchanged build is skipped; what
changes the content tag and what does not; a failed build, a missing base image and an
unreachable registry are one-line errors with their exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import git

pytestmark = pytest.mark.docker


def mlopsctl(cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 240):
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "mlopsctl", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )
    return proc, time.monotonic() - t0


def _registry_digest(repo: str, tag: str) -> str | None:
    host, _, path = repo.partition("/")
    request = urllib.request.Request(
        f"http://{host}/v2/{path}/manifests/{tag}",
        method="HEAD",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.headers.get("Docker-Content-Digest")


def _inspect(ref: str) -> dict:
    from mlopsctl.testing.engines import default_client

    client = default_client()
    try:
        return client.inspect_image(ref)
    finally:
        client.close()


def test_build_push_records_the_digest_then_an_unchanged_build_is_skipped(
    docker_project: Path,
) -> None:
    name = docker_project.name
    proc, _ = mlopsctl(docker_project, "build", "pipelines/quickstart.yaml", "--push", "--json")
    assert proc.returncode == 0, proc.stderr
    first = json.loads(proc.stdout)
    assert first["built"] and first["pushed"]
    assert "Step 1/" in proc.stderr  # the build output streams to stderr
    repo = f"127.0.0.1:5000/{name}/quickstart"
    assert first["image"] == repo
    commit = git(docker_project, "rev-parse", "HEAD").stdout.strip()
    assert first["tags"] == [first["content_tag"], commit[:12]]
    assert first["content_tag"].startswith("content-")

    # The digest in the store is the registry's, for both tags.
    assert first["digest"].startswith("sha256:")
    assert _registry_digest(repo, first["content_tag"]) == first["digest"]
    assert _registry_digest(repo, commit[:12]) == first["digest"]
    key = f"images/{name}/quickstart/{first['content_tag']}.json"
    assert first["record"] == key
    record = json.loads((docker_project / ".mlops" / key).read_text())
    assert record["digest"] == first["digest"]
    assert record["image_id"] == first["image_id"]
    assert record["git"]["commit"] == commit
    assert record["spec"]["path"] == "pipelines/quickstart.yaml"
    events = [
        json.loads(p.read_text()) for p in (docker_project / ".mlops" / "events").rglob("*.json")
    ]
    assert [(e["type"], e["digest"]) for e in events] == [("image.push", first["digest"])]

    # OCI labels: commit, creation time, spec digest, mlopsctl version.
    labels = _inspect(first["ref"])["Config"]["Labels"]
    assert labels["org.opencontainers.image.revision"] == commit
    assert labels["org.opencontainers.image.created"].startswith("20")
    assert labels["io.mlopsctl.spec-digest"] == record["spec"]["digest"]
    assert labels["io.mlopsctl.version"]
    # Credentials never go into an image.
    env = _inspect(first["ref"])["Config"].get("Env") or []
    assert not [e for e in env if e.startswith("AWS_")]

    # Nothing changed: skipped, fast, same content tag.
    proc, seconds = mlopsctl(docker_project, "build", "pipelines/quickstart.yaml", "--json")
    assert proc.returncode == 0, proc.stderr
    second = json.loads(proc.stdout)
    assert not second["built"] and second["skipped"]
    assert second["content_tag"] == first["content_tag"]
    assert second["image_id"] == first["image_id"]
    assert "Step 1/" not in proc.stderr
    assert seconds < 10

    # A project file changes: a new content tag, built on the cached layers below it.
    (docker_project / "pipelines" / "notes.txt").write_text("hello\n")
    proc, _ = mlopsctl(docker_project, "build", "pipelines/quickstart.yaml", "--json")
    assert proc.returncode == 0, proc.stderr
    third = json.loads(proc.stdout)
    assert third["built"] and third["content_tag"] != first["content_tag"]
    assert third["git_tag"] == f"{commit[:12]}-dirty"  # untracked file: not the commit
    # An ignored file is not part of the image.
    (docker_project / ".mlops" / "junk").write_text("x")
    proc, _ = mlopsctl(docker_project, "build", "pipelines/quickstart.yaml", "--json")
    assert json.loads(proc.stdout)["content_tag"] == third["content_tag"]


def test_a_failed_build_is_one_line_plus_the_failing_steps_tail(docker_project: Path) -> None:
    # A requirement pip cannot even parse: fails at once, without the network.
    (docker_project / "requirements.txt").write_text("mlopsctl-test-bad ==== 1\n")
    proc, _ = mlopsctl(docker_project, "build", "pipelines/quickstart.yaml", "-q")
    assert proc.returncode == 1, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("mlopsctl: error: image build failed at Step ")
    assert "project-requirements.txt" in last
    assert "returned a non-zero code" in last
    assert "the failing build step's last lines:" in proc.stderr
    assert "mlopsctl-test-bad ==== 1" in proc.stderr  # pip's own complaint, from the tail
    assert "Traceback" not in proc.stderr


def test_a_missing_base_image_is_a_not_found(docker_project: Path) -> None:
    spec = docker_project / "pipelines" / "quickstart.yaml"
    spec.write_text(
        spec.read_text().replace("steps:", "image: {base: 'mlopsctl-no-such-base:1'}\nsteps:", 1)
    )
    proc, seconds = mlopsctl(docker_project, "build", "pipelines/quickstart.yaml")
    assert proc.returncode == 6, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("mlopsctl: error: base image mlopsctl-no-such-base:1 is not on the")
    assert "testbed-docker.sh" in lines[0]
    assert seconds < 30


def test_an_unreachable_registry_fails_the_push_with_exit_5(docker_project: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = docker_project / "mlops.yaml"
    config.write_text(config.read_text().replace("127.0.0.1:5000", f"127.0.0.1:{port}"))
    proc, seconds = mlopsctl(docker_project, "build", "pipelines/quickstart.yaml", "--push", "-q")
    assert proc.returncode == 5, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"mlopsctl: error: image registry 127.0.0.1:{port} is unreachable")
    assert seconds < 60
    assert not (docker_project / ".mlops" / "images").exists()


def test_a_registry_refusing_the_push_is_exit_5(docker_project: Path, tmp_path: Path) -> None:
    """A registry in read-only maintenance mode answers every upload with 405."""
    import shutil

    from mlopsctl.testing.seaweed import free_ports, stop_process

    registry = shutil.which("docker-registry")
    if registry is None:
        pytest.skip("docker-registry is not installed")
    (port,) = free_ports(1)
    config = tmp_path / "readonly.yml"
    config.write_text(
        "version: 0.1\nlog: {level: error}\n"
        f"storage: {{filesystem: {{rootdirectory: {tmp_path / 'data'}}}, "
        "maintenance: {readonly: {enabled: true}}}\n"
        f"http: {{addr: '127.0.0.1:{port}'}}\n"
    )
    server = subprocess.Popen(
        [registry, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the read-only registry did not start"
                time.sleep(0.2)
        project_file = docker_project / "mlops.yaml"
        project_file.write_text(
            project_file.read_text().replace("127.0.0.1:5000", f"127.0.0.1:{port}")
        )
        proc, _ = mlopsctl(docker_project, "build", "pipelines/quickstart.yaml", "--push", "-q")
    finally:
        stop_process(server)
    assert proc.returncode == 5, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"mlopsctl: error: push of 127.0.0.1:{port}/{docker_project.name}/")
    assert "405" in last
    assert not (docker_project / ".mlops" / "images").exists()
