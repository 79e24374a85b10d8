"""A per-user memo of checks that passed, keyed by the sha256 of everything the check reads.

Validating a spec needs jsonschema (~40 ms to import and compile), which would be most of a
fully cached `mlopsctl run`. A spec whose bytes, schema and mlopsctl version are unchanged since
it last passed cannot fail now, so its check is skipped. Only passes are remembered; losing the
memo costs a re-check, never a wrong answer."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from mlopsctl import __version__


def _folder() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mlopsctl" / "passed"


def memo_key(namespace: str, *parts: bytes) -> str:
    digest = hashlib.sha256(f"{namespace}\0{__version__}\0".encode())
    for part in parts:
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()


def passed_before(key: str) -> bool:
    if os.environ.get("MLOPSCTL_NO_MEMO"):
        return False
    return (_folder() / key[:2] / key).exists()


def remember_pass(key: str) -> None:
    path = _folder() / key[:2] / key
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    except OSError:
        pass  # a read-only home only costs speed
