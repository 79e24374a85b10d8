"""`mlopsctl run --backend ray` on a real two-node Ray cluster started by Ray's own `ray start`
(a head and a separate worker node, in a network namespace of their own: see ray_cluster.py),
with the driver run inside that namespace. The quickstart computes exactly what a local run
computes (same output digests, same cache keys); independent steps land on both nodes; tune's
trials are Ray tasks of their own; a failing step fails the run with its log tail; SIGINT or
SIGTERM to the driver cancels the running task and leaves nothing running; a local store that
a node cannot see is refused before anything runs; an S3 store (SeaweedFS, inside the
namespace) works end to end; `--requirements` installs the project's requirements file on every
node (Ray's pip environment, from a wheel folder of the test's: no index is reached).

Needs root (the namespace); skips otherwise, and fails instead under MLOPSCTL_REQUIRE_RAY=1."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import git
from tests.integration.ray_cluster import (
    REQUIRE_ENV,
    ClusterUnavailable,
    RayCluster,
    problem,
    start_cluster,
)

pytestmark = [pytest.mark.ray, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "specs" / "examples" / "quickstart.yaml"
FAST = ("-p", "model.n_estimators=20")
RUN_TIMEOUT_S = 280

SPREAD = """\
apiVersion: mlopsctl/v1
kind: Pipeline
name: spread
steps:
  left:  {run: "sleep 2; echo left > {outputs.out}", outputs: [out], resources: {cpus: 1}}
  right: {run: "sleep 2; echo right > {outputs.out}", outputs: [out], resources: {cpus: 1}}
"""
FAIL = """\
apiVersion: mlopsctl/v1
kind: Pipeline
name: fail
steps:
  bad: {run: "echo preparing; echo the-cause-of-failure >&2; exit 3", outputs: [out]}
"""
SLOW = """\
apiVersion: mlopsctl/v1
kind: Pipeline
name: slow
steps:
  slow: {run: "echo started; sleep 300 # MARKER", outputs: [out]}
"""
TUNE = """\
apiVersion: mlopsctl/v1
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
      estimator: {class: sklearn.linear_model.LogisticRegression, max_iter: 200}
      search: grid
      space: {C: [0.01, 0.1, 1.0, 10.0]}
      metric: roc_auc
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    trouble = problem()
    if trouble:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"Ray cluster tests cannot run: {trouble} ({REQUIRE_ENV}=1)", pytrace=False)
        pytest.skip(f"Ray cluster tests need: {trouble}")
    try:
        started = start_cluster(tmp_path_factory.mktemp("ray"))
    except ClusterUnavailable as exc:
        pytest.fail(f"the Ray test cluster did not start: {exc}", pytrace=False)
    try:
        yield started
    finally:
        started.stop()


def _project(root: Path, store: str = "{url: .mlops}") -> Path:
    (root / "pipelines").mkdir(parents=True)
    (root / "mlops.yaml").write_text(
        f"apiVersion: mlopsctl/v1\nkind: Project\nname: {root.name}\nstore: {store}\n"
    )
    shutil.copy(QUICKSTART, root / "pipelines" / "quickstart.yaml")
    for name, text in (("spread", SPREAD), ("fail", FAIL), ("slow", SLOW), ("tune", TUNE)):
        (root / "pipelines" / f"{name}.yaml").write_text(text)
    (root / ".gitignore").write_text(".mlops/\n")
    git(root, "init", "-q", check=True)
    git(root, "add", "-A", check=True)
    git(root, "commit", "-qm", "project", check=True)
    return root


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return _project(tmp_path / f"p-{uuid.uuid4().hex[:8]}")


def _mlopsctl_argv(cluster: RayCluster, *args: str) -> list[str]:
    return cluster.command(sys.executable, "-m", "mlopsctl", *args)


def mlopsctl(
    cluster: RayCluster, cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """mlopsctl inside the cluster's network namespace."""
    return subprocess.run(
        _mlopsctl_argv(cluster, *args),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        env=cluster.env(**(env or {})),
        check=False,
    )


def on_ray(cluster: RayCluster, *args: str) -> list[str]:
    return [*args, "--backend", "ray", "--address", cluster.address]


def _outputs(record: dict) -> dict[str, dict[str, str]]:
    return {
        name: {out: ref["digest"] for out, ref in (step.get("outputs") or {}).items()}
        for name, step in record["steps"].items()
    }


def _processes_with(marker: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmdline and "pytest" not in cmdline:
            found.append(f"{entry.name}: {cmdline.strip()}")
    return found


def _free_cpus(cluster: RayCluster) -> tuple[float, float]:
    script = (
        "import json, ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR', "
        "log_to_driver=False); print(json.dumps([ray.available_resources().get('CPU', 0), "
        "ray.cluster_resources().get('CPU', 0)]))"
    )
    proc = subprocess.run(
        cluster.command(sys.executable, "-c", script, cluster.address),
        capture_output=True,
        text=True,
        timeout=60,
        env=cluster.env(),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    free, total = json.loads(proc.stdout.strip().splitlines()[-1])
    return float(free), float(total)


def test_quickstart_on_ray_matches_the_local_run(cluster: RayCluster, project: Path) -> None:
    proc = mlopsctl(
        cluster, project, *on_ray(cluster, "run", "pipelines/quickstart.yaml"), *FAST, "--json"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    on_cluster = json.loads(proc.stdout)
    assert on_cluster["status"] == "succeeded"
    assert all(s["status"] == "executed" for s in on_cluster["steps"].values())
    for step in on_cluster["steps"].values():
        node = step["info"]["ray"]
        assert node["ip"] == cluster.ip and len(node["node_id"]) >= 32
    assert on_cluster["registered"]["new"]

    # The same steps as local processes, every one run again: byte for byte the same outputs,
    # and the same cache keys (the nodes run this machine's Python and libraries).
    proc = mlopsctl(
        cluster, project, "run", "pipelines/quickstart.yaml", *FAST, "--no-cache", "--json"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    local = json.loads(proc.stdout)
    assert all(s["status"] == "executed" for s in local["steps"].values())
    assert _outputs(local) == _outputs(on_cluster)
    for name, step in local["steps"].items():
        assert step["cache_key"] == on_cluster["steps"][name]["cache_key"]

    # Again on Ray: nothing changed, every step from the shared cache.
    proc = mlopsctl(
        cluster, project, *on_ray(cluster, "run", "pipelines/quickstart.yaml"), *FAST, "--json"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = json.loads(proc.stdout)["steps"]
    assert {n: s["status"] for n, s in again.items()} == dict.fromkeys(again, "cached"), {
        n: (s["status"], s["cache_key"] == local["steps"][n]["cache_key"]) for n, s in again.items()
    }


def test_independent_steps_land_on_both_nodes(cluster: RayCluster, project: Path) -> None:
    # Each step asks for one CPU and each node has one: run side by side, they must be on
    # different nodes.
    proc = mlopsctl(cluster, project, *on_ray(cluster, "run", "pipelines/spread.yaml"), "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads(proc.stdout)
    nodes = {name: step["info"]["ray"]["node_id"] for name, step in record["steps"].items()}
    assert len(set(nodes.values())) == 2, nodes


def test_a_ray_client_address_runs_the_pipeline(cluster: RayCluster, project: Path) -> None:
    """--address ray://HOST:PORT: the driver joins through Ray Client instead of as a node
    (its steps' output is not streamed back, and the run is the same)."""
    proc = mlopsctl(
        cluster,
        project,
        *("run", "pipelines/spread.yaml", "--backend", "ray"),
        *("--address", cluster.client_address, "--json"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + cluster.log_tail()
    record = json.loads(proc.stdout)
    assert record["status"] == "succeeded"
    assert {s["status"] for s in record["steps"].values()} == {"executed"}
    assert {s["info"]["ray"]["ip"] for s in record["steps"].values()} == {cluster.ip}
    local = mlopsctl(cluster, project, "run", "pipelines/spread.yaml", "--no-cache", "--json")
    assert local.returncode == 0, local.stderr[-3000:]
    assert _outputs(json.loads(local.stdout)) == _outputs(record)


def test_tune_trials_are_ray_tasks(cluster: RayCluster, project: Path) -> None:
    proc = mlopsctl(
        cluster, project, "-v", *on_ray(cluster, "run", "pipelines/tune.yaml"), "--json"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    on_cluster = json.loads(proc.stdout)
    assert "[tune] ray: 4 tasks ran on" in proc.stderr, proc.stderr[-3000:]
    proc = mlopsctl(cluster, project, "run", "pipelines/tune.yaml", "--no-cache", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    local = json.loads(proc.stdout)
    # The same trials, scored the same, the same model (best.json names the trial by run id).
    scores = [
        [t["metrics"] for t in record["steps"]["tune"]["info"]["trials"]]
        for record in (on_cluster, local)
    ]
    assert scores[0] == scores[1]
    model = [r["steps"]["tune"]["outputs"]["model"]["digest"] for r in (on_cluster, local)]
    assert model[0] == model[1]


def test_a_failing_step_fails_the_run_with_its_log_tail(cluster: RayCluster, project: Path) -> None:
    proc = mlopsctl(cluster, project, *on_ray(cluster, "run", "pipelines/fail.yaml"))
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "step 'bad' failed" in proc.stderr
    assert "the-cause-of-failure" in proc.stderr
    assert "exited with status 1 on Ray node" in proc.stderr
    runs = list((project / ".mlops" / "runs").glob("*.json"))
    record = json.loads(runs[0].read_text())
    assert record["status"] == "failed"
    assert "the-cause-of-failure" in record["steps"]["bad"]["error"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_to_the_driver_cancels_the_task(
    cluster: RayCluster, project: Path, signum: int
) -> None:
    marker = f"mlopsctl-ray-cancel-{uuid.uuid4().hex[:10]}"
    spec = project / "pipelines" / "slow.yaml"
    spec.write_text(spec.read_text().replace("MARKER", marker))
    log = project / "driver.log"
    with log.open("wb") as stderr:
        driver = subprocess.Popen(
            _mlopsctl_argv(cluster, "-v", *on_ray(cluster, "run", "pipelines/slow.yaml")),
            cwd=project,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=cluster.env(),
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while b"[slow] started" not in log.read_bytes():
            assert driver.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        assert _processes_with(marker), "the step is not running"
        driver.send_signal(signum)
        code = driver.wait(timeout=60)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert code == 128 + signum, log.read_text()[-3000:]
    assert "recorded as interrupted" in log.read_text()

    # Nothing of the step is left, and the cluster has every CPU free again.
    deadline = time.monotonic() + 20
    while _processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _processes_with(marker) == []
    deadline = time.monotonic() + 30
    while True:
        free, total = _free_cpus(cluster)
        if free == total or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert (free, total) == (2.0, 2.0)
    record = json.loads(next((project / ".mlops" / "runs").glob("*.json")).read_text())
    assert record["status"] == "interrupted"
    assert record["steps"]["slow"]["status"] == "interrupted"


def test_a_local_store_a_node_cannot_see_is_refused(cluster: RayCluster, tmp_path: Path) -> None:
    # The worker node has a mount namespace of its own, in which `hidden` is an empty tmpfs:
    # for it, a store in there is another folder, as on another machine.
    store = cluster.hidden / f"store-{uuid.uuid4().hex[:8]}"
    project = _project(tmp_path / "refused", store=f"{{url: '{store}'}}")
    proc = mlopsctl(cluster, project, *on_ray(cluster, "run", "pipelines/quickstart.yaml"))
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert f"the local store folder {store} is not visible from every node" in proc.stderr
    assert "use an S3 store" in proc.stderr
    assert not (store / "runs").exists()  # refused before anything ran


def test_an_s3_store_on_ray(cluster: RayCluster, tmp_path: Path) -> None:
    helper, s3 = cluster.start_seaweed(tmp_path / "seaweed")
    try:
        store = (
            f"{{url: 's3://{s3['bucket']}/ray', s3: {{endpoint_url: '{s3['endpoint']}', "
            f"region: {s3['region']}}}}}"
        )
        project = _project(tmp_path / "s3", store=store)
        env = {"AWS_ACCESS_KEY_ID": s3["access_key"], "AWS_SECRET_ACCESS_KEY": s3["secret_key"]}
        args = on_ray(cluster, "run", "pipelines/quickstart.yaml")
        proc = mlopsctl(cluster, project, *args, *FAST, "--json", env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        on_cluster = json.loads(proc.stdout)
        assert on_cluster["store"].startswith("s3://")
        assert all(s["status"] == "executed" for s in on_cluster["steps"].values())
        # The outputs are in the bucket, and a local run reads them from the shared cache.
        proc = mlopsctl(
            cluster, project, "run", "pipelines/quickstart.yaml", *FAST, "--json", env=env
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        local = json.loads(proc.stdout)
        assert all(s["status"] == "cached" for s in local["steps"].values())
        assert _outputs(local) == _outputs(on_cluster)
    finally:
        assert helper.stdin is not None
        helper.stdin.close()
        try:
            helper.wait(timeout=30)
        except subprocess.TimeoutExpired:
            helper.kill()


# -- --requirements: the project's requirements file installed on the nodes ------------------

PROBE_PACKAGE = "mlx_ray_probe"
REQUIRING = """\
apiVersion: mlopsctl/v1
kind: Pipeline
name: requiring
steps:
  left:  {python: "probe:version", outputs: [out], resources: {cpus: 1}}
  right: {python: "probe:version", outputs: [out], resources: {cpus: 1}, with: {side: right}}
"""
PROBE_STEP = f"""\
import {PROBE_PACKAGE}


def version(ctx):
    ctx.outputs["out"].write_text({PROBE_PACKAGE}.VERSION)
"""


def _wheel(folder: Path, version: str) -> None:
    """A pure-Python wheel of a package that is installed nowhere, written by hand."""
    import base64
    import zipfile

    dist = f"{PROBE_PACKAGE}-{version}"
    files = {
        f"{PROBE_PACKAGE}/__init__.py": f"VERSION = {version!r}\n",
        f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {PROBE_PACKAGE}\n"
        f"Version: {version}\n",
        f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\n"
        "Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    with zipfile.ZipFile(folder / f"{dist}-py3-none-any.whl", "w") as wheel:
        for name, text in files.items():
            wheel.writestr(name, text)
            digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest())
            record.append(f"{name},sha256={digest.rstrip(b'=').decode()},{len(text)}")
        wheel.writestr(
            f"{dist}.dist-info/RECORD", "\n".join([*record, f"{dist}.dist-info/RECORD,,"])
        )


def test_requirements_are_installed_on_every_node(cluster: RayCluster, project: Path) -> None:
    (project / "wheels").mkdir()
    _wheel(project / "wheels", "1.2")
    (project / "probe.py").write_text(PROBE_STEP)
    (project / "pipelines" / "requiring.yaml").write_text(REQUIRING)
    # Paths relative to the file; --no-index: nothing but the wheel folder is looked at.
    (project / "requirements.txt").write_text(
        f"--no-index\n--find-links wheels\n{PROBE_PACKAGE}==1.2  # the steps import it\n"
    )
    git(project, "add", "-A", check=True)
    git(project, "commit", "-qm", "requiring", check=True)
    args = on_ray(cluster, "run", "pipelines/requiring.yaml")

    # The nodes' own environment lacks the package: the step fails, naming it.
    proc = mlopsctl(cluster, project, *args)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert f"No module named '{PROBE_PACKAGE}'" in proc.stderr

    proc = mlopsctl(cluster, project, *args, "--requirements", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads(proc.stdout)
    nodes = set()
    for name in ("left", "right"):
        step = record["steps"][name]
        assert step["status"] == "executed"
        ray_info = step["info"]["ray"]
        nodes.add(ray_info["node_id"])
        assert ray_info["requirements"]["file"] == "requirements.txt"
        assert ray_info["requirements"]["digest"].startswith("sha256:")
    assert len(nodes) == 2  # installed on both nodes, not only the head
    # Both wrote the installed package's version.
    expected = "sha256:" + hashlib.sha256(b"1.2").hexdigest()
    assert {out["out"] for out in _outputs(record).values()} == {expected}

    # A requirement no index has: refused before any step runs, with pip's reason.
    (project / "requirements.txt").write_text(
        f"--no-index\n--find-links wheels\n{PROBE_PACKAGE}==9.9\n"
    )
    runs_before = sorted((project / ".mlops" / "runs").glob("*.json"))
    proc = mlopsctl(cluster, project, *args, "--requirements")
    assert proc.returncode == 1, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert "the requirements could not be installed on the Ray cluster" in lines[-1]
    assert f"{PROBE_PACKAGE}==9.9" in lines[-1]
    assert sorted((project / ".mlops" / "runs").glob("*.json")) == runs_before
