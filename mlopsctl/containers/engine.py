"""Docker engines: the one from the environment (DOCKER_HOST, or the default socket) and the
named ones in mlops.yaml (`docker.hosts`), reached through the Docker SDK's low-level client.
Whatever goes wrong on connecting becomes one EngineUnreachable line (exit 5) with a hint."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlopsctl.errors import EngineUnreachable, UsageError

if TYPE_CHECKING:
    import docker

    from mlopsctl.config import Project

DEFAULT_ENGINE = "default"  # the engine the environment names (DOCKER_HOST / default socket)
_CONNECT_TIMEOUT_S = 10


@dataclass
class Engine:
    name: str
    url: str | None  # None: from the environment
    gpus: int = 0
    network_mode: str | None = None
    _kwargs: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def where(self) -> str:
        return self.url or os.environ.get("DOCKER_HOST") or "the default socket"

    @property
    def local(self) -> bool:
        """Whether the engine shares this machine's filesystem, so folders can be bind-mounted:
        a unix socket is on this machine by definition; tcp:// and ssh:// engines are not."""
        url = self.url or os.environ.get("DOCKER_HOST") or "unix://"
        return url.startswith(("unix://", "npipe://"))

    def client(self, timeout: float | None = _CONNECT_TIMEOUT_S) -> docker.APIClient:
        """A low-level client. The first call negotiates the API version (and so finds out
        whether the engine answers); later ones reuse it and cost no round trip. Pass
        timeout=None for calls that last as long as a step (logs, wait)."""
        import docker
        from docker.errors import DockerException

        if not self._kwargs:
            if self.url is None:
                kwargs: dict[str, Any] = dict(docker.utils.kwargs_from_env())
            else:
                kwargs = {"base_url": self.url}
            if str(kwargs.get("base_url") or "").startswith("ssh://"):
                kwargs["use_ssh_client"] = True  # the system ssh: its config, agent and keys
            try:
                probe = docker.APIClient(version="auto", timeout=_CONNECT_TIMEOUT_S, **kwargs)
            except DockerException as exc:
                raise EngineUnreachable(
                    f"Docker engine {self.where} ({self.name}) is unreachable: {_reason(exc)}",
                    "start Docker (as root: bash scripts/testbed-docker.sh, or "
                    "systemctl start docker), or point DOCKER_HOST / docker.hosts in mlops.yaml "
                    "at a running engine",
                ) from exc
            kwargs["version"] = probe.api_version
            probe.close()
            self._kwargs = kwargs
        return docker.APIClient(timeout=timeout, **self._kwargs)


def _reason(exc: BaseException) -> str:
    """The root cause of a connection failure, in a few words."""
    seen: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and cause not in seen:
        seen.append(cause)
        cause = cause.__cause__ or cause.__context__
    text = " ".join(str(e) for e in seen)
    if "FileNotFoundError" in text or "No such file" in text:
        return "no engine socket there (is dockerd running?)"
    if "PermissionError" in text or "Permission denied" in text:
        return "permission denied on the socket (join the docker group, or run as root)"
    if "Connection refused" in text:
        return "connection refused"
    if "timed out" in text.lower():
        return "timed out"
    return str(exc).splitlines()[0][:200]


def api_error_text(exc: BaseException) -> str:
    """The engine's own explanation of a failed API call, on one line."""
    text = getattr(exc, "explanation", None) or str(exc)
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return " ".join(str(text).split())[:300]


def engines(project: Project) -> dict[str, Engine]:
    """The default engine plus every docker.hosts entry of mlops.yaml, by name."""
    found = {DEFAULT_ENGINE: Engine(DEFAULT_ENGINE, None)}
    for name, host in project.docker_hosts.items():
        found[name] = Engine(
            name,
            str(host["url"]),
            gpus=int(host.get("gpus") or 0),
            network_mode=host.get("network_mode"),
        )
    return found


def engine_named(project: Project, name: str | None) -> Engine:
    known = engines(project)
    if name is None:
        return known[DEFAULT_ENGINE]
    if name not in project.docker_hosts:
        hosts = ", ".join(sorted(project.docker_hosts)) or "none"
        raise UsageError(
            f"no Docker host named '{name}' in mlops.yaml (docker.hosts: {hosts})",
            "add it under docker.hosts, or leave out --host to use the local engine",
        )
    return known[name]
