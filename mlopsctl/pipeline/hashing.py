"""Content digests of local files and folders, remembered by (size, mtime, inode) so that an
unchanged multi-gigabyte data file is not re-read on every run (the same idea as DVC's state
database), plus canonical JSON for cache keys."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from mlopsctl.digest import canonical_json, sha256_bytes, sha256_file

__all__ = ["canonical_json", "path_digest", "sha256_bytes", "sha256_file"]

_lock = threading.Lock()
_memo: dict[str, Any] | None = None


def _state_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mlopsctl" / "file-digests.json"


def _load_memo() -> dict[str, Any]:
    global _memo
    if _memo is None:
        try:
            _memo = json.loads(_state_path().read_text())
        except (OSError, ValueError):
            _memo = {}
    return _memo


def _save_memo() -> None:
    if _memo is None:
        return
    path = _state_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(_memo))
        os.replace(tmp, path)
    except OSError:
        pass  # the memo is only a speed-up; losing it costs a re-hash, never a wrong answer


def path_digest(path: Path) -> str:
    """Digest of a file, or of a folder (its sorted relative paths and file digests)."""
    path = path.resolve()
    if path.is_dir():
        entries = []
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            entries.append([child.relative_to(path).as_posix(), path_digest(child)])
        return sha256_bytes(canonical_json(entries))
    stat = path.stat()
    fingerprint = [stat.st_size, stat.st_mtime_ns, stat.st_ino]
    with _lock:
        memo = _load_memo()
        known = memo.get(str(path))
        if known and known[0] == fingerprint:
            return str(known[1])
    digest = sha256_file(path)
    with _lock:
        memo = _load_memo()
        memo[str(path)] = [fingerprint, digest]
        _save_memo()
    return digest
