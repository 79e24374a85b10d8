"""`mlopsctl doctor`: one line per check, each ok / warn / skip / fail with a hint."""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from mlopsctl.config import (
    PROJECT_FILE,
    Project,
    find_project_file,
    load_project,
    project_from_data,
)
from mlopsctl.errors import MlopsError, SpecError

OK, WARN, SKIP, FAIL = "ok", "warn", "skip", "fail"
_TIMEOUT_S = 5.0


@dataclass
class Check:
    name: str
    status: str
    detail: str
    hint: str | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def run_checks(start: Path | None = None) -> list[Check]:
    start = start or Path.cwd()
    checks: list[Check] = []
    project, config_check = _check_config(start)
    checks.append(config_check)
    checks.append(_check_git(project.root))
    checks.append(_check_store(project))
    checks.extend(_check_docker(project))
    checks.append(_check_registry(project))
    return checks


def _check_config(start: Path) -> tuple[Project, Check]:
    path = find_project_file(start)
    if path is None:
        return load_project(start), Check(
            "config", FAIL, f"no {PROJECT_FILE} found", "run 'mlopsctl init' in the repository root"
        )
    try:
        project = load_project(start)
    except SpecError as exc:
        # Keep going with the defaults so the other checks still say something useful.
        return project_from_data({}, path.parent, path), Check(
            "config", FAIL, exc.one_line(), "run 'mlopsctl validate' to see every problem"
        )
    return project, Check("config", OK, f"{path} (project {project.name})")


def _check_git(root: Path) -> Check:
    if shutil.which("git") is None:
        return Check("git", WARN, "git is not installed", "install git so runs record their commit")
    for folder in (root, *root.parents):
        if (folder / ".git").exists():
            return Check("git", OK, f"repository at {folder}")
    return Check(
        "git",
        WARN,
        f"{root} is not in a git repository",
        "run 'git init': runs record the commit that made them",
    )


def _check_store(project: Project) -> Check:
    from mlopsctl.config import open_project_store

    where = f"{project.store_url} (from {project.store_source})"
    try:
        with open_project_store(project) as store:
            store.probe()
    except MlopsError as exc:
        return Check("store", FAIL, f"{where}: {exc.message}", exc.hint)
    return Check("store", OK, f"{where} reachable; conditional writes honoured")


def _check_docker(project: Project) -> list[Check]:
    hosts = project.docker_hosts
    if not hosts:
        return [Check("docker", SKIP, "no Docker hosts configured in mlops.yaml")]
    try:
        import docker
    except ImportError:
        return [Check("docker", FAIL, "the docker Python package is missing", "pip install docker")]
    checks = []
    for name, host in hosts.items():
        url = str(host.get("url", ""))
        try:
            client = docker.DockerClient(base_url=url, timeout=int(_TIMEOUT_S))
            try:
                version = client.version().get("Version", "?")
            finally:
                client.close()
        except Exception as exc:  # noqa: BLE001 - the SDK raises many unrelated types
            reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            checks.append(
                Check(
                    f"docker:{name}",
                    FAIL,
                    f"{url}: {reason}",
                    "is the Docker engine running and is its URL right?",
                )
            )
            continue
        checks.append(Check(f"docker:{name}", OK, f"{url} (engine {version})"))
    return checks


def _check_registry(project: Project) -> Check:
    if not project.registry or not project.registry.get("url"):
        return Check("registry", SKIP, "no image registry configured in mlops.yaml")
    import urllib.error
    import urllib.request

    from mlopsctl.containers.registry import base_url

    base = base_url(project.registry)
    try:
        with urllib.request.urlopen(f"{base}/v2/", timeout=_TIMEOUT_S) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return Check(
            "registry",
            FAIL,
            f"{base}: {reason}",
            "is the registry running and is registry.url in mlops.yaml right?",
        )
    if status in (200, 401):  # 401: reachable, wants credentials (docker login)
        return Check("registry", OK, f"{base} answers the OCI distribution API (HTTP {status})")
    return Check(
        "registry",
        FAIL,
        f"{base}/v2/ answered HTTP {status}",
        "is registry.url an OCI registry (it must serve /v2/)?",
    )
