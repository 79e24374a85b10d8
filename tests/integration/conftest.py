"""Docker fixtures for the container tests: the test bed (engine, registry on 127.0.0.1:5000,
mlopsctl-base:deps) comes from `scripts/testbed-docker.sh`. Without it these tests skip and say
why, except under MLOPSCTL_REQUIRE_DOCKER=1 (CI), where a missing test bed is a failure."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlopsctl.testing.engines import (
    BASE_IMAGE,
    REGISTRY,
    REQUIRE_ENV,
    SecondEngine,
    start_second_engine,
    testbed_problem,
)
from tests.conftest import git

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "specs" / "examples" / "quickstart.yaml"


def _unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"Docker test bed unusable: {reason} ({REQUIRE_ENV}=1)", pytrace=False)
    pytest.skip(f"Docker test bed unusable: {reason}; as root, run bash scripts/testbed-docker.sh")


@pytest.fixture(scope="session")
def docker_bed() -> str:
    """The registry address, once the engine, the registry and the base image answer."""
    problem = testbed_problem()
    if problem:
        _unavailable(problem)
    return REGISTRY


def write_project(
    root: Path,
    name: str,
    *,
    store: str = "{url: .mlops}",
    extra: str = "",
    registry: str = REGISTRY,
) -> Path:
    """A committed git project: mlops.yaml (store, registry, base image, `extra` lines) and
    the quickstart spec."""
    (root / "pipelines").mkdir(parents=True)
    (root / "mlops.yaml").write_text(
        "apiVersion: mlopsctl/v1\n"
        "kind: Project\n"
        f"name: {name}\n"
        f"store: {store}\n"
        f"registry: {{url: '{registry}', insecure: true}}\n"
        f"image: {{base: '{BASE_IMAGE}'}}\n" + extra
    )
    shutil.copy(QUICKSTART, root / "pipelines" / "quickstart.yaml")
    (root / ".gitignore").write_text(".mlops/\n")
    git(root, "init", "-q", check=True)
    git(root, "add", "-A", check=True)
    git(root, "commit", "-qm", "project", check=True)
    return root


@pytest.fixture
def docker_project(tmp_path: Path, docker_bed: str) -> Iterator[Path]:
    """A fresh project (unique name, so images and registry repositories never collide);
    its images are removed from the engine afterwards."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    root = write_project(tmp_path / name, name)
    yield root
    remove_images(name)


def remove_images(project: str) -> None:
    from mlopsctl.testing.engines import default_client

    client = default_client()
    try:
        for image in client.images(filters={"label": f"io.mlopsctl.project={project}"}):
            for tag in image.get("RepoTags") or []:
                client.remove_image(tag, force=True)
    finally:
        client.close()


@pytest.fixture(scope="session")
def second_engine(
    docker_bed: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecondEngine]:
    """A second dockerd with its own data-root, exec-root, pidfile, unix socket and TCP port:
    the "remote host" of the remote-run tests. Stopped by PID and its folders removed."""
    if os.geteuid() != 0:
        _unavailable("a second dockerd needs root")
    engine = start_second_engine(tmp_path_factory.mktemp("dockerd2"))
    yield engine
    engine.stop()
