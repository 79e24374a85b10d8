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
HEAD_BYTES = 256 * 1024
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


def spec_candidates(paths: Iterable[str], exclude: Iterable[str] = ()) -> list[str]:
    """The root-relative POSIX paths (of a git tree, say) that find_specs would open: a YAML
    suffix, no tool folder on the way, not excluded (the file or any folder above it). Whether
    each is a spec is then up to `declares_mlopsctl` on its first HEAD_BYTES."""
    patterns = [p.rstrip("/") for p in exclude if p.strip("/")]
    chosen = []
    for path in paths:
        parts = path.split("/")
        if not path.endswith(SPEC_SUFFIXES) or SKIP_DIRS.intersection(parts[:-1]):
            continue
        prefixes = ("/".join(parts[: i + 1]) for i in range(len(parts)))
        if not any(fnmatchcase(prefix, p) for prefix in prefixes for p in patterns):
            chosen.append(path)
    return sorted(chosen)


def declares_mlopsctl(head: bytes) -> bool:
    """Whether the start of a file declares `apiVersion: mlopsctl/...` at the top level."""
    return _API_LINE.search(head.decode("utf-8", errors="replace")) is not None


def _declares_mlopsctl(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            head = handle.read(HEAD_BYTES)
    except OSError:
        return False
    return declares_mlopsctl(head)
