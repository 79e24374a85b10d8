"""Find the spec files in a repository without parsing every YAML file in it."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from fnmatch import fnmatchcase
from pathlib import Path

SKIP_DIRS = frozenset({".git", ".mlops", ".venv", "venv", "node_modules", "__pycache__"})
SPEC_SUFFIXES = (".yaml", ".yml")

# Enough to hold a spec's header under any sensible comment block; a large YAML data file is
# not read to the end just to learn it is not a spec.
_HEAD_BYTES = 256 * 1024
_API_LINE = re.compile(r"^apiVersion:.*mlopsctl/", re.MULTILINE)


def find_specs(root: Path, exclude: Iterable[str] = ()) -> list[Path]:
    """Every *.yaml/*.yml file under `root` whose top level declares `apiVersion: mlopsctl/...`.

    `exclude` holds globs matched against the root-relative POSIX path (`specs/old/*`); a glob
    that matches a folder skips everything in it. Tool and environment folders are never entered.
    """
    patterns = [p.rstrip("/") for p in exclude if p.strip("/")]
    found: list[tuple[str, Path]] = []

    def excluded(relative: str) -> bool:
        return any(fnmatchcase(relative, p) for p in patterns)

    def walk(folder: Path, prefix: str) -> None:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return  # an unreadable folder holds no specs we could validate anyway
        for entry in entries:
            relative = prefix + entry.name
            if entry.is_dir(follow_symlinks=False):
                if entry.name not in SKIP_DIRS and not excluded(relative):
                    walk(Path(entry.path), relative + "/")
            elif (
                entry.name.endswith(SPEC_SUFFIXES)
                and entry.is_file()
                and not excluded(relative)
                and _declares_mlopsctl(entry.path)
            ):
                found.append((relative, Path(entry.path)))

    walk(root, "")
    return [path for _, path in sorted(found)]


def _declares_mlopsctl(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            head = handle.read(_HEAD_BYTES)
    except OSError:
        return False
    return _API_LINE.search(head.decode("utf-8", errors="replace")) is not None
