"""The Ray backend's decisions that need no cluster: resources as task options, the address,
what is refused before a run (an image by tag, an image with a local store, a node with other
library versions, a step no node can hold), the missing-package message, and how the runner
turns a step's streamed task into the step's log and result (with a stand-in for ray)."""

from __future__ import annotations

import io
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from mlopsctl.engines import ray as engine
from mlopsctl.errors import EngineUnreachable, MlopsError, UsageError
from mlopsctl.pipeline.plan import PipelinePlan, StepPlan
from mlopsctl.pipeline.runners import LogSink


def _step(name: str = "train", **resources: Any) -> StepPlan:
    return StepPlan(
        name=name,
        kind="component",
        target="train",
        params={},
        inputs={},
        outputs={},
        resources=resources,
    )


def _plan(*steps: StepPlan) -> PipelinePlan:
    return PipelinePlan(
        name="p",
        spec_path=Path("p.yaml"),
        spec_display="p.yaml",
        spec_digest="sha256:0",
        project_root=Path("."),
        params={},
        overrides=[],
        steps={s.name: s for s in steps},
    )


def test_resources_become_task_options() -> None:
    assert engine.task_options({}) == {"num_cpus": 1.0}
    assert engine.task_options({"cpus": 0.5}) == {"num_cpus": 0.5}
    assert engine.task_options({"cpus": 2, "gpus": 1, "memory": "512m"}) == {
        "num_cpus": 2.0,
        "num_gpus": 1,
        "memory": 512 * 2**20,
    }
    assert engine.memory_bytes("2Gi") == 2 * 2**30
    assert engine.memory_bytes("1.5GB") == int(1.5 * 2**30)


def test_tune_fans_out_and_other_steps_do_not() -> None:
    tune = StepPlan("t", "component", "tune", {}, {}, {})
    assert engine.fans_out(tune)
    assert not engine.fans_out(_step())
    assert not engine.fans_out(StepPlan("r", "run", "echo tune", {}, {}, {}))


def test_address_given_from_the_environment_or_the_local_cluster(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    note = tmp_path / "ray_current_cluster"
    monkeypatch.setattr(engine, "_CURRENT_CLUSTER", note)
    assert engine.resolve_address("10.0.0.1:6379") == "10.0.0.1:6379"
    with pytest.raises(EngineUnreachable, match="no Ray cluster is running on this machine"):
        engine.resolve_address(None)
    note.write_text("10.0.0.2:6380\n")
    assert engine.resolve_address("auto") == "10.0.0.2:6380"
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    assert engine.resolve_address(None) == "ray://head:10001"


def test_an_address_nothing_answers_fails_fast() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: refused
        with pytest.raises(
            EngineUnreachable, match=f"cannot reach the Ray cluster at 127.0.0.1:{port}"
        ):
            engine.check_reachable(f"127.0.0.1:{port}", timeout=2)
    with pytest.raises(UsageError, match="is not HOST:PORT"):
        engine.check_reachable("head-node")


def test_an_image_must_be_pinned_and_needs_s3() -> None:
    with pytest.raises(UsageError, match="not pinned by digest"):
        engine._image("registry/p/q:abc", is_s3=True)
    digest = "sha256:" + "a" * 64
    with pytest.raises(UsageError, match="cannot see the local store folder"):
        engine._image(f"registry/p/q@{digest}", is_s3=False)
    assert engine._image(f"registry/p/q@{digest}", is_s3=True) == {
        "ref": f"registry/p/q@{digest}",
        "digest": digest,
        "repository": "registry/p/q",
    }
    assert engine._image(None, is_s3=False) is None


def _report(**changes: Any) -> dict[str, Any]:
    report = {
        "node_id": "f" * 56,
        "host": "node-1",
        "machine": "boot:x",
        "folders": [],
        "python": "3.11.7",
        "mlopsctl": "0.1.0",
        "libraries": {"xgboost": "2.1.0", "scikit-learn": "1.5.0"},
        "gcs_address": "10.0.0.1:6379",
    }
    report.update(changes)
    return report


def test_a_node_with_other_versions_is_refused_by_name() -> None:
    here = _report()
    engine._check_environment([_report(), _report()], here, "a:1")  # the same: fine
    other = _report(libraries={"xgboost": "3.0.0", "scikit-learn": "1.5.0"}, host="gpu-7")
    with pytest.raises(UsageError) as caught:
        engine._check_environment([_report(), other], here, "a:1")
    text = caught.value.one_line()
    assert "on gpu-7" in text and "xgboost 3.0.0 (here 2.1.0)" in text
    assert "--image REPO@sha256:DIGEST" in text
    with pytest.raises(UsageError, match=r"python 3\.12\.1 \(here 3\.11\.7\)"):
        engine._check_environment([_report(python="3.12.1")], here, "a:1")


def test_a_step_no_node_can_hold_is_refused() -> None:
    nodes = [
        {"Resources": {"CPU": 4.0, "memory": 8 * 2**30}},
        {"Resources": {"CPU": 2.0, "GPU": 1.0, "memory": 4 * 2**30}},
    ]
    engine._check_fits(_plan(_step(cpus=4, gpus=0), _step("b", gpus=1)), nodes, "a:1")
    with pytest.raises(UsageError, match=r"step 'big' needs 2 GPU.*at most 1"):
        engine._check_fits(_plan(_step("big", gpus=2)), nodes, "a:1")
    with pytest.raises(UsageError, match="step 'wide' needs 8 CPU"):
        engine._check_fits(_plan(_step("wide", cpus=8)), nodes, "a:1")
    with pytest.raises(UsageError, match=r"needs 16\.0 GiB memory"):
        engine._check_fits(_plan(_step("fat", memory="16g")), nodes, "a:1")


def test_without_ray_installed_the_backend_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MlopsError) as caught:
        engine.import_ray()
    assert caught.value.exit_code == 1
    assert "pip install 'mlopsctl[ray]'" in caught.value.one_line()


# -- the runner, with a stand-in for ray ------------------------------------------------------


class _FakeRay:
    """Just enough of ray for RayRunner.run: remote(fn).options(...).remote(...) gives a
    "generator" of refs (here the values themselves); get returns them."""

    def __init__(self, items: list[Any]) -> None:
        self.items = items
        self.options: dict[str, Any] = {}
        self.args: tuple[Any, ...] = ()
        self.cancelled: list[Any] = []

    def remote(self, function: Any) -> Any:
        fake = self

        class Handle:
            def options(self, **options: Any) -> Any:
                fake.options = options
                return self

            def remote(self, *args: Any) -> Any:
                fake.args = args
                return iter(fake.items)

        return Handle()

    def get(self, ref: Any) -> Any:
        return ref

    def cancel(self, handle: Any, force: bool = False) -> None:
        self.cancelled.append((handle, force))

    def is_initialized(self) -> bool:
        return False


def _runner(**overrides: Any) -> engine.RayRunner:
    settings: dict[str, Any] = {
        "project_dir": "/project",
        "store_task": {"url": "s3://b/p", "s3_options": {}},
        "env": {"PYTHONUNBUFFERED": "1"},
        "options": {"train": {"num_cpus": 2.0}},
        "engines": {},
    }
    settings.update(overrides)
    return engine.RayRunner(**settings)


NODE = {"node_id": "ab" * 28, "host": "node-2", "ip": "10.0.0.2"}


def test_the_runner_streams_the_log_and_records_the_node(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytest.importorskip("ray")
    result = {"outputs": {"model": {"digest": "sha256:1"}}, "metrics": {}, "info": {"rows": 3}}
    fake = _FakeRay([b"line 1\n", b"line 2\n", {"code": 0, "result": result, "node": NODE}])
    monkeypatch.setattr(engine, "import_ray", lambda: fake)
    log = io.BytesIO()
    step = _step()
    task = {"run_id": "r1", "step": "train", "store": {"url": "/somewhere"}}
    ended = _runner().run(step, task, tmp_path, LogSink(log, "train", echo=False))
    assert ended.code == 0
    assert log.getvalue() == b"line 1\nline 2\n"
    assert ended.result is not None
    assert ended.result["info"] == {"rows": 3, "ray": NODE}
    assert fake.options == {
        "num_cpus": 2.0,
        "num_returns": "streaming",
        "max_retries": 0,
        "name": "mlopsctl:r1:train",
    }
    sent_task, project_dir, env, stream = fake.args
    assert sent_task["store"] == {"url": "s3://b/p", "s3_options": {}}  # the runner's store
    assert project_dir == "/project" and stream is True and env["PYTHONUNBUFFERED"] == "1"


def test_a_failed_step_names_the_node(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    fake = _FakeRay([b"boom\n", {"code": 1, "result": None, "node": NODE}])
    monkeypatch.setattr(engine, "import_ray", lambda: fake)
    log = io.BytesIO()
    ended = _runner().run(
        _step(), {"run_id": "r1", "step": "train"}, tmp_path, LogSink(log, "t", False)
    )
    assert ended.code == 1
    assert (
        ended.detail == f"exited with status 1 on Ray node node-2 10.0.0.2 ({NODE['node_id'][:12]})"
    )
    assert log.getvalue() == b"boom\n"


def test_a_fan_out_step_gets_the_engine_block(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytest.importorskip("ray")
    result = {"outputs": {}, "metrics": {}, "info": {}}
    fake = _FakeRay([{"code": 0, "result": result, "node": NODE}])
    monkeypatch.setattr(engine, "import_ray", lambda: fake)
    block = {
        "ray": {"address": "10.0.0.1:6379", "namespace": "mlopsctl", "resources": {"num_cpus": 1.0}}
    }
    runner = _runner(options={"train": {"num_cpus": 0}}, engines={"train": block})
    runner.run(
        _step(), {"run_id": "r1", "step": "train"}, tmp_path, LogSink(io.BytesIO(), "t", False)
    )
    assert fake.args[0]["engine"] == block
    assert fake.options["num_cpus"] == 0


def test_stop_all_cancels_with_force_and_later_steps_do_not_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytest.importorskip("ray")
    fake = _FakeRay([])
    monkeypatch.setattr(engine, "import_ray", lambda: fake)
    runner = _runner()
    handle = object()
    runner._running["train"] = handle
    runner.stop_all()
    assert fake.cancelled == [(handle, True)]
    ended = runner.run(
        _step(), {"run_id": "r1", "step": "train"}, tmp_path, LogSink(io.BytesIO(), "t", False)
    )
    assert ended.code == 130 and "cancelled" in ended.detail


# -- the command line ------------------------------------------------------------------------

SPEC = """\
apiVersion: mlopsctl/v1
kind: Pipeline
name: p
steps:
  one: {run: "echo 1 > {outputs.out}", outputs: [out]}
"""


def _invoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> Any:
    from typer.testing import CliRunner

    from mlopsctl.cli.main import app

    (tmp_path / "mlops.yaml").write_text(
        "apiVersion: mlopsctl/v1\nkind: Project\nname: p\nstore: {url: .mlops}\n"
    )
    (tmp_path / "p.yaml").write_text(SPEC)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLOPSCTL_STORE", raising=False)
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_run_on_ray_without_ray_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    result = _invoke(tmp_path, monkeypatch, "run", "p.yaml", "--backend", "ray")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "mlopsctl: error: the Ray backend needs the ray package, which is not installed; "
        "pip install 'mlopsctl[ray]'"
    ]
    assert not (tmp_path / ".mlops" / "runs").exists()


def test_address_needs_the_ray_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = _invoke(tmp_path, monkeypatch, "run", "p.yaml", "--address", "10.0.0.1:6379")
    assert result.exit_code == 2
    assert "--address and --requirements need --backend ray" in result.stderr
    result = _invoke(tmp_path, monkeypatch, "run", "p.yaml", "--requirements")
    assert result.exit_code == 2
    assert "--address and --requirements need --backend ray" in result.stderr
    result = _invoke(tmp_path, monkeypatch, "run", "p.yaml", "--backend", "ray", "--host", "x")
    assert result.exit_code == 2
    assert "--host and --network need --backend docker" in result.stderr


# -- --requirements: the pipeline's requirements file as Ray's pip environment ---------------


def _requirements_project(tmp_path: Path, text: str | None, image: str = "") -> Any:
    from mlopsctl.config import load_project

    (tmp_path / "mlops.yaml").write_text(
        "apiVersion: mlopsctl/v1\nkind: Project\nname: p\nstore: {url: .mlops}\n"
    )
    (tmp_path / "p.yaml").write_text(SPEC + image)
    if text is not None:
        (tmp_path / "requirements.txt").write_text(text)
    return load_project(tmp_path, required=True)


def test_requirements_become_the_pip_environment_with_absolute_paths(tmp_path: Path) -> None:
    (tmp_path / "wheels").mkdir()
    text = (
        "# the steps' packages\n"
        "--no-index\n"
        "--find-links wheels\n"
        "-c constraints.txt\n"
        "--find-links=https://example.org/simple\n"
        "pandas>=2  # a comment\n"
        "scikit-learn \\\n"
        "  ==1.7.2\n"
        "\n"
        "-r /abs/other.txt\n"
    )
    project = _requirements_project(tmp_path, text)
    pip, record = engine.pip_environment(project, tmp_path / "p.yaml")
    root = tmp_path.resolve()
    assert pip == {
        "packages": [
            "--no-index",
            f"--find-links {root / 'wheels'}",
            f"-c {root / 'constraints.txt'}",
            "--find-links=https://example.org/simple",
            "pandas>=2",
            "scikit-learn   ==1.7.2",
            "-r /abs/other.txt",
        ],
        "pip_check": False,
    }
    assert record["file"] == "requirements.txt"
    assert record["digest"].startswith("sha256:") and len(record["digest"]) == 71


def test_requirements_follow_the_image_block(tmp_path: Path) -> None:
    (tmp_path / "env").mkdir()
    (tmp_path / "env" / "ray.txt").write_text("xgboost\n")
    image = "image: {requirements: env/ray.txt}\n"
    project = _requirements_project(tmp_path, "pandas\n", image=image)
    pip, record = engine.pip_environment(project, tmp_path / "p.yaml")
    assert pip["packages"] == ["xgboost"] and record["file"] == "env/ray.txt"


def test_requirements_refused_without_a_file_or_with_an_empty_one(tmp_path: Path) -> None:
    project = _requirements_project(tmp_path, None)
    with pytest.raises(UsageError, match="has no requirements file") as caught:
        engine.pip_environment(project, tmp_path / "p.yaml")
    assert "add requirements.txt" in str(caught.value.hint)
    project = _requirements_project(tmp_path, "# nothing yet\n\n")
    with pytest.raises(UsageError, match=r"requirements\.txt lists no requirement"):
        engine.pip_environment(project, tmp_path / "p.yaml")


def test_requirements_and_an_image_are_refused_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "requirements.txt").write_text("pandas\n")
    result = _invoke(
        tmp_path,
        monkeypatch,
        "run",
        "p.yaml",
        "--backend",
        "ray",
        "--requirements",
        "--image",
        "r@sha256:" + "0" * 64,
        "--address",
        "127.0.0.1:1",
    )
    assert result.exit_code == 2
    assert "--requirements and --image both say what the steps run in" in result.stderr


def test_the_requirements_file_is_checked_before_the_cluster_is_reached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Port 1 on loopback answers nothing: were the cluster tried first, this would exit 5.
    args = ("run", "p.yaml", "--backend", "ray", "--requirements", "--address", "127.0.0.1:1")
    result = _invoke(tmp_path, monkeypatch, *args)
    assert result.exit_code == 2
    assert "--requirements: the pipeline has no requirements file" in result.stderr
    assert not (tmp_path / ".mlops" / "runs").exists()


class _FailingInit:
    """ray.init as a ray:// driver sees it when the head's server for the driver dies while
    starting (the fault a real head cannot be made to produce on demand): the proxy answers
    with its traceback, which the client raises as ConnectionAbortedError."""

    SERVER_DIED = (
        "Initialization failure from server:\nTraceback (most recent call last):\n"
        '  File "proxier.py", line 772, in Datapath\n'
        "RuntimeError: Starting Ray client server failed. See "
        "ray_client_server_23000.err for detailed logs.\n"
    )

    def __init__(self, failures: list[Exception]) -> None:
        self.failures = failures
        self.calls = 0

    def is_initialized(self) -> bool:
        return False

    def init(self, **kwargs: Any) -> None:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)


def test_a_client_server_that_dies_starting_is_tried_again(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = _FailingInit([ConnectionAbortedError(_FailingInit.SERVER_DIED)] * 2)
    monkeypatch.setattr(engine, "import_ray", lambda: fake)
    monkeypatch.setattr(engine.time, "sleep", lambda seconds: None)
    assert engine.connect("ray://10.0.0.1:10001") is True
    assert fake.calls == 3
    assert capsys.readouterr().err.count("trying again") == 2


def test_a_client_server_that_keeps_dying_is_one_line_with_where_to_look(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = _FailingInit([ConnectionAbortedError(_FailingInit.SERVER_DIED)] * 5)
    monkeypatch.setattr(engine, "import_ray", lambda: fake)
    monkeypatch.setattr(engine.time, "sleep", lambda seconds: None)
    with pytest.raises(EngineUnreachable) as caught:
        engine.connect("ray://10.0.0.1:10001")
    assert fake.calls == engine.CLIENT_START_ATTEMPTS
    text = str(caught.value)
    assert "\n" not in text
    assert "Traceback" not in text
    assert "Starting Ray client server failed" in text
    assert "ray_client_server" in (caught.value.hint or "")


def test_other_join_failures_are_not_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    # A GCS address (not ray://) and a refusal that a new try cannot change: one call each.
    for address, failure in [
        ("10.0.0.1:6379", ConnectionError("Could not find any running Ray instance")),
        ("ray://10.0.0.1:10001", ConnectionError("ray client connection timeout")),
        ("10.0.0.1:6379", ConnectionAbortedError(_FailingInit.SERVER_DIED)),
    ]:
        fake = _FailingInit([failure])
        monkeypatch.setattr(engine, "import_ray", lambda fake=fake: fake)
        with pytest.raises(EngineUnreachable, match="cannot join the Ray cluster"):
            engine.connect(address)
        assert fake.calls == 1, address
