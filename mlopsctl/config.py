"""Project configuration: mlops.yaml (kind Project) at the repository root, plus the
overrides of its store URL. Credentials are never read from here: S3 access uses the standard
AWS chain (environment variables, ~/.aws, profiles).

The store URL comes from, first to last: the `--store URL` global flag (set_store_flag), the
MLOPSCTL_STORE environment variable, `store.url` in mlops.yaml, and the default `.mlops`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlopsctl.errors import ConfigError

if TYPE_CHECKING:
    from mlopsctl.store.base import ObjectStore

PROJECT_FILE = "mlops.yaml"
DEFAULT_STORE = ".mlops"
STORE_ENV = "MLOPSCTL_STORE"
STORE_FLAG = "--store"

# The `--store URL` of the command being run (cli/main.py sets it, None when not given): it
# wins over the environment and mlops.yaml.
_store_flag: str | None = None


def set_store_flag(url: str | None) -> None:
    """Set (or, with None, clear) the store URL given on the command line."""
    global _store_flag
    _store_flag = url or None


def explicit_store_url() -> tuple[str, str] | None:
    """The store URL given by the flag or the environment, with where it came from; None when
    neither names one (then mlops.yaml or the default decides)."""
    if _store_flag:
        return _store_flag, STORE_FLAG
    env_url = os.environ.get(STORE_ENV)
    if env_url:
        return env_url, STORE_ENV
    return None


@dataclass(frozen=True)
class Project:
    root: Path
    config_path: Path | None
    name: str
    store_url: str
    store_source: str  # where store_url came from: --store, MLOPSCTL_STORE, mlops.yaml, default
    s3_options: dict[str, Any] = field(default_factory=dict)
    registry: dict[str, Any] | None = None
    docker: dict[str, Any] = field(default_factory=dict)
    image: dict[str, Any] = field(default_factory=dict)  # defaults for pipeline images
    exclude: tuple[str, ...] = ()
    release: dict[str, Any] = field(default_factory=dict)  # rules for approve and promote

    @property
    def require_git_identity(self) -> bool:
        """Whether `release approve --by` must be the git user.email of whoever runs it."""
        return bool(self.release.get("require_git_identity", False))

    @property
    def docker_hosts(self) -> dict[str, dict[str, Any]]:
        hosts = self.docker.get("hosts") or {}
        return dict(hosts)

    def host_price(self, host: str) -> float | None:
        """docker.hosts.<host>.price_per_hour, or None when the host declares none."""
        price = (self.docker_hosts.get(host) or {}).get("price_per_hour")
        return None if price is None else float(price)


def find_project_file(start: Path) -> Path | None:
    """The nearest mlops.yaml at or above `start`, stopping at the git root."""
    here = start.resolve()
    for folder in (here, *here.parents):
        candidate = folder / PROJECT_FILE
        if candidate.is_file():
            return candidate
        if (folder / ".git").exists():
            return None
    return None


def repo_root(start: Path) -> Path:
    here = start.resolve()
    for folder in (here, *here.parents):
        if (folder / ".git").exists():
            return folder
    return here


def load_project(start: Path | None = None, *, required: bool = False) -> Project:
    """Read mlops.yaml if there is one (validated against the Project schema); without one,
    use defaults rooted at the git repository (or `start`). `required` turns a missing file
    into a ConfigError."""
    start = Path.cwd() if start is None else start
    path = find_project_file(start)
    if path is None:
        if required:
            raise ConfigError(
                f"no {PROJECT_FILE} found in {start} or its parents",
                "run 'mlopsctl init' to create one, or cd into your project",
            )
        root = repo_root(start)
        data: dict[str, Any] = {"name": root.name}
    else:
        from mlopsctl.spec import load_spec

        root = path.parent
        data = load_spec(path, kind="Project")

    return project_from_data(data, root, path)


def project_from_data(data: dict[str, Any], root: Path, path: Path | None) -> Project:
    """Build a Project from (already validated) mlops.yaml data; `{}` gives the defaults."""
    store = data.get("store") or {}
    explicit = explicit_store_url()
    if explicit is not None:
        url, source = explicit
    elif store.get("url"):
        url, source = str(store["url"]), PROJECT_FILE
    else:
        url, source = DEFAULT_STORE, "default"
    return Project(
        root=root,
        config_path=path,
        name=str(data.get("name") or root.name),
        store_url=url,
        store_source=source,
        s3_options=dict(store.get("s3") or {}),
        registry=data.get("registry"),
        docker=dict(data.get("docker") or {}),
        image=dict(data.get("image") or {}),
        exclude=tuple(data.get("exclude") or ()),
        release=dict(data.get("release") or {}),
    )


def open_project_store(project: Project) -> ObjectStore:
    """The project's store, relative paths resolved against the project root."""
    from mlopsctl.store import open_store

    return open_store(project.store_url, s3_options=project.s3_options, base_dir=project.root)
