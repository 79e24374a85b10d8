"""`mlopsctl build` and `run --backend docker` errors that need no Docker engine: each is one
line with its documented exit code, and a GPU step with no GPU host is refused before the run
starts (before any engine is even contacted)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import Invoke

GPU = """apiVersion: mlopsctl/v1
kind: Pipeline
name: gpu
steps:
  prep:
    run: "echo x > {outputs.out}"
    outputs: [out]
  fit:
    run: "cat {inputs.x}"
    inputs: {x: prep.out}
    resources: {gpus: 1}
"""


@pytest.fixture
def no_engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """DOCKER_HOST pointing at a socket nobody listens on."""
    url = f"unix://{tmp_path}/no-docker-here.sock"
    monkeypatch.setenv("DOCKER_HOST", url)
    return url


def test_an_unreachable_engine_is_exit_5_with_a_hint(
    project: Path, cli: Invoke, no_engine: str
) -> None:
    for args in (
        ("build", "pipelines/train.yaml"),
        ("run", "pipelines/train.yaml", "--backend", "docker"),
    ):
        result = cli(*args, cwd=project)
        assert result.exit_code == 5, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith(
            f"mlopsctl: error: Docker engine {no_engine} (default) is unreachable"
        )
        assert "no engine socket there" in lines[0]
        assert "testbed-docker.sh" in lines[0]
    assert not (project / ".mlops" / "runs").exists()


def test_a_gpu_step_without_a_gpu_host_is_refused_before_the_run(
    project: Path, cli: Invoke, no_engine: str
) -> None:
    (project / "pipelines" / "gpu.yaml").write_text(GPU)
    (project / "mlops.yaml").write_text(
        (project / "mlops.yaml").read_text()
        + "docker:\n  hosts:\n    cpu-box: {url: 'tcp://127.0.0.1:9'}\n"
    )
    result = cli("run", "pipelines/gpu.yaml", "--backend", "docker", cwd=project)
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "mlopsctl: error: step 'fit' needs 1 GPU, but no Docker host in mlops.yaml declares "
        "that many (none); add gpus: N to a docker.hosts entry of mlops.yaml, or drop "
        "resources.gpus from step 'fit'"
    ]
    assert not (project / ".mlops" / "runs").exists()


def test_unknown_host_and_docker_options_without_docker_are_usage_errors(
    project: Path, cli: Invoke, no_engine: str
) -> None:
    result = cli(
        "run", "pipelines/train.yaml", "--backend", "docker", "--host", "gpu-9", cwd=project
    )
    assert result.exit_code == 2
    assert "no Docker host named 'gpu-9' in mlops.yaml (docker.hosts: none)" in result.stderr
    result = cli("run", "pipelines/train.yaml", "--image", "x:1", cwd=project)
    assert result.exit_code == 2
    assert "need --backend docker" in result.stderr


def test_push_without_a_registry_is_a_usage_error(
    project: Path, cli: Invoke, no_engine: str
) -> None:
    result = cli("build", "pipelines/train.yaml", "--push", cwd=project)
    assert result.exit_code == 2, result.stderr
    assert result.stderr.strip() == (
        "mlopsctl: error: --push needs an image registry, and mlops.yaml has none; "
        "add registry: {url: host:port} to mlops.yaml"
    )


IGNORED_DATA = """apiVersion: mlopsctl/v1
kind: Pipeline
name: csv
steps:
  ingest: {component: ingest, with: {path: data/rows.csv}}
"""


def test_data_the_image_will_not_hold_is_refused_before_the_run(
    project: Path, cli: Invoke, no_engine: str
) -> None:
    (project / "data").mkdir()
    (project / "data" / "rows.csv").write_text("a,b\n1,2\n")
    (project / ".gitignore").write_text((project / ".gitignore").read_text() + "data/\n")
    (project / "pipelines" / "csv.yaml").write_text(IGNORED_DATA)
    result = cli("run", "pipelines/csv.yaml", "--backend", "docker", cwd=project)
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith(
        "mlopsctl: error: step 'ingest' reads data/rows.csv, which is not in the pipeline's image"
    )
    # Once git sees the file, the check passes and the next thing is the engine (none here).
    (project / ".gitignore").write_text(".mlops/\n")
    result = cli("run", "pipelines/csv.yaml", "--backend", "docker", cwd=project)
    assert result.exit_code == 5, result.stderr
