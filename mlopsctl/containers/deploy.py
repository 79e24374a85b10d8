"""Serving images and deployments: `mlopsctl build --serving REF` and `mlopsctl deploy REF`.

A serving image holds one registered model version (verified against its record, at /model),
mlopsctl's source and only the runtime that model's flavor needs, staged by
mlopsctl/containers/slim.py in the build stage of templates/docker/Dockerfile.serving.tmpl and
copied into a `FROM scratch` image: no pip, no compilers, no shell, no CUDA. XGBoost models get
the CPU-only `xgboost-cpu` wheel of the same version (same code, same predictions, ~700 MB less
than `xgboost` with its NCCL dependency). Package versions are pinned to the environment
running mlopsctl; a pinned package the build base already holds is copied from it, so a base
like mlopsctl-base:deps needs the network only for `xgboost-cpu`.

Tags: `<registry>/<project>/serving-<name>:<version>` and a content tag (the digest of the build
context and the base image id); an unchanged build is skipped. Labels: OCI, `io.mlopsctl.*` as
for pipeline images, and `dev.mlopsctl.model.*` with the version's provenance.

Deploying on a Docker host (the local engine or one of mlops.yaml's docker.hosts) starts the new
container beside the one it replaces, waits until it is ready, and only then stops and removes
the old one (found by the label `dev.mlopsctl.deployment=<name>`). With host networking (the
default) both bind the same port: the servers run with `--share-port` (SO_REUSEPORT), so the
kernel spreads new connections over both while they overlap and the URL never changes. Since
either container may answer a request on that port, the new one's readiness is read from its
own log (the server's `serving ... on http://...` line, printed once the model is loaded and the
socket listens), then confirmed on `/v2/health/ready`; the old one stops gracefully (SIGTERM: it
finishes the requests it holds and flushes its prediction log). With another network mode the
published host ports cannot overlap, so deployments alternate between PORT and PORT+1. A
container that never gets ready is removed with its last log lines in the error (exit 4), and
the old one keeps serving. Images are built on the default
engine; a docker.hosts engine pulls the image from the registry (it is pushed and recorded
first), so it needs no build tools and no base image. Prediction logging reaches the project's
store: an s3:// store by URL, endpoint and the caller's AWS_* variables passed to the container
(never baked into the image); a local store folder bind-mounted at the same path when the engine
shares this machine's filesystem; otherwise the server runs with logging off."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from mlopsctl import __version__
from mlopsctl.containers import DEFAULT_BASE, LABEL
from mlopsctl.containers.build import ContextFile as _ContextFile
from mlopsctl.errors import CheckFailed, MlopsError, NotFound, UsageError

if TYPE_CHECKING:
    import docker

    from mlopsctl.config import Project
    from mlopsctl.containers.build import BuildPlan
    from mlopsctl.containers.engine import Engine

Log = Callable[[str], None]

MODEL_LABEL = "dev.mlopsctl.model"
DEPLOYMENT_LABEL = "dev.mlopsctl.deployment"
DEFAULT_PORT = 8080
READY_PATH = "/v2/health/ready"
DEFAULT_READY_TIMEOUT_S = 120.0
_LOG_TAIL = 20
_TEMPLATE = "Dockerfile.serving.tmpl"
_SLIM = Path(__file__).with_name("slim.py")

# The distributions `mlopsctl serve` imports (its CLI, config and specs, the model loader, the
# prediction log writer and the S3 store), and per flavor the libraries that load the model.
# Everything they depend on comes with them.
_COMMON: tuple[str, ...] = ("typer", "pyyaml", "jsonschema", "numpy", "pandas", "pyarrow", "boto3")
_COMMON += ("uvicorn", "httptools", "uvloop", "prometheus-client")  # serve's HTTP and metrics
_FLAVOR_NEEDS = {
    "xgboost": ("xgboost", "scikit-learn", "skops", "scipy"),
    "sklearn": ("scikit-learn", "skops", "scipy"),
}
# Same module and version, CPU only: no CUDA kernels and no NCCL in the image.
_SWAPS = {"xgboost": "xgboost-cpu"}
_NEVER = ("nvidia-",)  # GPU runtime libraries: a CPU server never loads them
# typer's help colouring (rich, with pygments and markdown-it): mlopsctl turns it off
# (rich_markup_mode=None) and the image sets TYPER_USE_RICH=0, so typer never imports it.
_LEFT_OUT = frozenset({"rich"})


# -- what goes in ---------------------------------------------------------------------------


def runtime_requirements(flavor: str) -> list[str]:
    """Pinned `name==version` lines for a flavor's runtime, from the installed metadata."""
    import importlib.metadata as md

    from packaging.markers import default_environment
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    if flavor not in _FLAVOR_NEEDS:
        raise UsageError(
            f"no serving runtime for models of flavor '{flavor}'",
            f"serving images support flavors {', '.join(sorted(_FLAVOR_NEEDS))}",
        )
    env = cast("dict[str, str]", {**default_environment(), "extra": ""})
    pins: dict[str, str] = {}
    todo = [Requirement(r) for r in (*_COMMON, *_FLAVOR_NEEDS[flavor])]
    while todo:
        req = todo.pop()
        name = str(canonicalize_name(req.name))
        if name in pins or name in _LEFT_OUT or name.startswith(_NEVER):
            continue
        if req.marker and not req.marker.evaluate(env):
            continue
        try:
            dist = md.distribution(req.name)
        except md.PackageNotFoundError:
            raise NotFound(
                f"{req.name}, needed to serve {flavor} models, is not installed here",
                "install mlopsctl with its dependencies (pip install mlopsctl)",
            ) from None
        pins[name] = f"{_SWAPS.get(name, dist.metadata['Name'])}=={dist.version}"
        todo.extend(Requirement(r) for r in dist.requires or [])
    return sorted(pins.values(), key=str.lower)


def image_name(project: Project, model: str) -> str:
    from mlopsctl.containers.registry import repository

    return repository(project.registry, project.name, f"serving-{model}")


def serve_command(name: str, version: int, port: int) -> list[str]:
    return [
        "python3",
        "-m",
        "mlopsctl",
        "serve",
        f"{name}:{version}",
        "--model-dir",
        "/model",
        "--host",
        "0.0.0.0",
        "--port",
        str(port),
        "--share-port",
    ]


def plan_serving(
    project: Project, record: dict[str, Any], model_dir: Path, port: int = DEFAULT_PORT
) -> BuildPlan:
    """The build context of a serving image for a downloaded, verified model folder."""
    from mlopsctl.containers.build import BuildPlan, ContextFile, _mlopsctl_files
    from mlopsctl.templates import render, template_root

    name, version = str(record["name"]), int(record["version"])
    flavor = str((record.get("artifact") or {}).get("flavor") or _flavor_of(model_dir))
    plan = BuildPlan(
        project=project.name,
        pipeline=f"serving-{name}",
        repository=image_name(project, name),
        base=str(project.image.get("base") or DEFAULT_BASE),
        project_root=project.root,
        spec_display=f"{name}:{version}",
        spec_digest=str(record["artifact"]["digest"]),
        git=dict(record.get("git") or {}),
    )
    files = [f for f in _mlopsctl_files() if f.arcname != "_mlopsctl/requirements.txt"]
    requirements = "\n".join(runtime_requirements(flavor)) + "\n"
    files.append(ContextFile("_serving/requirements.txt", 0o644, data=requirements.encode()))
    files.append(ContextFile("_serving/slim.py", 0o644, path=_SLIM))
    for path in sorted(model_dir.rglob("*")):
        if path.is_file():
            rel = path.relative_to(model_dir).as_posix()
            files.append(_ModelFile(f"model/{rel}", 0o644, path=path))
    template = (template_root() / "docker" / _TEMPLATE).read_text()
    dockerfile = render(
        template,
        {
            "base": plan.base,
            "port": str(port),
            "command": json.dumps(serve_command(name, version, port)),
        },
    )
    files.append(ContextFile("Dockerfile", 0o644, data=dockerfile.encode()))
    plan.files = sorted(files, key=lambda f: f.arcname)
    return plan


@dataclass
class _ModelFile(_ContextFile):
    """A file of the downloaded model: hashed directly, since it lives in a throw-away folder
    that the digest memo (keyed by path) should not remember."""

    def digest(self) -> str:
        from mlopsctl.pipeline.hashing import sha256_file

        return sha256_file(self.path) if self.path is not None else super().digest()


def _flavor_of(model_dir: Path) -> str:
    try:
        return str(json.loads((model_dir / "model.json").read_text())["flavor"])
    except (OSError, ValueError, KeyError):
        raise MlopsError(
            f"{model_dir} has no readable model.json", "is it a model folder?"
        ) from None


def model_labels(record: dict[str, Any]) -> dict[str, str]:
    """`dev.mlopsctl.model.*`: which version is inside and where it came from."""
    git = record.get("git") or {}
    image = record.get("image") or {}
    who = record.get("who")
    labels = {
        "name": record.get("name"),
        "version": record.get("version"),
        "digest": (record.get("artifact") or {}).get("digest"),
        "flavor": (record.get("artifact") or {}).get("flavor"),
        "run": (record.get("run") or {}).get("id"),
        "git-commit": git.get("commit"),
        "pipeline": (record.get("pipeline") or {}).get("name"),
        "training-image": image.get("digest") if isinstance(image, dict) else None,
        "registered-by": who.get("name") if isinstance(who, dict) else who,
    }
    return {f"{MODEL_LABEL}.{k}": str(v) for k, v in labels.items() if v not in (None, "")}


def _labels(plan: BuildPlan, record: dict[str, Any], tag: str, port: int) -> dict[str, str]:
    from mlopsctl.runs import now_iso

    name, version = record["name"], record["version"]
    labels = {
        "org.opencontainers.image.title": f"{plan.project}/serving-{name}",
        "org.opencontainers.image.description": f"mlopsctl serve {name}:{version}",
        "org.opencontainers.image.version": str(version),
        "org.opencontainers.image.created": now_iso(),
        "org.opencontainers.image.revision": plan.git.get("commit") or "",
        "org.opencontainers.image.source": plan.git.get("remote") or "",
        "org.opencontainers.image.base.name": "scratch",
        f"{LABEL}.version": __version__,
        f"{LABEL}.project": plan.project,
        f"{LABEL}.content-tag": tag,
        f"{LABEL}.build-base": plan.base,
        "dev.mlopsctl.serving.port": str(port),
        **model_labels(record),
    }
    return {k: v for k, v in labels.items() if v}


# -- building -------------------------------------------------------------------------------


@contextmanager
def _downloaded(project: Project, ref: str) -> Iterator[tuple[dict[str, Any], Path]]:
    """The version record and its verified, unpacked model folder (removed afterwards)."""
    from mlopsctl.config import open_project_store
    from mlopsctl.registry import download

    tmp = Path(tempfile.mkdtemp(prefix="mlopsctl-serving-"))
    try:
        with open_project_store(project) as store:
            record, folder = download(store, ref, tmp / "model")
        yield cast("dict[str, Any]", record), folder  # a VersionRecord, read as a plain dict here
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build_serving_image(
    project: Project,
    ref: str,
    *,
    push: bool = False,
    network: str | None = None,
    port: int = DEFAULT_PORT,
    log: Log | None = None,
) -> dict[str, Any]:
    """Build (or find already built) the serving image of a model version on the local engine;
    push it with `push`. Returns what happened, with the image's size in bytes."""
    from mlopsctl.containers import build as pipeline_build
    from mlopsctl.containers import registry as oci
    from mlopsctl.containers.engine import DEFAULT_ENGINE, engines

    if push and not (project.registry or {}).get("url"):
        raise UsageError(
            "--push needs an image registry, and mlops.yaml has none",
            "add registry: {url: host:port} to mlops.yaml",
        )
    _check_port(port)
    with _downloaded(project, ref) as (record, model_dir):
        plan = plan_serving(project, record, model_dir, port)
        client = engines(project)[DEFAULT_ENGINE].client()
        try:
            base_id = pipeline_build._resolve_base(client, plan.base, log)
            tag = pipeline_build.content_tag(plan.content_digest(base_id))
            ref_tag = f"{plan.repository}:{tag}"
            version_tag = str(record["version"])
            result: dict[str, Any] = {
                "model": {"name": record["name"], "version": record["version"]},
                "image": plan.repository,
                "ref": ref_tag,
                "content_tag": tag,
                "tags": [tag, version_tag],
                "base": {"ref": plan.base, "id": base_id},
                "image_id": pipeline_build.engine_image_id(client, ref_tag),
                "built": False,
                "skipped": None,
                "pushed": False,
                "digest": None,
                "record": None,
                "port": port,
            }
            if result["image_id"]:
                result["skipped"] = "an image with this content tag is on the engine"
            elif (project.registry or {}).get("url"):
                digest = oci.manifest_digest(project.registry or {}, plan.repository, tag)
                if digest:
                    result["skipped"] = "an image with this content tag is in the registry"
                    result["digest"] = digest
                    result["image_id"] = pipeline_build.pull_image(
                        client, plan.repository, tag, log
                    )
            if result["skipped"] is None:
                labels = _labels(plan, record, tag, port)
                result["image_id"] = pipeline_build._run_build(
                    client, plan, ref_tag, labels, network, log
                )
                result["built"] = True
            client.tag(result["image_id"], plan.repository, version_tag)
            inspected = client.inspect_image(result["image_id"])
            result["size"] = int(inspected.get("Size") or 0)
            result["labels"] = dict((inspected.get("Config") or {}).get("Labels") or {})
            if push:
                oci.check_reachable(project.registry or {})
                for pushed in result["tags"]:
                    digest = pipeline_build._push(client, plan.repository, pushed, log)
                    if pushed == tag:
                        result["digest"] = digest
                result["pushed"] = True
                result["record"] = pipeline_build._record_push(project, plan, result)
            return result
        finally:
            client.close()


def _check_port(port: int) -> None:
    if not 1 <= port <= 65534:
        raise UsageError(f"port {port} is out of range", "give a port from 1 to 65534")


# -- deploying ------------------------------------------------------------------------------


@dataclass
class Target:
    """Where a deployment runs: the engine, and the address its containers answer on."""

    engine: Engine
    address: str  # host name or IP that reaches the engine's host network

    @classmethod
    def of(cls, engine: Engine) -> Target:
        from urllib.parse import urlsplit

        url = engine.url or os.environ.get("DOCKER_HOST") or "unix://"
        if url.startswith(("unix://", "npipe://")):
            return cls(engine, "127.0.0.1")
        return cls(engine, urlsplit(url).hostname or "127.0.0.1")


def parse_env(items: list[str]) -> dict[str, str]:
    """`KEY=VALUE` strings (deploy's --env) as a mapping; a later key wins."""
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--env {item!r} is not KEY=VALUE", "e.g. --env LOG_LEVEL=debug")
        pairs[key] = value
    return pairs


def deployment_name(project: Project, model: str, name: str | None) -> str:
    import re

    chosen = name or f"{project.name}-{model}"
    if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,100}", chosen):
        raise UsageError(
            f"invalid deployment name {chosen!r}",
            "use letters, digits, '_', '.' and '-' (start with a letter or digit)",
        )
    return chosen


def deploy(
    project: Project,
    ref: str,
    *,
    host: str | None = None,
    port: int = DEFAULT_PORT,
    name: str | None = None,
    network_mode: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = DEFAULT_READY_TIMEOUT_S,
    log: Log | None = None,
) -> dict[str, Any]:
    """Run the model's serving image on a Docker host and hand traffic over (see the module
    docstring). Returns the deployment: url, container, image, size, replaced containers."""
    from mlopsctl.containers.engine import engine_named
    from mlopsctl.registry import parse_ref

    _check_port(port)
    deployment = deployment_name(project, parse_ref(ref).name, name)
    engine = engine_named(project, host)
    target = Target.of(engine)
    # Images are built on the default engine; any other engine (even a second one on this
    # machine) gets them from the registry.
    remote = host is not None
    built = build_serving_image(project, ref, push=remote, port=port, log=log)
    model, version = built["model"]["name"], int(built["model"]["version"])
    client = engine.client()
    try:
        image = built["image_id"]
        if remote:
            from mlopsctl.containers.build import pull_image

            image = pull_image(client, built["image"], built["content_tag"], log)
        old = client.containers(all=True, filters={"label": f"{DEPLOYMENT_LABEL}={deployment}"})
        mode = network_mode or engine.network_mode or "host"
        taken = {_port_of(c) for c in old if c.get("State") == "running"}
        new_port = port if mode == "host" or port not in taken else port + 1
        if mode != "host" and new_port in taken:
            raise UsageError(
                f"deployment {deployment} already runs containers on ports {port} and {port + 1}",
                "remove one (docker rm -f) and deploy again",
            )
        container_name = f"{deployment}-v{version}-{secrets.token_hex(3)}"
        command = serve_command(model, version, new_port)
        labels = {
            DEPLOYMENT_LABEL: deployment,
            f"{DEPLOYMENT_LABEL}.port": str(new_port),
            f"{MODEL_LABEL}.name": model,
            f"{MODEL_LABEL}.version": str(version),
            f"{LABEL}.project": project.name,
        }
        environment, binds = _store_access(project, engine, env)
        host_config = client.create_host_config(
            network_mode=mode,
            binds=binds or None,
            restart_policy={"Name": "unless-stopped"},
            port_bindings=None if mode == "host" else {new_port: new_port},
        )
        created = client.create_container(
            image,
            command=command,
            name=container_name,
            labels=labels,
            environment=environment,
            host_config=host_config,
            ports=None if mode == "host" else [new_port],
            healthcheck=_healthcheck(new_port),
        )
        container = created["Id"]
        url = f"http://{target.address}:{new_port}"
        started = time.monotonic()
        try:
            client.start(container)
            _wait_ready(client, container, url, timeout, shared=mode == "host")
        except BaseException:
            _remove(client, container)
            raise
        ready_s = time.monotonic() - started
        replaced = []
        for previous in _older_than(client, container, deployment):
            _remove(client, previous["Id"], stop_timeout=_stop_timeout())
            replaced.append(
                {
                    "container": previous["Id"][:12],
                    "name": (previous.get("Names") or ["?"])[0].lstrip("/"),
                    "version": (previous.get("Labels") or {}).get(f"{MODEL_LABEL}.version"),
                    "port": _port_of(previous),
                }
            )
        result = {
            "deployment": deployment,
            "url": url,
            "port": new_port,
            "host": engine.name,
            "model": {"name": model, "version": version},
            "container": container[:12],
            "container_name": container_name,
            "image": built["ref"],
            "image_id": image,
            "image_size": built["size"],
            "image_built": built["built"],
            "ready_s": round(ready_s, 3),
            "replaced": replaced,
        }
        _record(project, result)
        return result
    finally:
        client.close()


def _older_than(client: docker.APIClient, container: str, deployment: str) -> list[dict[str, Any]]:
    """The deployment's containers created before `container`, listed again now: a deploy
    started meanwhile by someone else is left alone (the later one wins), and one that
    finished first has already been replaced by it."""
    from docker.errors import NotFound as DockerNotFound

    ours = _created(client.inspect_container(container)["Created"])
    older = []
    for candidate in client.containers(
        all=True, filters={"label": f"{DEPLOYMENT_LABEL}={deployment}"}
    ):
        if candidate["Id"] == container:
            continue
        try:
            created = _created(client.inspect_container(candidate["Id"])["Created"])
        except DockerNotFound:
            continue  # removed meanwhile
        if created < ours:
            older.append(candidate)
    return older


def _created(text: str) -> tuple[str, str]:
    """Docker's creation time (RFC 3339 in UTC, nanoseconds with trailing zeros trimmed, as Go
    writes it) as a key that sorts as the times do: the seconds, then the fraction padded."""
    seconds, _, fraction = text.rstrip("Z").partition(".")
    return seconds, fraction.ljust(9, "0")


def _stop_timeout() -> int:
    """Seconds Docker waits after SIGTERM before SIGKILL: the server first lets its open
    requests finish (up to its shutdown grace), then flushes its prediction logs to the store."""
    from mlopsctl.serving import SHUTDOWN_GRACE_S

    return int(SHUTDOWN_GRACE_S) + 30


def _port_of(container: dict[str, Any]) -> int | None:
    value = (container.get("Labels") or {}).get(f"{DEPLOYMENT_LABEL}.port")
    return int(value) if value and value.isdigit() else None


def _healthcheck(port: int) -> dict[str, Any]:
    probe = (
        "import urllib.request; "
        f"urllib.request.urlopen('http://127.0.0.1:{port}{READY_PATH}', timeout=4)"
    )
    second = 1_000_000_000
    return {
        "test": ["CMD", "python3", "-c", probe],
        "interval": 30 * second,
        "timeout": 5 * second,
        "start_period": 60 * second,
        "retries": 3,
    }


def _store_access(
    project: Project, engine: Engine, extra: dict[str, str] | None
) -> tuple[dict[str, str], list[str]]:
    """Environment (and bind mounts) that let the server log predictions to the project's store:
    an s3:// store by URL with the caller's AWS_* variables; a local store folder bind-mounted
    at the same path when the engine is on this machine. Otherwise logging is off (the server
    says so)."""
    from mlopsctl.config import STORE_ENV

    environment: dict[str, str] = {}
    binds: list[str] = []
    url = project.store_url
    if url.startswith("s3://"):
        environment[STORE_ENV] = url
        for key, value in os.environ.items():
            if key.startswith("AWS_") and key not in _HOST_PATHS:
                environment[key] = value
        endpoint = (project.s3_options or {}).get("endpoint_url")
        if endpoint and "AWS_ENDPOINT_URL" not in environment:
            environment["AWS_ENDPOINT_URL"] = str(endpoint)
    elif engine.local:
        from mlopsctl.containers.build import local_store_dir

        folder = local_store_dir(project)
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            environment[STORE_ENV] = str(folder)
            binds.append(f"{folder}:{folder}:rw")
    environment.update(extra or {})
    return environment, binds


# AWS variables that name files on this machine: meaningless inside the container (the image
# has its own CA bundle), and a path that is missing there would break every S3 call.
_HOST_PATHS = frozenset(
    {
        "AWS_CA_BUNDLE",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    }
)


def _wait_ready(
    client: docker.APIClient, container: str, url: str, timeout: float, *, shared: bool = False
) -> None:
    """Poll `url`/v2/health/ready until it answers 200 (on a `shared` port, only once the
    container's own log says it serves: the old container answers there too); a container that
    exits or a timeout is a CheckFailed carrying the container's last log lines."""
    deadline = time.monotonic() + timeout
    delay = 0.1
    last = "no answer yet"
    while True:
        state = (client.inspect_container(container).get("State") or {}).copy()
        if not state.get("Running") and state.get("Status") in ("exited", "dead"):
            raise _not_ready(
                client, container, f"the container exited with status {state.get('ExitCode')}"
            )
        if shared and not _says_serving(client, container):
            last = "the server has not said it serves yet"
            if time.monotonic() >= deadline:
                raise _not_ready(client, container, f"not ready after {timeout:g} s ({last})")
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)
            continue
        try:
            with urllib.request.urlopen(url + READY_PATH, timeout=2) as response:
                if response.status == 200:
                    return
                last = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(getattr(exc, "reason", exc))
        if time.monotonic() >= deadline:
            raise _not_ready(
                client, container, f"{url}{READY_PATH} not ready after {timeout:g} s ({last})"
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)


def _says_serving(client: docker.APIClient, container: str) -> bool:
    # The whole log: the line comes early, but warnings may follow it.
    raw = client.logs(container, stdout=False, stderr=True)
    return any(
        line.startswith("serving ") and " on http" in line
        for line in raw.decode(errors="replace").splitlines()
    )


class NotReady(CheckFailed):
    """A new container never answered ready; `tail` holds its last log lines."""

    def __init__(self, message: str, hint: str | None = None, tail: list[str] | None = None):
        super().__init__(message, hint)
        self.tail = list(tail or [])


def _not_ready(client: docker.APIClient, container: str, why: str) -> NotReady:
    try:
        raw = client.logs(container, stdout=True, stderr=True, tail=_LOG_TAIL)
        tail = raw.decode(errors="replace").rstrip().splitlines()
    except Exception:  # noqa: BLE001 - the logs are a courtesy; the failure is what matters
        tail = []
    return NotReady(
        f"the new container never got ready: {why}",
        "it was removed and the running deployment (if any) was left serving; its last log "
        "lines are above",
        tail=tail,
    )


def _remove(client: docker.APIClient, container: str, stop_timeout: int = 5) -> None:
    from docker.errors import APIError
    from docker.errors import NotFound as DockerNotFound

    try:
        client.stop(container, timeout=stop_timeout)
    except (APIError, DockerNotFound):
        pass
    try:
        client.remove_container(container, force=True)
    except (APIError, DockerNotFound):
        pass


def _record(project: Project, result: dict[str, Any]) -> None:
    """The audit event (type `deployment`)."""
    from mlopsctl.config import open_project_store
    from mlopsctl.events import record_event

    with open_project_store(project) as store:
        record_event(
            store,
            "deployment",
            model=result["model"]["name"],
            version=result["model"]["version"],
            deployment=result["deployment"],
            docker_host=result["host"],
            url=result["url"],
            image=result["image"],
            image_id=result["image_id"],
            container=result["container"],
            replaced=[r["container"] for r in result["replaced"]],
        )
