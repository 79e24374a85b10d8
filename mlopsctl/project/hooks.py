"""`mlopsctl hooks install`: a git pre-push hook that runs the fast checks and blocks a push
that would fail them."""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path

from mlopsctl.errors import MlopsError, NotFound

MARKER = "# installed by mlopsctl hooks install"
HOOK_NAME = "pre-push"


def hooks_dir(start: Path) -> Path:
    """The hooks folder git really uses (honours core.hooksPath and worktrees)."""
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "--git-path", "hooks"],
            cwd=start,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except FileNotFoundError:
        raise MlopsError("git is not installed", "install git, then run this again") from None
    if proc.returncode != 0:
        raise NotFound(f"{start} is not inside a git repository", "run 'git init' first")
    path = Path(proc.stdout.strip())
    return path if path.is_absolute() else (start / path).resolve()


def hook_script() -> str:
    # Prefer the mlopsctl on PATH (the one a developer upgrades); fall back to the interpreter
    # that installed the hook, so a hook installed from a virtualenv works without activating it.
    fallback = f"{shlex.quote(sys.executable)} -m mlopsctl"
    return f"""#!/bin/sh
{MARKER}
# Blocks the push when a spec is invalid. Skip once with: git push --no-verify
if command -v mlopsctl >/dev/null 2>&1; then
    MLOPSCTL=mlopsctl
else
    MLOPSCTL="{fallback}"
fi
$MLOPSCTL validate || {{
    echo "pre-push: mlopsctl validate failed; fix the specs above (or push with --no-verify)" >&2
    exit 1
}}
"""


def install_hook(start: Path, force: bool = False) -> Path:
    folder = hooks_dir(start)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / HOOK_NAME
    if path.exists() and MARKER not in path.read_text(encoding="utf-8", errors="replace"):
        if not force:
            raise MlopsError(
                f"{path} exists and was not written by mlopsctl",
                "add 'mlopsctl validate' to it yourself, or pass --force "
                "(the old hook is kept as pre-push.orig)",
            )
        os.replace(path, path.with_name(HOOK_NAME + ".orig"))
    tmp = path.with_name(HOOK_NAME + ".tmp")
    tmp.write_text(hook_script(), encoding="utf-8")
    tmp.chmod(tmp.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    os.replace(tmp, path)
    return path


def uninstall_hook(start: Path) -> Path | None:
    path = hooks_dir(start) / HOOK_NAME
    if not path.exists():
        return None
    if MARKER not in path.read_text(encoding="utf-8", errors="replace"):
        raise MlopsError(
            f"{path} was not written by mlopsctl", "leaving it alone; edit it yourself"
        )
    path.unlink()
    return path
