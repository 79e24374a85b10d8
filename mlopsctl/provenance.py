"""Who, where and from which code: the facts every run and model version records.

Git facts come from the `git` command rather than GitPython: two short subprocesses cost a few
milliseconds, while importing GitPython costs ~80 ms on every run, and a fully cached pipeline
re-run has to finish in well under half a second."""

from __future__ import annotations

import getpass
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

# The standard CI variables naming the person or bot that triggered a job.
_CI_ACTORS = (
    ("GITHUB_ACTOR", "github"),
    ("GITLAB_USER_EMAIL", "gitlab"),
    ("GITLAB_USER_LOGIN", "gitlab"),
    ("BUILDKITE_BUILD_CREATOR_EMAIL", "buildkite"),
    ("CIRCLE_USERNAME", "circleci"),
    ("BITBUCKET_STEP_TRIGGERER_UUID", "bitbucket"),
    ("BUILD_REQUESTEDFOREMAIL", "azure"),
)


def _git(root: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def git_info(root: Path) -> dict[str, Any]:
    """commit, branch, dirty flag and remote URL; {} outside a repository. One `git status`
    answers the first three, also in a repository with no commit yet."""
    status = _git(root, "status", "--porcelain=v2", "--branch", "--untracked-files=no")
    if status is None:
        return {}
    info: dict[str, Any] = {"commit": None, "branch": None, "dirty": False}
    for line in status.splitlines():
        if line.startswith("# branch.oid "):
            oid = line.split()[-1]
            info["commit"] = None if oid == "(initial)" else oid
        elif line.startswith("# branch.head "):
            head = line.split()[-1]
            info["branch"] = None if head == "(detached)" else head
        elif not line.startswith("#"):
            info["dirty"] = True
    remote = _git(root, "config", "--get", "remote.origin.url")
    info["remote"] = _strip_credentials(remote) if remote else None
    return info


def _strip_credentials(url: str) -> str:
    # https://user:token@host/x -> https://host/x: a record must never carry a secret.
    if "://" in url and "@" in url.split("://", 1)[1].split("/", 1)[0]:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://{rest.split('@', 1)[1]}"
    return url


def who(root: Path | None = None) -> dict[str, Any]:
    """The person (or CI actor) behind a run."""
    for var, system in _CI_ACTORS:
        if os.environ.get(var):
            return {"name": os.environ[var], "source": system}
    email = _git(root or Path.cwd(), "config", "user.email") if root else None
    if email:
        return {"name": email, "source": "git"}
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return {"name": user, "source": "os"}


def where() -> dict[str, Any]:
    return {
        "host": socket.gethostname(),
        # system/release, not platform.platform(): that one runs `uname -p` in a subprocess.
        "platform": f"{platform.system()}-{platform.release()}",
        "python": platform.python_version(),
        "ci": bool(os.environ.get("CI")),
    }


def library_versions(names: tuple[str, ...] | list[str]) -> dict[str, str | None]:
    """Installed versions read from package metadata (no import of the libraries)."""
    if not names:
        return {}
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {}
    for name in sorted(set(names)):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def python_version() -> str:
    return ".".join(map(str, sys.version_info[:3]))
