"""Run pipeline steps on a Ray cluster: `mlopsctl run SPEC --backend ray [--address A]`.

Each step is a Ray task that asks for the resources its spec declares (`cpus` -> num_cpus,
default 1; `gpus` -> num_gpus; `memory` -> memory) and runs, in a subprocess on whichever node
Ray picks, the same entry point as a local run: `python -m mlopsctl.exec TASK.json`. So a step
on Ray computes exactly what it computes locally, and its outputs have the same digests.

- The task travels as the Ray task's argument and the result comes back as its last value;
  the step's output streams back as it is written (a streaming generator task), into the
  step's log (and to stderr with a `[step]` prefix under -v). A step that fails leaves its
  log tail in the run record, with the node it ran on.
- The store must be reachable from every node. Before the first step, a probe task runs on
  every live node (pinned there, no CPU asked) and reports the machine's boot id and the
  identity (device, inode) of the local store folder and of the project folder as that node
  sees them. A local store is allowed only when every node is this machine (same boot id)
  and sees the very same folder; anything else (another machine, a container with another
  view of the file system) needs an S3 store, and the run is refused before it starts. This
  is conservative: nodes that join later (an autoscaler) are not probed, so such a cluster
  should use S3.
- The project's files: a node that sees the project folder runs the step there; otherwise
  the project is uploaded as the tasks' runtime environment working_dir (Ray's own packaging,
  which honours .gitignore; the store folder, .git and virtualenvs are left out).
- The environment: the cache key holds this machine's Python and library versions (as for
  a local run), so the probe compares them with each node's and refuses a cluster that
  differs, naming the node and the library; `--image REPO@sha256:DIGEST` runs every step in
  that image instead (Ray's `image_uri` runtime environment, which needs podman on the nodes),
  and then the image digest is in the key, as with the Docker backend. `--requirements`
  installs the project's requirements file (the one `mlopsctl build` puts in the image) on
  every node instead, in Ray's pip runtime environment (a virtualenv per node cloned from the
  node's own, made once per requirements file and kept by Ray); the probe then runs inside it,
  so the versions it compares are the installed ones, and each step's record names the file
  and its digest. Option lines of the file (`--index-url`, `--find-links`, `--no-index`) apply
  on the nodes; relative paths in it are made absolute, which serves nodes on this machine or
  on a shared file system.
- `tune` spreads its trials over the cluster: its step's own task asks for no CPU, and the
  step's process, on seeing the `engine` block in its task, submits each trial as a Ray task
  with the step's resources (mlopsctl.engines.ray.parallel_map, used through
  StepContext.parallel).
- Ctrl-C / SIGTERM: the executor stops the runner, which cancels every running task with
  `ray.cancel(force=True)`; the step's process watches a pipe from the Ray worker
  (MLOPSCTL_PARENT_FD) and stops its whole process group when that worker is gone. A driver
  killed outright ends its Ray job, and Ray kills the job's tasks.

`ray` is imported only inside the functions that need it; without it, the backend says
`pip install 'mlopsctl[ray]'`."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlopsctl import __version__
from mlopsctl.containers import IMAGE_PROJECT_DIR
from mlopsctl.containers.build import requirements_path
from mlopsctl.digest import sha256_bytes
from mlopsctl.errors import EngineUnreachable, MlopsError, UsageError
from mlopsctl.pipeline.executor import remove_stale_workdirs
from mlopsctl.pipeline.runners import PARENT_FD_ENV, STOP_GRACE_S, LogSink, StepExit, StepRunner
from mlopsctl.provenance import library_versions, python_version
from mlopsctl.store import local_root
from mlopsctl.store.credentials import caller_aws_environment

if TYPE_CHECKING:
    from mlopsctl.config import Project
    from mlopsctl.pipeline.executor import RunOptions
    from mlopsctl.pipeline.plan import PipelinePlan, StepPlan

NAMESPACE = "mlopsctl"
INSTALL_HINT = "pip install 'mlopsctl[ray]'"
FAN_OUT_COMPONENTS = frozenset({"tune"})  # components that submit Ray tasks of their own
PROBE_TIMEOUT_S = 180.0
PIP_PROBE_TIMEOUT_S = 1800.0  # the first probe in a pip environment waits for its install
# A requirements file's option whose value is a path (made absolute: pip runs elsewhere).
_PATH_OPTION = re.compile(r"(-r|--requirement|-c|--constraint|-f|--find-links)(?:=|\s+)(\S.*)")
CONNECT_TIMEOUT_S = 5.0
# A ray:// driver gets a server process of its own on the head; when that process dies while
# starting (the head busy, a port taken meanwhile), a fresh connection gets a fresh one.
CLIENT_START_ATTEMPTS = 3
_CLIENT_START_FAILURES = ("Starting Ray client server failed", "Proxy failed to Connect")
_CHUNK = 1 << 16
_CURRENT_CLUSTER = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
_UPLOAD_EXCLUDES = [".git", ".venv", "venv", "__pycache__", ".mypy_cache", ".ruff_cache"]
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def import_ray() -> Any:
    """The ray module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise MlopsError(
            "the Ray backend needs the ray package, which is not installed", INSTALL_HINT
        ) from None
    return ray


def memory_bytes(text: str) -> int:
    """'512m', '4g', '2Gi', '1.5GB' -> bytes (binary units, as the spec schema reads them)."""
    value = text.strip().lower().rstrip("b").rstrip("i")
    unit = value[-1] if value and value[-1] in _UNITS else ""
    number = value[: -len(unit)] if unit else value
    return int(float(number) * _UNITS[unit])


def task_options(resources: dict[str, Any] | None) -> dict[str, Any]:
    """A step's `resources:` as Ray task options: num_cpus (1 when not declared, Ray's own
    default), num_gpus, memory in bytes."""
    resources = resources or {}
    options: dict[str, Any] = {"num_cpus": float(resources.get("cpus") or 1)}
    gpus = int(resources.get("gpus") or 0)
    if gpus:
        options["num_gpus"] = gpus
    if resources.get("memory"):
        options["memory"] = memory_bytes(str(resources["memory"]))
    return options


def fans_out(step: StepPlan) -> bool:
    return step.kind == "component" and step.target in FAN_OUT_COMPONENTS


# -- where the cluster is -------------------------------------------------------------------


def resolve_address(address: str | None) -> str:
    """--address, else RAY_ADDRESS, else the cluster `ray start` left on this machine
    (Ray's own `auto`): HOST:PORT of its GCS, or a ray:// client address."""
    given = (address or os.environ.get("RAY_ADDRESS") or "auto").strip()
    if given != "auto":
        return given
    try:
        found = _CURRENT_CLUSTER.read_text().strip()
    except OSError:
        found = ""
    if not found:
        raise EngineUnreachable(
            "no Ray cluster is running on this machine (--address auto)",
            "start one with 'ray start --head', or give --address HOST:PORT",
        )
    return found


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """A TCP connection to HOST:PORT, so that a wrong address fails in seconds instead of
    after Ray's own minute of retries."""
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(
            f"--address {address!r} is not HOST:PORT", "give --address HOST:PORT, or auto"
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise EngineUnreachable(
            f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}",
            "check --address (the head node's GCS port, 6379 by default) and that it is up",
        ) from None


def connect(address: str, runtime_env: dict[str, Any] | None = None) -> bool:
    """Join the cluster as a driver (quietly, no SIGTERM handler of Ray's left behind).
    Returns False when this process was already connected (then it must not shut Ray down)."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    previous = signal.getsignal(signal.SIGTERM)
    attempts = CLIENT_START_ATTEMPTS if address.startswith("ray://") else 1
    try:
        for attempt in range(1, attempts + 1):
            try:
                ray.init(
                    address=address,
                    namespace=NAMESPACE,
                    runtime_env=runtime_env or None,
                    logging_level=logging.ERROR,
                    log_to_driver=False,
                )
                break
            except ConnectionError as exc:
                text = str(exc)
                if attempt < attempts and any(m in text for m in _CLIENT_START_FAILURES):
                    sys.stderr.write(
                        f"ray: the head's client server for this driver did not start "
                        f"(try {attempt} of {attempts} at {address}); trying again\n"
                    )
                    time.sleep(float(attempt))
                    continue
                raise EngineUnreachable(
                    f"cannot join the Ray cluster at {address}: {_last_line(text)}",
                    _connect_hint(address, text),
                ) from None
    except ImportError as exc:  # ray:// without ray[client]
        raise MlopsError(f"cannot use {address}: {exc}", "pip install 'ray[client]'") from None
    finally:
        if threading.current_thread() is threading.main_thread() and previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return True


def _last_line(text: str) -> str:
    """A server's traceback as its last line (the exception), so that the error is one line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) <= 1:
        return text.strip()
    return f"{lines[0].rstrip(':')}: {lines[-1]}"


def _connect_hint(address: str, text: str) -> str | None:
    if any(m in text for m in _CLIENT_START_FAILURES):
        return (
            "the head node's ray_client_server*.err (session_latest/logs under its Ray temp "
            "folder, /tmp/ray by default) says why its client server stopped"
        )
    if address.startswith("ray://"):
        return "check that the head runs Ray Client (ray start --head --ray-client-server-port)"
    return None


# -- on the nodes ----------------------------------------------------------------------------


def machine_id() -> str:
    """This machine's boot id (one per running kernel), or its host name where there is none."""
    try:
        return "boot:" + Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "host:" + socket.gethostname()


def folder_identity(path: str) -> list[int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return [info.st_dev, info.st_ino]


def probe_node(folders: list[str], libraries: list[str]) -> dict[str, Any]:
    """Runs on one node (a Ray task pinned there): what the driver needs to know about it."""
    import ray

    context = ray.get_runtime_context()
    return {
        "node_id": context.get_node_id(),
        "host": socket.gethostname(),
        "machine": machine_id(),
        "folders": [folder_identity(f) for f in folders],
        "python": python_version(),
        "mlopsctl": __version__,
        "libraries": library_versions(libraries),
        "gcs_address": context.gcs_address,
    }


def run_step_remote(
    task: dict[str, Any], project_dir: str | None, env: dict[str, str], stream: bool
) -> Iterator[Any]:
    """Runs on a node (a Ray task): `python -m mlopsctl.exec TASK.json` in a subprocess, in
    a work folder of this node's. Yields the step's output in chunks as it comes (with
    `stream`; else all of it at the end), then {code, result, node, log?}."""
    import ray

    context = ray.get_runtime_context()
    node = {
        "node_id": context.get_node_id(),
        "host": socket.gethostname(),
        "ip": ray.util.get_node_ip_address(),
    }
    # Named as the executor names work folders (the PID is this worker's), so that a folder
    # a killed worker leaves behind goes at the next step on this node, or the next run here.
    remove_stale_workdirs()
    workdir = Path(tempfile.mkdtemp(prefix=f"mlopsctl-{os.getpid()}-{task['step']}-"))
    root = project_dir or os.getcwd()  # no project folder here: the uploaded working_dir
    task = {
        **task,
        "workdir": str(workdir),
        "result": str(workdir / "result.json"),
        "project_root": root,
    }
    if task.get("engine", {}).get("ray") is not None:
        # The step's own Ray tasks run in the runtime environment this task runs in.
        task["engine"]["ray"]["runtime_env"] = dict(context.runtime_env or {})
    task_path = workdir / "task.json"
    task_path.write_text(json.dumps(task))
    watch, alive = os.pipe()  # EOF on `watch` tells the step this worker is gone
    proc = None
    collected: list[bytes] = []
    try:
        # Through a relay: when a Ray worker dies (a forced cancel), Ray kills the worker's
        # child processes, and a step killed that way could not stop its own children. As the
        # relay's child, the step leads a process group of its own, outlives the worker, sees
        # the pipe close (MLOPSCTL_PARENT_FD) and stops its whole group (mlopsctl/exec.py).
        proc = subprocess.Popen(
            [sys.executable, "-c", _RELAY, sys.executable, "-m", "mlopsctl.exec", str(task_path)],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env, PARENT_FD_ENV: str(watch)},
            pass_fds=(watch,),
        )
        os.close(watch)
        watch = -1
        assert proc.stdout is not None
        while True:
            chunk = os.read(proc.stdout.fileno(), _CHUNK)  # what is there, up to 64 KiB
            if not chunk:
                break
            if stream:
                yield chunk
            else:
                collected.append(chunk)
        code = proc.wait()
        result = None
        if code == 0:
            result = json.loads((workdir / "result.json").read_text())
        end: dict[str, Any] = {"code": code, "result": result, "node": node}
        if not stream:
            end["log"] = b"".join(collected)
        yield end
    finally:
        if watch >= 0:
            os.close(watch)
        os.close(alive)  # a step still running stops itself and its group (cancelled)
        if proc is not None:
            try:
                proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)


# The relay between a Ray worker and the step: starts the step in a session of its own (with
# the worker's pipe), ignores Ctrl-C meant for the step, exits with the step's status.
_RELAY = f"""\
import os, signal, subprocess, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
fd = int(os.environ[{PARENT_FD_ENV!r}])
step = subprocess.Popen(sys.argv[1:], start_new_session=True, pass_fds=(fd,))
os.close(fd)
code = step.wait()
sys.exit(128 - code if code < 0 else code)
"""


# -- the runner ------------------------------------------------------------------------------


class RayRunner(StepRunner):
    name = "ray"

    def __init__(
        self,
        *,
        project_dir: str | None,
        store_task: dict[str, Any],
        env: dict[str, str],
        options: dict[str, dict[str, Any]],
        engines: dict[str, dict[str, Any]],
        stream: bool = True,
        owns_connection: bool = True,
    ) -> None:
        self.project_dir = project_dir
        # {file, digest} of the requirements installed on the nodes (--requirements), or None
        self.requirements: dict[str, str] | None = None
        self.store_task = store_task
        self.env = env
        self.options = options  # step -> Ray task options
        self.engines = engines  # step -> the `engine` block of its task (fan-out steps)
        self.stream = stream
        self.owns_connection = owns_connection
        self._running: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._stopping = False
        self._remote: Any = None

    def _function(self) -> Any:
        if self._remote is None:
            self._remote = import_ray().remote(run_step_remote)
        return self._remote

    def run(self, step: StepPlan, task: dict[str, Any], workdir: Path, log: LogSink) -> StepExit:
        ray = import_ray()
        from ray.exceptions import RayError

        task = {**task, "store": self.store_task}
        if step.name in self.engines:
            task["engine"] = json.loads(json.dumps(self.engines[step.name]))
        env = {**self.env, **step.env}
        returns = "streaming" if self.stream else 1
        options = {**self.options[step.name], "num_returns": returns, "max_retries": 0}
        options["name"] = f"mlopsctl:{task['run_id']}:{step.name}"
        with self._lock:
            if self._stopping:
                return StepExit(130, detail="cancelled before it started")
            handle = (
                self._function().options(**options).remote(task, self.project_dir, env, self.stream)
            )
            self._running[step.name] = handle
        end: dict[str, Any] | None = None
        try:
            if self.stream:
                for ref in handle:
                    item = ray.get(ref)
                    if isinstance(item, bytes):
                        log.write(item)
                    else:
                        end = item
            else:
                end = ray.get(handle)
        except RayError as exc:
            with self._lock:
                stopping = self._stopping
            if stopping:
                return StepExit(130, detail="cancelled on the Ray cluster")
            return StepExit(-1, detail=f"Ray: {_one_line(exc)}")
        finally:
            with self._lock:
                self._running.pop(step.name, None)
        if end is None:
            return StepExit(-1, detail="Ray: the step's task ended without a result")
        if end.get("log"):
            log.write(end["log"])
        node = end["node"]
        where = f"Ray node {node['host']} {node['ip']} ({node['node_id'][:12]})"
        if end["code"] != 0:
            return StepExit(int(end["code"]), detail=f"exited with status {end['code']} on {where}")
        result = dict(end["result"])
        if self.requirements:
            node = {**node, "requirements": self.requirements}
        result["info"] = {**(result.get("info") or {}), "ray": node}
        return StepExit(0, result)

    def stop_all(self) -> None:
        ray = import_ray()
        with self._lock:
            self._stopping = True
            running = list(self._running.values())
        for handle in running:
            try:
                ray.cancel(handle, force=True)
            except Exception:  # noqa: BLE001 - finished meanwhile, or the cluster is gone
                pass

    def close(self) -> None:
        if self.owns_connection:
            ray = import_ray()
            if ray.is_initialized():
                ray.shutdown()


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[-1] if lines else ''}"[:500]


# -- before the run -------------------------------------------------------------------------


def prepare_ray_run(
    project: Project, plan: PipelinePlan, store_config: dict[str, Any], options: RunOptions
) -> RayRunner:
    """The `ray` backend's factory (mlopsctl.app.runners): join the cluster, probe every
    node, refuse what cannot work (a local store the nodes cannot see, an environment that
    differs from this machine's, a step no node can hold), then hand back the runner."""
    import_ray()
    if options.requirements and options.image_ref:
        raise UsageError(
            "--requirements and --image both say what the steps run in", "give one of them"
        )
    requirements = None
    pip: dict[str, Any] = {}
    if options.requirements:  # the file is checked before the cluster is reached
        pip, requirements = pip_environment(project, plan.spec_path)
    address = resolve_address(options.address)
    if not address.startswith("ray://"):
        check_reachable(address)
    store_url = str(store_config["url"])
    is_s3 = store_url.startswith("s3://")
    image = _image(options.image_ref, is_s3)
    base_env: dict[str, Any] = {"image_uri": image["ref"]} if image else {}
    if pip:
        base_env["pip"] = pip
    owns = connect(address)
    try:
        runner = _prepare(project, plan, store_config, options, address, image, base_env, owns)
        runner.requirements = requirements
        return runner
    except BaseException:
        if owns:
            import_ray().shutdown()
        raise


def pip_environment(project: Project, spec: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """`--requirements`: Ray's pip runtime environment for the pipeline's requirements file
    (what its image installs), and {file, digest} for the steps' records."""
    path = requirements_path(project, spec)
    if path is None:
        raise UsageError(
            "--requirements: the pipeline has no requirements file (no image.requirements in "
            "the spec or mlops.yaml, and no requirements.txt in the project)",
            "add requirements.txt to the project, or name the file in image.requirements",
        )
    data = path.read_bytes()
    packages = requirement_lines(data.decode("utf-8", "replace"), path.parent)
    root = project.root
    shown = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
    if not packages:
        raise UsageError(
            f"--requirements: {shown} lists no requirement", f"add the steps' packages to {shown}"
        )
    # pip_check off: Ray's `pip check` also judges what the node itself had installed.
    return {"packages": packages, "pip_check": False}, {
        "file": shown,
        "digest": sha256_bytes(data),
    }


def requirement_lines(text: str, folder: Path) -> list[str]:
    """A requirements file's lines as Ray's pip environment takes them: comments and blank
    lines dropped, continuation lines joined, relative paths of -r/-c/--find-links absolute
    (pip runs in a folder of Ray's own)."""
    joined = text.replace("\\\n", "")
    lines = []
    for raw in joined.splitlines():
        line = raw.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        option = _PATH_OPTION.fullmatch(line)
        if option and "://" not in option[2] and not Path(option[2]).is_absolute():
            line = f"{option[1]} {(folder / option[2]).resolve()}"
        lines.append(line)
    return lines


def _image(ref: str | None, is_s3: bool) -> dict[str, Any] | None:
    if not ref:
        return None
    repo, at, digest = ref.partition("@")
    if not at or not digest.startswith("sha256:"):
        raise UsageError(
            f"--image {ref} is not pinned by digest",
            "give REPO@sha256:DIGEST (mlopsctl build --push prints it): the digest enters "
            "every step's cache key",
        )
    if not is_s3:
        raise UsageError(
            "steps in an image on Ray cannot see the local store folder",
            "use an S3 store (store.url: s3://bucket/prefix in mlops.yaml, or MLOPSCTL_STORE)",
        )
    return {"ref": ref, "digest": digest, "repository": repo}


def _prepare(
    project: Project,
    plan: PipelinePlan,
    store_config: dict[str, Any],
    options: RunOptions,
    address: str,
    image: dict[str, Any] | None,
    base_env: dict[str, Any],
    owns: bool,
) -> RayRunner:
    ray = import_ray()
    store_url = str(store_config["url"])
    is_s3 = store_url.startswith("s3://")
    store_root: Path | None = None
    if not is_s3:
        store_root = local_root(store_url, store_config.get("base_dir")).resolve()
        store_root.mkdir(parents=True, exist_ok=True)
    project_root = plan.project_root.resolve()
    libraries = sorted({lib for s in plan.steps.values() for lib in s.libraries})
    folders = [str(project_root)] + ([str(store_root)] if store_root else [])
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if not nodes:
        raise EngineUnreachable(f"the Ray cluster at {address} has no live node")
    reports = _probe(nodes, folders, libraries, base_env)
    here: dict[str, Any] = {
        "machine": machine_id(),
        "folders": [folder_identity(f) for f in folders],
        "python": python_version(),
        "mlopsctl": __version__,
        "libraries": library_versions(libraries),
    }
    same_folder = [
        [r["machine"] == here["machine"] and r["folders"][i] == here["folders"][i] for r in reports]
        for i in range(len(folders))
    ]
    if store_root is not None and not all(same_folder[1]):
        blind = [r for r, same in zip(reports, same_folder[1], strict=True) if not same]
        raise UsageError(
            f"the local store folder {store_root} is not visible from every node of the Ray "
            f"cluster at {address} ({_nodes_text(blind)} is another machine or sees another "
            "folder there)",
            "use an S3 store (store.url: s3://bucket/prefix in mlops.yaml, or MLOPSCTL_STORE), "
            "or a cluster whose every node is this machine",
        )
    if image is None:
        _check_environment(reports, here, address)
    _check_fits(plan, nodes, address)

    runtime_env = dict(base_env)
    project_dir: str | None = str(project_root)
    if image is not None:
        project_dir = IMAGE_PROJECT_DIR
        options.image = {"ref": image["ref"], "digest": image["digest"]}
    elif not all(same_folder[0]):
        project_dir = None  # run in the uploaded copy
        runtime_env["working_dir"] = str(project_root)
        runtime_env["excludes"] = _excludes(project_root, store_root)
    task_env: dict[str, Any] = {}
    if runtime_env:
        if owns:
            # The job's runtime environment: Ray packages and uploads a working_dir once per
            # job, not once per task.
            ray.shutdown()
            connect(address, runtime_env)
        else:  # joined by someone else in this process: per task, then
            task_env = {"runtime_env": runtime_env}
    if options.jobs == 0:
        total = sum(float((n.get("Resources") or {}).get("CPU", 0)) for n in nodes)
        options.jobs = max(1, int(total))

    step_options: dict[str, dict[str, Any]] = {}
    engines: dict[str, dict[str, Any]] = {}
    gcs = reports[0]["gcs_address"] or address
    for name, step in plan.steps.items():
        wanted = task_options(step.resources)
        if fans_out(step):
            # The step's process only hands trials out and refits the winner: it holds no
            # CPU, so that every CPU of the cluster is there for the trials.
            step_options[name] = {"num_cpus": 0, **task_env}
            engines[name] = {"ray": {"address": gcs, "namespace": NAMESPACE, "resources": wanted}}
        else:
            step_options[name] = {**wanted, **task_env}
    env = {"PYTHONUNBUFFERED": "1"}
    if is_s3 or _uses_s3_data(plan):
        s3 = store_config.get("s3_options") or {}
        env.update(caller_aws_environment(s3.get("profile"), s3.get("region")))
    if is_s3:
        s3_options = {k: v for k, v in (store_config.get("s3_options") or {}).items()}
        s3_options.pop("profile", None)  # resolved here: see caller_aws_environment
        store_task: dict[str, Any] = {"url": store_url, "s3_options": s3_options}
    else:
        store_task = {"url": str(store_root), "s3_options": {}}
    return RayRunner(
        project_dir=project_dir,
        store_task=store_task,
        env=env,
        options=step_options,
        engines=engines,
        stream=not address.startswith("ray://"),
        owns_connection=owns,
    )


def _probe(
    nodes: list[dict[str, Any]], folders: list[str], libraries: list[str], env: dict[str, Any]
) -> list[dict[str, Any]]:
    ray = import_ray()
    from ray.exceptions import GetTimeoutError, RayError, RuntimeEnvSetupError
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    timeout = PIP_PROBE_TIMEOUT_S if env.get("pip") else PROBE_TIMEOUT_S

    probe = ray.remote(probe_node)
    refs = [
        probe.options(
            num_cpus=0,
            max_retries=0,
            runtime_env=env or None,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False),
        ).remote(folders, libraries)
        for node in nodes
    ]
    try:
        reports: list[dict[str, Any]] = ray.get(refs, timeout=timeout)
    except GetTimeoutError:
        for ref in refs:
            ray.cancel(ref, force=True)
        raise EngineUnreachable(
            f"the Ray cluster's nodes did not answer a probe within {timeout:.0f} s",
            "check that every node can start workers (ray status)",
        ) from None
    except RuntimeEnvSetupError as exc:
        raise MlopsError(
            "--requirements: the requirements could not be installed on the Ray cluster: "
            + _pip_failure(exc),
            "fix the requirements file; pip's whole output is in the node's "
            "runtime_env_setup log (session_latest/logs under the node's Ray temp folder)",
        ) from None
    except RayError as exc:
        raise EngineUnreachable(
            f"a probe task failed on the Ray cluster: {_one_line(exc)}",
            "every node needs mlopsctl installed (the same version as here), or --image",
        ) from None
    return reports


def _pip_failure(exc: BaseException) -> str:
    """The line of a failed pip install that says why (pip's ERROR line), else the last."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:") or "No module named" in line]
    return (errors[0] if errors else lines[-1] if lines else type(exc).__name__)[:500]


def _nodes_text(reports: list[dict[str, Any]]) -> str:
    shown = [f"node {r['node_id'][:12]} on {r['host']}" for r in reports[:3]]
    more = f" and {len(reports) - 3} more" if len(reports) > 3 else ""
    return ", ".join(shown) + more


def _check_environment(reports: list[dict[str, Any]], here: dict[str, Any], address: str) -> None:
    """Every node must run what this machine would: the cache key holds this machine's Python
    and library versions."""
    for report in reports:
        differences = []
        for what in ("mlopsctl", "python"):
            if report[what] != here[what]:
                differences.append(f"{what} {report[what]} (here {here[what]})")
        for lib, version in here["libraries"].items():
            theirs = report["libraries"].get(lib)
            if theirs != version:
                differences.append(f"{lib} {theirs or 'missing'} (here {version or 'missing'})")
        if differences:
            raise UsageError(
                f"{_nodes_text([report])} of the Ray cluster at {address} runs "
                + ", ".join(differences),
                "the step cache key holds this machine's versions: install the same ones on "
                "the cluster (--requirements installs the project's requirements file there), "
                "or run every step in an image (--image REPO@sha256:DIGEST)",
            )


def _check_fits(plan: PipelinePlan, nodes: list[dict[str, Any]], address: str) -> None:
    """A task no node can hold would wait forever: refuse it before the run."""
    names = {"num_cpus": "CPU", "num_gpus": "GPU", "memory": "memory"}
    for name, step in plan.steps.items():
        wanted = task_options(step.resources)
        for option, resource in names.items():
            need = float(wanted.get(option) or 0)
            most = max(float((n.get("Resources") or {}).get(resource, 0)) for n in nodes)
            if need > most:
                shown = f"{need:g}" if resource != "memory" else f"{need / (1 << 30):.1f} GiB"
                has = f"{most:g}" if resource != "memory" else f"{most / (1 << 30):.1f} GiB"
                raise UsageError(
                    f"step '{name}' needs {shown} {resource}, and no node of the Ray cluster at "
                    f"{address} has that much (at most {has})",
                    f"lower resources of step '{name}', or add a node that has it",
                )


def _excludes(project_root: Path, store_root: Path | None) -> list[str]:
    excludes = list(_UPLOAD_EXCLUDES)
    if store_root is not None:
        try:
            excludes.append(store_root.relative_to(project_root).as_posix())
        except ValueError:
            pass
    return excludes


def _uses_s3_data(plan: PipelinePlan) -> bool:
    return any("s3://" in json.dumps(step.params, default=str) for step in plan.steps.values())


# -- inside a step: its own tasks ------------------------------------------------------------


def parallel_map(config: dict[str, Any]) -> Callable[..., Iterator[Any]]:
    """For a step whose task carries an `engine: {ray: ...}` block (set by RayRunner for
    fan-out components): a map that runs `function(shared, item)` for each item as a Ray task
    with the step's resources, `shared` put in the object store once, results in the items'
    order. The step's process joins the cluster as a driver the first time."""

    def run(function: Callable[[Any, Any], Any], shared: Any, items: list[Any]) -> Iterator[Any]:
        ray = import_ray()
        connect(str(config["address"]), config.get("runtime_env") or None)
        remote = ray.remote(call_on_node).options(max_retries=0, **config.get("resources", {}))
        shared_ref = ray.put(shared)
        refs = [remote.remote(function, shared_ref, item) for item in items]
        nodes: set[str] = set()
        for ref in refs:
            node, result = ray.get(ref)
            nodes.add(node)
            yield result
        shown = ", ".join(sorted(n[:12] for n in nodes))
        sys.stderr.write(f"ray: {len(refs)} tasks ran on {len(nodes)} node(s): {shown}\n")
        sys.stderr.flush()

    return run


def call_on_node(function: Callable[[Any, Any], Any], shared: Any, item: Any) -> tuple[str, Any]:
    """A task of parallel_map's: the node it ran on, and what the function returned."""
    import ray

    return ray.get_runtime_context().get_node_id(), function(shared, item)
