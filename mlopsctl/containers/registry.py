"""The OCI registry that pipeline images are pushed to (`registry:` in mlops.yaml): image
names, a reachability check, and a manifest look-up (does the content tag exist there
already?) over the distribution API. Pushes and pulls go through the Docker engine, which
holds the credentials (`docker login`)."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

from mlopsctl.errors import RegistryUnreachable

_TIMEOUT_S = 5.0
_MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    )
)


def repository(registry: dict[str, Any] | None, project: str, pipeline: str) -> str:
    """`<registry>/<project>/<pipeline>`, or `<project>/<pipeline>` without a registry."""
    url = str((registry or {}).get("url") or "").rstrip("/")
    return f"{url}/{project}/{pipeline}" if url else f"{project}/{pipeline}"


def split_repository(repo: str) -> tuple[str, str]:
    """'127.0.0.1:5000/ns/app' -> ('127.0.0.1:5000', 'ns/app')."""
    host, _, path = repo.partition("/")
    return host, path


def base_url(registry: dict[str, Any]) -> str:
    """HTTP base URL of a registry entry: plain http for loopback or `insecure: true`."""
    url = str(registry.get("url", "")).rstrip("/")
    if url.startswith(("http://", "https://")):
        return url.split("/", 3)[0] + "//" + url.split("/", 3)[2]
    host = url.split("/", 1)[0]
    local = host.startswith(("127.", "localhost", "[::1]"))
    scheme = "http" if registry.get("insecure") or local else "https"
    return f"{scheme}://{host}"


def check_reachable(registry: dict[str, Any]) -> None:
    """Raise RegistryUnreachable unless the registry answers /v2/ (401 counts: it wants
    credentials, which the engine has after `docker login`)."""
    url = f"{base_url(registry)}/v2/"
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S):
            return
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            return
        reason = f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        reason = str(getattr(exc, "reason", exc))
    raise RegistryUnreachable(
        f"image registry {registry.get('url')} is unreachable ({url}: {reason})",
        "is it running, and is registry.url in mlops.yaml right? (mlopsctl doctor checks it)",
    )


def manifest_digest(registry: dict[str, Any], repo: str, tag: str) -> str | None:
    """The manifest digest of repo:tag in the registry; None when it is not there, or when
    the registry cannot tell us (unreachable, or it wants credentials we do not hold)."""
    _, path = split_repository(repo)
    request = urllib.request.Request(
        f"{base_url(registry)}/v2/{path}/manifests/{tag}",
        method="HEAD",
        headers={"Accept": _MANIFEST_TYPES},
    )
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
            digest = response.headers.get("Docker-Content-Digest")
            return str(digest) if digest else None
    except (urllib.error.URLError, OSError):
        return None
