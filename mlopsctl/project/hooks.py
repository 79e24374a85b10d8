"""`mlopsctl hooks install`: a git pre-push hook that runs the fast checks and blocks a push
that would fail them.

The hook checks what is pushed, not the working tree: git hands a pre-push hook one line per
ref (`<local ref> <local sha> <remote ref> <remote sha>`), and the specs are read from the tip
tree of each pushed commit, with mlops.yaml's `exclude:` taken from that tree too. So a bad spec
deleted but not committed still blocks, and an uncommitted work-in-progress spec does not.

Trees and blobs are read with two plain git commands (`ls-tree`, one `cat-file --batch` for all
blobs) rather than GitPython, like the git facts in provenance.py: no extra dependency, no
import cost, and nothing that depends on a particular GitPython version.
"""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO

from mlopsctl.errors import Diagnostic, MlopsError, NotFound, UsageError

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
    # The interpreter's path is quoted for sh (it may hold spaces), and `exec` hands the hook's
    # stdin, git's list of pushed refs, straight to mlopsctl.
    python = shlex.quote(sys.executable)
    return f"""#!/bin/sh
{MARKER}
# Runs the checks of 'mlopsctl validate' on the specs as they are in the commits being pushed,
# and blocks the push when one is invalid. Skip once with: git push --no-verify
if command -v mlopsctl >/dev/null 2>&1; then
    exec mlopsctl hooks run pre-push "$@"
fi
exec {python} -m mlopsctl hooks run pre-push "$@"
"""


def install_hook(start: Path, force: bool = False) -> Path:
    folder = hooks_dir(start)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / HOOK_NAME
    if path.exists() and MARKER not in path.read_text(encoding="utf-8", errors="replace"):
        if not force:
            raise MlopsError(
                f"{path} exists and was not written by mlopsctl",
                "add 'mlopsctl hooks run pre-push \"$@\"' to it yourself (it reads the "
                "hook's stdin), or pass --force "
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


# -- checking a push ------------------------------------------------------------------------

_REGULAR_FILE_MODES = frozenset({"100644", "100755"})


@dataclass(frozen=True)
class PushedRef:
    """One line of git's pre-push input."""

    local_ref: str
    local_sha: str
    remote_ref: str
    remote_sha: str

    @property
    def deletes(self) -> bool:
        return not self.local_sha.strip("0")


@dataclass
class RefCheck:
    """The specs of one pushed ref's tip tree, and every problem found in them."""

    ref: PushedRef
    files: list[str] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.diagnostics


def parse_pre_push(lines: Iterable[str]) -> list[PushedRef]:
    """git's pre-push lines; a line of any other shape is a UsageError."""
    refs = []
    for line in lines:
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 4 or not all(_is_sha(p) for p in (parts[1], parts[3])):
            raise UsageError(
                f"not a pre-push line: {line.strip()!r}",
                "git writes '<local ref> <local sha> <remote ref> <remote sha>' lines to a "
                "pre-push hook's stdin; this command is meant to be run by the hook",
            )
        refs.append(PushedRef(*parts))
    return refs


def _is_sha(text: str) -> bool:
    return len(text) in (40, 64) and all(c in "0123456789abcdef" for c in text)


def check_push(repo: Path, lines: Iterable[str]) -> list[RefCheck]:
    """Validate the specs in the tip tree of every ref being pushed (a deleted ref is skipped).

    A tree pushed to several refs is checked once. The result has one entry per ref checked.
    """
    refs = [ref for ref in parse_pre_push(lines) if not ref.deletes]
    if not refs:
        return []
    checked: dict[str, tuple[list[str], list[Diagnostic]]] = {}
    results = []
    with _BlobReader(repo) as blobs:
        for ref in refs:
            tree = _tree_of(repo, ref.local_sha)
            if tree is None:
                continue  # a tag of a blob or tree-less object: no specs to check
            if tree not in checked:
                checked[tree] = check_tree(repo, tree, blobs)
            files, diagnostics = checked[tree]
            results.append(RefCheck(ref, list(files), list(diagnostics)))
    return results


def check_tree(
    repo: Path, tree: str, blobs: _BlobReader | None = None
) -> tuple[list[str], list[Diagnostic]]:
    """(spec paths, problems) of the specs in one git tree, the way `mlopsctl validate` finds
    and checks them in a working tree (paths relative to the tree's root)."""
    from mlopsctl.config import PROJECT_FILE
    from mlopsctl.project.validate import validate_spec_text
    from mlopsctl.spec.discover import HEAD_BYTES, declares_mlopsctl, spec_candidates
    from mlopsctl.spec.loader import max_spec_bytes, too_big
    from mlopsctl.spec.validate import validate_text

    if blobs is None:
        with _BlobReader(repo) as own:
            return check_tree(repo, tree, own)
    entries = _list_tree(repo, tree)
    limit = max_spec_bytes()
    exclude: list[str] = []
    config = entries.get(PROJECT_FILE)
    if config is not None:
        size, data = blobs.read(config[0], limit + 1)
        loaded, problems = validate_text(PROJECT_FILE, data, kind="Project")
        if loaded is not None and not problems and size <= limit:
            exclude = [str(p) for p in loaded.data.get("exclude") or ()]
        # An invalid mlops.yaml is among the specs checked and reported below.
    files: list[str] = []
    diagnostics: list[Diagnostic] = []
    for path in spec_candidates(entries, exclude):
        size, data = blobs.read(entries[path][0], max(HEAD_BYTES, limit + 1))
        if not declares_mlopsctl(data[:HEAD_BYTES]):
            continue
        files.append(path)
        if size > limit:
            diagnostics.append(too_big(path, size, limit))
        else:
            diagnostics += validate_spec_text(path, data)
    return files, diagnostics


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            ["git", *args], cwd=repo, capture_output=True, timeout=120, check=False
        )
    except FileNotFoundError:
        raise MlopsError("git is not installed", "install git, then run this again") from None


def _tree_of(repo: Path, sha: str) -> str | None:
    proc = _git(repo, "rev-parse", "--verify", "--quiet", f"{sha}^{{tree}}")
    if proc.returncode != 0:
        return None
    return proc.stdout.decode().strip() or None


def _list_tree(repo: Path, tree: str) -> dict[str, tuple[str, int]]:
    """path -> (blob id, size) of every regular file in a tree (links and submodules left out:
    validate does not follow them either)."""
    proc = _git(repo, "ls-tree", "-r", "-l", "-z", "--full-tree", tree)
    if proc.returncode != 0:
        reason = proc.stderr.decode(errors="replace").strip().splitlines()
        raise MlopsError(
            f"cannot list the tree {tree}: {reason[-1] if reason else 'git ls-tree failed'}",
            "is the repository intact? try 'git fsck'",
        )
    entries = {}
    for record in proc.stdout.split(b"\0"):
        if not record:
            continue
        meta, _, raw_path = record.partition(b"\t")
        mode, kind, oid, size = meta.decode().split()
        if kind == "blob" and mode in _REGULAR_FILE_MODES:
            entries[os.fsdecode(raw_path)] = (oid, int(size))
    return entries


class _BlobReader:
    """One `git cat-file --batch` for every blob read: ask for an object, read its answer."""

    def __init__(self, repo: Path) -> None:
        self.repo = repo
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> _BlobReader:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc is not None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def _pipes(self) -> tuple[IO[bytes], IO[bytes]]:
        if self.proc is None:
            try:
                self.proc = subprocess.Popen(
                    ["git", "cat-file", "--batch"],
                    cwd=self.repo,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                )
            except FileNotFoundError:
                raise MlopsError(
                    "git is not installed", "install git, then run this again"
                ) from None
        assert self.proc.stdin is not None and self.proc.stdout is not None
        return self.proc.stdin, self.proc.stdout

    def read(self, oid: str, keep: int) -> tuple[int, bytes]:
        """(size, first `keep` bytes) of a blob; the rest is read past, never held."""
        stdin, stdout = self._pipes()
        stdin.write(oid.encode() + b"\n")
        stdin.flush()
        header = stdout.readline().split()
        if len(header) != 3 or header[1] != b"blob":
            raise MlopsError(
                f"git cannot read the blob {oid}", "is the repository intact? try 'git fsck'"
            )
        size = int(header[2])
        kept = stdout.read(min(size, keep))
        left = size - len(kept)
        while left > 0:
            chunk = stdout.read(min(left, 1 << 20))
            if not chunk:
                break
            left -= len(chunk)
        stdout.read(1)  # the newline after each object
        return size, kept
