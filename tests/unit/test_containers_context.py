"""What goes into a pipeline image's build context, and what its content tag depends on; step
placement (GPUs); memory sizes. No Docker engine needed."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mlopsctl.config import load_project
from mlopsctl.containers.build import content_tag, plan_build, requirements_path
from mlopsctl.containers.engine import Engine
from mlopsctl.containers.runner import memory_bytes, place_steps
from mlopsctl.errors import UsageError
from mlopsctl.pipeline.plan import load_plan

SPEC = """apiVersion: mlopsctl/v1
kind: Pipeline
name: demo
image: {base: "my-base:1"}
steps:
  a: {run: "python src/a.py {outputs.out}", code: [src/a.py], outputs: [out]}
  b: {run: "cat {inputs.x}", inputs: {x: a.out}, resources: {gpus: 2, memory: 2Gi}}
"""


def _git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.email=t@e", "-c", "user.name=t", *args],
        cwd=root,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "src").mkdir(parents=True)
    (root / "mlops.yaml").write_text(
        "apiVersion: mlopsctl/v1\nkind: Project\nname: proj\nstore: {url: store-here}\n"
        "registry: {url: 'reg.example:5000/team'}\n"
    )
    (root / "pipeline.yaml").write_text(SPEC)
    (root / "src" / "a.py").write_text("print('a')\n")
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    (root / ".gitignore").write_text("*.log\n")
    (root / "debug.log").write_text("ignored by git\n")
    (root / "store-here").mkdir()
    (root / "store-here" / "runs.json").write_text("the store is never in the image\n")
    (root / "big.bin").write_text("listed in .dockerignore\n")
    (root / ".dockerignore").write_text("# comment\nbig.bin\n")
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "x")
    return root


def _names(root: Path) -> dict[str, int]:
    plan = plan_build(load_project(root), root / "pipeline.yaml")
    return {f.arcname: f.mode for f in plan.files}


def test_the_context_is_the_project_as_git_sees_it_plus_mlopsctl(repo: Path) -> None:
    (repo / "new.py").write_text("untracked, not ignored: included\n")
    names = _names(repo)
    project = {n.removeprefix("project/") for n in names if n.startswith("project/")}
    assert project == {
        ".dockerignore",
        ".gitignore",
        "mlops.yaml",
        "new.py",
        "pipeline.yaml",
        "run.sh",
        "src/a.py",
    }
    assert names["project/run.sh"] == 0o755
    assert names["project/src/a.py"] == 0o644
    assert "Dockerfile" in names
    assert "_mlopsctl/requirements.txt" in names
    assert "_mlopsctl/src/mlopsctl/exec.py" in names
    assert "_mlopsctl/src/mlopsctl/_templates/docker/Dockerfile.tmpl" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_dockerfile_base_requirements_and_names(repo: Path) -> None:
    plan = plan_build(load_project(repo), repo / "pipeline.yaml")
    assert plan.repository == "reg.example:5000/team/proj/demo"
    assert plan.base == "my-base:1"
    dockerfile = next(f for f in plan.files if f.arcname == "Dockerfile").read().decode()
    assert dockerfile.splitlines()[3] == "FROM my-base:1"
    assert "project-requirements.txt" not in dockerfile
    assert "COPY project/ /app/" in dockerfile
    (repo / "requirements.txt").write_text("requests\n")
    plan = plan_build(load_project(repo), repo / "pipeline.yaml")
    dockerfile = next(f for f in plan.files if f.arcname == "Dockerfile").read().decode()
    assert "COPY project/requirements.txt /opt/mlopsctl/project-requirements.txt" in dockerfile
    requirements = next(f for f in plan.files if f.arcname == "_mlopsctl/requirements.txt")
    assert b"xgboost" in requirements.read()


@pytest.mark.parametrize("named", ["../outside.txt", "/etc/hostname", "src/../../outside.txt"])
def test_a_requirements_file_outside_the_project_is_refused(repo: Path, named: str) -> None:
    (repo.parent / "outside.txt").write_text("requests\n")
    spec = repo / "pipeline.yaml"
    spec.write_text(
        SPEC.replace('image: {base: "my-base:1"}', f"image: {{requirements: '{named}'}}")
    )
    with pytest.raises(UsageError, match="is outside the project") as caught:
        plan_build(load_project(repo), spec)
    assert caught.value.exit_code == 2
    assert requirements_path_or_error(repo, spec) == str(caught.value)


def requirements_path_or_error(repo: Path, spec: Path) -> str:
    """The same refusal through the Ray backend's reader of the file (run --requirements)."""
    try:
        requirements_path(load_project(repo), spec)
    except UsageError as exc:
        return str(exc)
    return "accepted"


def test_the_content_tag_follows_the_content_only(repo: Path) -> None:
    def tag(base_id: str = "sha256:base") -> str:
        return content_tag(
            plan_build(load_project(repo), repo / "pipeline.yaml").content_digest(base_id)
        )

    first = tag()
    assert first == tag()  # nothing changed
    assert first.startswith("content-") and len(first) == len("content-") + 20
    (repo / "debug.log").write_text("ignored files do not count\n")
    (repo / "store-here" / "more.json").write_text("{}\n")
    assert tag() == first
    assert tag("sha256:another-base") != first  # a rebuilt base is a new image
    (repo / "src" / "a.py").write_text("print('b')\n")
    changed = tag()
    assert changed != first
    (repo / "src" / "a.py").write_text("print('a')\n")
    assert tag() == first  # the content, not the history


def test_git_tag_says_when_the_tree_is_dirty(repo: Path) -> None:
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()
    plan = plan_build(load_project(repo), repo / "pipeline.yaml")
    assert plan.git_tag == commit[:12]
    (repo / "src" / "a.py").write_text("print('dirty')\n")
    assert plan_build(load_project(repo), repo / "pipeline.yaml").git_tag == f"{commit[:12]}-dirty"


def test_gpu_steps_go_to_a_host_that_declares_gpus(repo: Path) -> None:
    config = repo / "mlops.yaml"
    config.write_text(
        config.read_text()
        + "docker:\n  network_mode: bridge\n  hosts:\n"
        + "    small: {url: 'tcp://a:2375', gpus: 1}\n"
        + "    big: {url: 'ssh://ml@b', gpus: 4, network_mode: host}\n"
    )
    project = load_project(repo)
    plan = load_plan(repo / "pipeline.yaml", project_root=repo)
    default = Engine("default", None)
    placed = place_steps(project, plan, default, None)
    assert placed["a"].engine.name == "default"
    assert placed["a"].network_mode == "bridge"  # the project's default
    assert (placed["b"].engine.name, placed["b"].gpus) == ("big", 2)
    assert placed["b"].network_mode == "host"  # the host's own
    assert placed["b"].memory == "2Gi"
    big = Engine("big", "ssh://ml@b", gpus=4)
    placed = place_steps(project, plan, big, "none")
    assert {p.engine.name for p in placed.values()} == {"big"}
    assert {p.network_mode for p in placed.values()} == {"none"}  # --network wins


def test_a_gpu_step_with_no_gpu_host_is_a_usage_error(repo: Path) -> None:
    project = load_project(repo)
    plan = load_plan(repo / "pipeline.yaml", project_root=repo)
    with pytest.raises(UsageError, match=r"step 'b' needs 2 GPUs, but no Docker host"):
        place_steps(project, plan, Engine("default", None), None)


@pytest.mark.parametrize(
    ("text", "size"),
    [("512m", 512 << 20), ("4g", 4 << 30), ("2Gi", 2 << 30), ("1.5GB", 3 << 29), ("1024", 1024)],
)
def test_memory_sizes(text: str, size: int) -> None:
    assert memory_bytes(text) == size


def test_a_gpu_step_gets_a_device_request_and_limits(tmp_path: Path) -> None:
    """What the engine is asked for (checked without an engine: there is no GPU here)."""
    import docker

    from mlopsctl.containers.runner import DockerRunner, Placement

    client = docker.APIClient(base_url="unix:///nonexistent.sock", version="1.41")
    store = tmp_path / "store"
    runner = DockerRunner(
        image_id="sha256:x",
        project_dir="/app",
        placements={},
        store_task={},
        store_mount=store,
        env={},
    )
    engine = Engine("gpu-1", "ssh://ml@gpu-1", gpus=2)
    placement = Placement(engine, "host", gpus=2, cpus=1.5, memory="2Gi")
    remote = runner._host_config(client, placement, workdir=None)
    assert remote["DeviceRequests"] == [
        {"Driver": "", "Count": 2, "DeviceIDs": [], "Capabilities": [["gpu"]], "Options": {}}
    ]
    assert (remote["NanoCpus"], remote["Memory"], remote["NetworkMode"]) == (
        1_500_000_000,
        2 << 30,
        "host",
    )
    assert not remote.get("Binds")  # another machine: nothing of ours to mount
    local = runner._host_config(client, Placement(Engine("default", None), "none"), tmp_path)
    assert sorted(local["Binds"]) == sorted([f"{tmp_path}:{tmp_path}:rw", f"{store}:{store}:rw"])
    assert "DeviceRequests" not in local
