"""Run pipeline steps in containers: `mlopsctl run SPEC --backend docker [--host NAME]`.

Every step runs `python -m mlopsctl.exec TASK.json` in the pipeline's image, exactly as a
local run does in a subprocess; only the place differs. Before the first step starts,
`prepare_docker_run` (the `docker` backend's factory in mlopsctl.app.runners) places each
step on an engine (GPU steps on a host that declares GPUs), checks that every engine answers
and can reach the store, builds the image when its content changed (pushing it when a remote
host must pull it) and makes sure each engine has it, so that nothing is found missing halfway
through a run.

- An engine on this machine (a unix socket) gets the step's work folder and a local store
  folder bind-mounted at the same paths, and runs the container as the calling user.
- Another machine (tcp://, ssh://) gets the task through the archive API and hands the result
  file back the same way; the store must be S3, which the container reads and writes itself,
  with the caller's AWS credentials, region and endpoint passed in its environment at run time
  (never baked into an image).
- Containers use host networking unless told otherwise, are removed after the step, and their
  output streams into the step's log (and to stderr with a `[step]` prefix under -v)."""

from __future__ import annotations

import io
import json
import os
import tarfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlopsctl.containers import DEFAULT_NETWORK, IMAGE_PROJECT_DIR, LABEL
from mlopsctl.containers.engine import Engine, api_error_text, engine_named, engines
from mlopsctl.errors import MlopsError, UsageError
from mlopsctl.pipeline.runners import LogSink, StepExit, StepRunner
from mlopsctl.store.credentials import caller_aws_environment

if TYPE_CHECKING:
    import docker

    from mlopsctl.config import Project
    from mlopsctl.pipeline.executor import RunOptions
    from mlopsctl.pipeline.plan import PipelinePlan, StepPlan

_REMOTE_DIR = "/tmp/mlopsctl-step"  # the work folder inside a container on another machine
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


@dataclass
class Placement:
    engine: Engine
    network_mode: str
    gpus: int = 0
    cpus: float | None = None
    memory: str | None = None


class DockerRunner(StepRunner):
    name = "docker"

    def __init__(
        self,
        *,
        image_id: str,
        project_dir: str,
        placements: dict[str, Placement],
        store_task: dict[str, Any],
        store_mount: Path | None,
        env: dict[str, str],
    ) -> None:
        self.image_id = image_id
        self.project_dir = project_dir
        self.placements = placements
        self.store_task = store_task
        self.store_mount = store_mount
        self.env = env
        self._running: dict[str, tuple[Engine, str]] = {}
        self._lock = threading.Lock()

    def run(self, step: StepPlan, task: dict[str, Any], workdir: Path, log: LogSink) -> StepExit:
        import requests
        from docker.errors import DockerException

        placement = self.placements[step.name]
        engine = placement.engine
        local = engine.local
        task = {**task, "project_root": self.project_dir, "store": self.store_task}
        if not local:
            task.update(workdir=_REMOTE_DIR, result=f"{_REMOTE_DIR}/result.json")
        task_path = f"{task['workdir']}/task.json"
        if local:
            Path(task_path).write_text(json.dumps(task))
        client = engine.client(timeout=None)  # logs and wait last as long as the step
        container = None
        try:
            container = client.create_container(
                self.image_id,
                command=["python", "-m", "mlopsctl.exec", task_path],
                working_dir=self.project_dir,
                environment={**self.env, **step.env, **self._user_env(local)},
                user=f"{os.getuid()}:{os.getgid()}" if local else None,
                labels={f"{LABEL}.run": task["run_id"], f"{LABEL}.step": step.name},
                host_config=self._host_config(client, placement, workdir if local else None),
            )["Id"]
            with self._lock:
                self._running[step.name] = (engine, container)
            if not local:
                client.put_archive(container, "/tmp", _task_archive(task))
            client.start(container)
            for chunk in client.logs(container, stream=True, follow=True):
                log.write(chunk)
            code = int(client.wait(container)["StatusCode"])
            if code != 0:
                return StepExit(code, detail=_why(client, container, code))
            if local:
                result = json.loads(Path(task["result"]).read_text())
            else:
                result = json.loads(_read_file(client, container, task["result"]))
            return StepExit(0, result)
        except (DockerException, requests.RequestException, OSError, ValueError) as exc:
            return StepExit(-1, detail=f"docker engine {engine.name}: {api_error_text(exc)}")
        finally:
            with self._lock:
                self._running.pop(step.name, None)
            if container is not None:
                try:
                    client.remove_container(container, force=True)
                except (DockerException, requests.RequestException):
                    pass  # the engine went away; nothing more to do here
            client.close()

    def _user_env(self, local: bool) -> dict[str, str]:
        # Run as the calling user on this machine (files in the store stay theirs); a user
        # the image does not know has no home folder, so give it one that is writable.
        return {"HOME": "/tmp"} if local and os.getuid() != 0 else {}

    def _host_config(
        self, client: docker.APIClient, placement: Placement, workdir: Path | None
    ) -> dict[str, Any]:
        from docker.types import DeviceRequest

        binds: dict[str, dict[str, str]] = {}
        if workdir is not None:
            binds[str(workdir)] = {"bind": str(workdir), "mode": "rw"}
            if self.store_mount is not None:
                binds[str(self.store_mount)] = {"bind": str(self.store_mount), "mode": "rw"}
        config: dict[str, Any] = {"binds": binds, "network_mode": placement.network_mode}
        if placement.gpus:
            config["device_requests"] = [
                DeviceRequest(count=placement.gpus, capabilities=[["gpu"]])
            ]
        if placement.cpus:
            config["nano_cpus"] = int(placement.cpus * 1e9)
        if placement.memory:
            config["mem_limit"] = memory_bytes(placement.memory)
        host_config: dict[str, Any] = client.create_host_config(**config)
        return host_config

    def stop_all(self) -> None:
        from docker.errors import DockerException

        with self._lock:
            running = list(self._running.values())
        for engine, container in running:
            try:
                client = engine.client()
                try:
                    client.kill(container)  # a step's python is PID 1: only SIGKILL stops it
                finally:
                    client.close()
            except (DockerException, MlopsError, OSError):
                pass  # already gone


def memory_bytes(text: str) -> int:
    """'512m', '4g', '2Gi', '1.5GB' -> bytes (binary units, as Docker reads them)."""
    value = text.strip().lower().rstrip("b").rstrip("i")
    unit = value[-1] if value and value[-1] in _UNITS else ""
    number = value[: -len(unit)] if unit else value
    return int(float(number) * _UNITS[unit])


def _task_archive(task: dict[str, Any]) -> bytes:
    name = Path(_REMOTE_DIR).name
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        folder = tarfile.TarInfo(name)
        folder.type, folder.mode = tarfile.DIRTYPE, 0o777
        tar.addfile(folder)
        data = json.dumps(task).encode()
        info = tarfile.TarInfo(f"{name}/task.json")
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _read_file(client: docker.APIClient, container: str, path: str) -> bytes:
    stream, _ = client.get_archive(container, path)
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        member = tar.extractfile(Path(path).name)
        if member is None:
            raise ValueError(f"{path} in the container is not a file")
        return member.read()


def _why(client: docker.APIClient, container: str, code: int) -> str:
    state = client.inspect_container(container).get("State") or {}
    if state.get("OOMKilled"):
        return f"the container ran out of memory (exit {code}); raise resources.memory"
    if code == 137:
        return "the container was killed (exit 137)"
    return f"the container exited with status {code}"


# -- before the run -------------------------------------------------------------------------


def prepare_docker_run(
    project: Project, plan: PipelinePlan, store_config: dict[str, Any], options: RunOptions
) -> DockerRunner:
    """Everything that can fail before a step starts: placement, engines, store reach, the
    image. Sets options.image ({ref, digest, ...}) so the digest enters every cache key."""
    selected = engine_named(project, options.docker_host)
    placements = place_steps(project, plan, selected, options.network)
    used = {p.engine.name: p.engine for p in placements.values()}
    store_url = str(store_config["url"])
    is_s3 = store_url.startswith("s3://")
    for engine in used.values():
        if not engine.local and not is_s3:
            raise UsageError(
                f"Docker host '{engine.name}' ({engine.url}) is another machine: its containers "
                f"cannot reach the local store folder {store_url}",
                "use an S3 store (store.url: s3://bucket/prefix in mlops.yaml, or "
                "MLOPSCTL_STORE), or run on an engine of this machine",
            )
    if not options.image_ref:
        check_data_in_image(project, plan)
    for engine in used.values():
        engine.client().close()  # answers? (EngineUnreachable, exit 5)

    image_id, image = _resolve_image(project, plan, options, used)
    options.image = image

    store_mount = None
    if is_s3:
        s3_options = {k: v for k, v in (store_config.get("s3_options") or {}).items()}
        profile = s3_options.pop("profile", None)  # no ~/.aws in there: caller_aws_environment
        store_task: dict[str, Any] = {"url": store_url, "s3_options": s3_options}
    else:
        from mlopsctl.store import local_root

        store_mount = local_root(store_url, store_config.get("base_dir")).resolve()
        store_mount.mkdir(parents=True, exist_ok=True)
        store_task = {"url": str(store_mount), "s3_options": {}}
        profile = None
    env = {"PYTHONUNBUFFERED": "1"}
    if is_s3 or _uses_s3_data(plan):
        s3 = store_config.get("s3_options") or {}
        env.update(caller_aws_environment(profile, s3.get("region")))
    return DockerRunner(
        image_id=image_id,
        project_dir=image.pop("project_dir"),
        placements=placements,
        store_task=store_task,
        store_mount=store_mount,
        env=env,
    )


def place_steps(
    project: Project, plan: PipelinePlan, selected: Engine, network: str | None
) -> dict[str, Placement]:
    """Each step's engine: the selected one, except GPU steps, which go to a host that
    declares enough GPUs (the selected one when it does). No such host: a usage error, raised
    before anything runs."""
    known = engines(project)
    placements = {}
    for name, step in plan.steps.items():
        resources = step.resources or {}
        gpus = int(resources.get("gpus") or 0)
        engine = selected
        if gpus and selected.gpus < gpus:
            fitting = [e for e in known.values() if e.gpus >= gpus]
            if not fitting:
                most = max((e.gpus for e in known.values()), default=0)
                declared = f"at most {most}" if most else "none"
                raise UsageError(
                    f"step '{name}' needs {gpus} GPU{'s' if gpus > 1 else ''}, but no Docker "
                    f"host in mlops.yaml declares that many ({declared})",
                    "add gpus: N to a docker.hosts entry of mlops.yaml, or drop "
                    f"resources.gpus from step '{name}'",
                )
            engine = fitting[0]
        placements[name] = Placement(
            engine=engine,
            network_mode=network
            or engine.network_mode
            or project.docker.get("network_mode")
            or DEFAULT_NETWORK,
            gpus=gpus,
            cpus=resources.get("cpus"),
            memory=resources.get("memory"),
        )
    return placements


def _resolve_image(
    project: Project, plan: PipelinePlan, options: RunOptions, used: dict[str, Engine]
) -> tuple[str, dict[str, Any]]:
    """The image every step runs in, present on every engine that runs a step, by id. The
    pipeline's image is built on the local engine when its content changed; an engine that
    lacks it pulls it from the registry, which it is pushed to first."""
    from docker.utils import parse_repository_tag

    from mlopsctl.containers.build import build_image, engine_image_id, pull_image

    image: dict[str, Any] = {}
    pushed = False

    def build(push: bool) -> dict[str, Any]:
        return build_image(
            project,
            plan.spec_path,
            push=push,
            network=options.network,
            log=options.build_log,
            need_local=True,
            allow_build=not options.dry_run,
        )

    if options.image_ref:
        ref = options.image_ref
    else:
        built = build(push=False)
        ref = built["ref"]
        image["content_tag"] = built["content_tag"]
    ids: dict[str, str] = {}
    labels: dict[str, str] = {}
    for engine in used.values():
        client = engine.client()
        try:
            image_id = engine_image_id(client, ref)
            if image_id is None:
                if not options.image_ref and not pushed:
                    if not (project.registry or {}).get("url"):
                        raise UsageError(
                            f"Docker host '{engine.name}' needs the pipeline's image from a "
                            "registry, and mlops.yaml has none",
                            "add registry: {url: host:port} to mlops.yaml",
                        )
                    image["repo_digest"] = build(push=True)["digest"]
                    pushed = True
                repo, tag = parse_repository_tag(ref)
                image_id = pull_image(client, repo, tag or "latest", options.build_log)
            ids[engine.name] = image_id
            labels = client.inspect_image(image_id)["Config"].get("Labels") or labels
        finally:
            client.close()
    if len(set(ids.values())) > 1:
        found = ", ".join(f"{name}: {i[:19]}" for name, i in sorted(ids.items()))
        raise MlopsError(
            f"image {ref} differs between Docker engines ({found})",
            "run with --image REPO@sha256:DIGEST so that every engine runs the same image",
        )
    image_id = next(iter(ids.values()))
    image.update(ref=ref, digest=image_id)
    image["project_dir"] = labels.get(f"{LABEL}.project-dir") or IMAGE_PROJECT_DIR
    return image_id, image


def check_data_in_image(project: Project, plan: PipelinePlan) -> None:
    """A step that reads a local data file reads it from the image (/app): refuse, before
    the run, data that the image will not hold (ignored by git, or by .dockerignore)."""
    from mlopsctl.containers.build import plan_build

    files = {
        f.arcname.removeprefix("project/")
        for f in plan_build(project, plan.spec_path).files
        if f.arcname.startswith("project/")
    }
    root = project.root.resolve()
    for name, step in plan.steps.items():
        for key in step.file_params:
            value = step.params.get(key)
            if not isinstance(value, str) or not value or "://" in value:
                continue
            path = (root / value).resolve()
            try:
                rel = path.relative_to(root).as_posix()
            except ValueError:
                rel = None
            if rel is not None and (
                rel in files or (path.is_dir() and any(f.startswith(rel + "/") for f in files))
            ):
                continue
            raise UsageError(
                f"step '{name}' reads {value}, which is not in the pipeline's image (only the "
                "project's files that git does not ignore, minus .dockerignore, go in)",
                "commit it or stop ignoring it, or read it from s3://",
            )


def _uses_s3_data(plan: PipelinePlan) -> bool:
    return any("s3://" in json.dumps(step.params, default=str) for step in plan.steps.values())
