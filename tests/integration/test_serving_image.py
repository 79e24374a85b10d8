"""Serving images and `mlopsctl deploy` on the real test bed (dockerd, the registry on
127.0.0.1:5000, mlopsctl-base:deps as the build base): the quickstart model trained twice,
`build --serving` with its provenance labels and size, an unchanged build skipped; `deploy`
answers /v2/health/ready and predicts exactly what the local model predicts; deploying the next
version replaces the old container only once the new one answers; a deploy whose container never
gets ready exits 4, is removed, and leaves the old one serving.

Image builds are slow on two cores, so the project, its two versions and their images are made
once per module and the tests run in order."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlopsctl.testing.engines import SecondEngine
from tests.conftest import S3TestServer
from tests.integration.conftest import remove_images, write_project
from tests.integration.test_containers_build import mlopsctl

pytestmark = pytest.mark.docker

SPEC = "pipelines/quickstart.yaml"
MODEL = "breast-cancer"
# The goal is to be far below MLflow's ~3 GB serving images.
SIZE_LIMIT = 600_000_000
# The deployed server writes its prediction log every 60 s by default: every second here.
FAST_LOGS = ("--env", "MLOPSCTL_LOG_INTERVAL=1")


def _containers(label: str, *, all_states: bool = True) -> list[dict[str, Any]]:
    from mlopsctl.testing.engines import default_client

    client = default_client()
    try:
        return client.containers(all=all_states, filters={"label": label})
    finally:
        client.close()


def _remove_containers(label: str) -> None:
    from mlopsctl.testing.engines import default_client

    client = default_client()
    try:
        for container in client.containers(all=True, filters={"label": label}):
            client.remove_container(container["Id"], force=True)
    finally:
        client.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("0.0.0.0", 0))
        return int(probe.getsockname()[1])


def _get(url: str, timeout: float = 5) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _invoke(url: str, columns: list[str], row: list[float], output: str = "") -> Any:
    body = json.dumps({"dataframe_split": {"columns": columns, "data": [row]}}).encode()
    query = f"?output={output}" if output else ""
    request = urllib.request.Request(
        f"{url}/invocations{query}", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["predictions"]


def _train(root: Path, trees: int) -> dict[str, Any]:
    proc, _ = mlopsctl(root, "run", SPEC, "-p", f"model.n_estimators={trees}", "--json")
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout)["registered"])


@pytest.fixture(scope="module")
def project(docker_bed: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A project whose store holds versions 1 (20 trees) and 2 (21 trees) of the model."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    root = write_project(tmp_path_factory.mktemp("serving") / name, name)
    assert _train(root, 20)["version"] == 1
    assert _train(root, 21)["version"] == 2
    yield root
    _remove_containers(f"io.mlopsctl.project={name}")
    remove_images(name)


def _version(root: Path, version: int) -> dict[str, Any]:
    path = root / ".mlops" / "models" / MODEL / "versions" / f"{version}.json"
    return dict(json.loads(path.read_text()))


def test_build_serving_labels_provenance_and_is_small(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    proc, took = mlopsctl(project, "build", "--serving", f"{MODEL}:1", "--json", timeout=600)
    assert proc.returncode == 0, proc.stderr
    built = json.loads(proc.stdout)
    assert built["built"]
    assert built["image"] == f"127.0.0.1:5000/{project.name}/serving-{MODEL}"
    assert built["tags"] == [built["content_tag"], "1"]
    record = _version(project, 1)
    labels = built["labels"]
    assert labels["dev.mlopsctl.model.name"] == MODEL
    assert labels["dev.mlopsctl.model.version"] == "1"
    assert labels["dev.mlopsctl.model.digest"] == record["artifact"]["digest"]
    assert labels["dev.mlopsctl.model.run"] == record["run"]["id"]
    assert labels["dev.mlopsctl.model.git-commit"] == record["git"]["commit"]
    assert labels["dev.mlopsctl.model.pipeline"] == "quickstart"
    assert labels["org.opencontainers.image.base.name"] == "scratch"
    with capsys.disabled():
        print(
            f"\nserving image {built['ref']}: {built['size'] / 1e6:.0f} MB "
            f"({built['size']} bytes; MLflow's are ~3 GB), built in {took:.0f} s"
        )
    assert 0 < built["size"] < SIZE_LIMIT

    # Unchanged: nothing built; the plain output is the reference, the size on stderr.
    proc, _ = mlopsctl(project, "build", "--serving", f"{MODEL}:1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == built["ref"]
    assert "unchanged" in proc.stderr
    assert f"({built['size']} bytes)" in proc.stderr


def test_deploy_serves_then_replaces_only_after_the_new_one_is_ready(project: Path) -> None:
    from mlopsctl.models.artifact import load_model_dir
    from mlopsctl.registry import download
    from mlopsctl.store import open_store

    port = _free_port()
    deployment = f"{project.name}-web"
    args = ("deploy", "--port", str(port), "--name", deployment, "--json", "-q", *FAST_LOGS)
    proc, _ = mlopsctl(project, *args[:1], f"{MODEL}:1", *args[1:], timeout=600)
    assert proc.returncode == 0, proc.stderr
    first = json.loads(proc.stdout)
    assert first["url"] == f"http://127.0.0.1:{port}"
    assert first["replaced"] == []
    assert first["image_size"] > 0
    assert _get(first["url"] + "/v2/health/ready") == 200

    # One prediction, compared with the very same version loaded here.
    store = open_store(".mlops", base_dir=project)
    _, folder = download(store, f"{MODEL}:1", project / "v1")
    model = load_model_dir(folder)
    columns = [f["name"] for f in model.meta["features"]]
    profiles = model.meta["profile"]["features"]
    row = [float(profiles[name]["mean"]) for name in columns]  # a realistic row
    import pandas as pd

    frame = pd.DataFrame([row], columns=columns)
    assert _invoke(first["url"], columns, row) == model.predict(frame).tolist()
    served = _invoke(first["url"], columns, row, output="proba")
    expected = model.predict_proba(frame).tolist()
    assert len(served) == 1
    assert served[0] == pytest.approx(expected[0], rel=1e-12, abs=0)
    # The container logs predictions to the project's store (bind-mounted local folder).
    logs = project / ".mlops" / "logs" / "predictions" / MODEL
    deadline = time.monotonic() + 30
    while not list(logs.rglob("*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert list(logs.rglob("*.parquet")), "no prediction log reached the store"

    # Version 2 replaces it on the same port. The URL is polled meanwhile, each poll a new
    # connection (retried once, as any client would a reset): it must answer throughout, first
    # with version 1, and only with version 2 once deploy returns.
    seen: list[tuple[float, str]] = []
    stop = threading.Event()

    def served_version() -> str:
        url = f"{first['url']}/v2/models/{MODEL}"
        for attempt in range(2):
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    return str(json.loads(response.read())["parameters"]["served_version"])
            except (urllib.error.URLError, OSError):
                if attempt:
                    return "error"
        return "error"

    def poll() -> None:
        deadline = time.monotonic() + 600
        while not stop.is_set() and time.monotonic() < deadline:
            seen.append((time.monotonic(), served_version()))
            time.sleep(0.05)

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    try:
        proc, _ = mlopsctl(project, *args[:1], f"{MODEL}:2", *args[1:], timeout=600)
        returned = time.monotonic()
        time.sleep(1.0)
    finally:
        stop.set()
        watcher.join(timeout=10)
    assert proc.returncode == 0, proc.stderr
    second = json.loads(proc.stdout)
    assert second["url"] == first["url"]
    assert [r["container"] for r in second["replaced"]] == [first["container"]]
    assert second["replaced"][0]["version"] == "1"
    versions = [v for _, v in seen]
    assert "error" not in versions, f"the URL stopped answering during the handover: {versions}"
    assert versions[0] == "1"
    after = [v for t, v in seen if t > returned]
    assert after and set(after) == {"2"}, after
    running = _containers(f"dev.mlopsctl.deployment={deployment}")
    assert [c["Id"][:12] for c in running] == [second["container"]]
    assert running[0]["Labels"]["dev.mlopsctl.model.version"] == "2"

    # The audit log has both deployments.
    proc, _ = mlopsctl(project, "audit", "--json")
    assert proc.returncode == 0, proc.stderr
    deployed = [e for e in json.loads(proc.stdout) if e.get("type") == "deployment"]
    assert [e["version"] for e in deployed] == [1, 2]
    assert deployed[1]["replaced"] == [first["container"]]


def test_a_deploy_that_never_gets_ready_leaves_the_old_one_serving(project: Path) -> None:
    deployment = f"{project.name}-web"
    before = _containers(f"dev.mlopsctl.deployment={deployment}", all_states=False)
    assert len(before) == 1, "runs after the deploy test, which leaves version 2 serving"
    port = int(before[0]["Labels"]["dev.mlopsctl.deployment.port"])
    # The server cannot even import: the container exits at once.
    proc, _ = mlopsctl(
        project,
        "deploy",
        f"{MODEL}:1",
        "--port",
        str(port),
        "--name",
        deployment,
        "--env",
        "PYTHONPATH=/nowhere",
        "--ready-timeout",
        "30",
        "-q",
        timeout=600,
    )
    assert proc.returncode == 4, proc.stderr
    assert "never got ready" in proc.stderr
    assert "No module named" in proc.stderr  # the container's last log lines
    after = _containers(f"dev.mlopsctl.deployment={deployment}")
    assert [c["Id"] for c in after] == [before[0]["Id"]]
    assert _get(f"http://127.0.0.1:{port}/v2/health/ready") == 200


def test_deploy_to_a_remote_host_pushes_then_pulls_the_image(
    project: Path, second_engine: SecondEngine
) -> None:
    """A docker.hosts engine is not this machine's: the image goes through the registry (pushed
    and recorded here, pulled there), and the server is reached at the engine's address."""
    import docker

    config = project / "mlops.yaml"
    config.write_text(
        config.read_text() + f"docker:\n  hosts:\n    far: {{url: '{second_engine.tcp_url}'}}\n"
    )
    port = _free_port()
    deployment = f"{project.name}-far"
    proc, _ = mlopsctl(
        project,
        "deploy",
        f"{MODEL}:2",
        "--host",
        "far",
        "--port",
        str(port),
        "--name",
        deployment,
        "--json",
        "-q",
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["host"] == "far"
    assert result["url"] == f"http://127.0.0.1:{port}"
    assert _get(result["url"] + "/v2/health/ready") == 200
    tag = result["image"].rsplit(":", 1)[1]
    record = project / ".mlops" / "images" / project.name / f"serving-{MODEL}" / f"{tag}.json"
    assert json.loads(record.read_text())["digest"].startswith("sha256:")
    assert not _containers(f"dev.mlopsctl.deployment={deployment}")  # none on the local engine
    far = docker.APIClient(base_url=second_engine.socket_url, version="auto", timeout=30)
    try:
        running = far.containers(filters={"label": f"dev.mlopsctl.deployment={deployment}"})
        assert [c["Id"][:12] for c in running] == [result["container"]]
        far.remove_container(running[0]["Id"], force=True)
    finally:
        far.close()


def test_a_deployed_server_logs_predictions_to_an_s3_store(
    tmp_path: Path, docker_bed: str, s3_env: S3TestServer, s3_url: str, make_s3_store: Any
) -> None:
    """An s3:// store reaches the container by URL, endpoint and the caller's AWS_* variables
    (never baked into the image): its prediction logs land in the bucket."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    store = f"{{url: '{s3_url}', s3: {{endpoint_url: '{s3_env.endpoint}'}}}}"
    root = write_project(tmp_path / name, name, store=store)
    try:
        assert _train(root, 20)["version"] == 1
        proc, _ = mlopsctl(
            root, "deploy", f"{MODEL}:1", "--port", str(_free_port()), "--json", "-q", *FAST_LOGS
        )
        assert proc.returncode == 0, proc.stderr
        result = json.loads(proc.stdout)
        s3 = make_s3_store(s3_url)
        record = json.loads(s3.get(f"models/{MODEL}/versions/1.json"))
        columns = [f["name"] for f in record["signature"]["features"]]
        assert _invoke(result["url"], columns, [1.0] * len(columns)) in ([0], [1])
        prefix = f"logs/predictions/{MODEL}/"
        deadline = time.monotonic() + 30
        while not list(s3.list(prefix)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert list(s3.list(prefix)), "no prediction log reached the S3 store"
        image = _inspect_image(result["image_id"])
        assert not [e for e in image["Config"].get("Env") or [] if e.startswith("AWS_")]
    finally:
        _remove_containers(f"io.mlopsctl.project={name}")
        remove_images(name)


def _inspect_image(ref: str) -> dict[str, Any]:
    from mlopsctl.testing.engines import default_client

    client = default_client()
    try:
        return dict(client.inspect_image(ref))
    finally:
        client.close()
