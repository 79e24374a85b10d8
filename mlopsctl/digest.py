"""Content digests, one rule for all of mlopsctl: a digest is written ``sha256:<64 hex>``.

Every ``sha256_*`` function here returns that prefixed form; :func:`parse_digest` checks one and
gives back the bare hex (what blob keys and cache keys are named by). Canonical JSON (sorted keys,
no spaces, UTF-8) is what every key and record digest is computed over.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from mlopsctl.errors import UsageError

ALGORITHM = "sha256"
PREFIX = f"{ALGORITHM}:"
HASH_CHUNK = 4 << 20
_HEX_RE = re.compile(r"[0-9a-f]{64}")


def canonical_json(data: Any) -> bytes:
    """Sorted keys, compact separators, UTF-8: equal data give equal bytes."""
    return json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    ).encode()


def format_digest(hex_digest: str) -> str:
    return PREFIX + hex_digest


def parse_digest(digest: str) -> str:
    """The 64-hex part of ``sha256:<hex>``; UsageError for anything else."""
    if isinstance(digest, str):
        algorithm, sep, hex_part = digest.strip().partition(":")
        if sep and algorithm == ALGORITHM and _HEX_RE.fullmatch(hex_part.lower()):
            return hex_part.lower()
    raise UsageError(
        f"invalid digest {digest!r}",
        hint="a digest is 'sha256:' followed by 64 hexadecimal characters",
    )


def is_digest(text: object) -> bool:
    if not isinstance(text, str) or not text.startswith(PREFIX):
        return False
    return _HEX_RE.fullmatch(text[len(PREFIX) :]) is not None


def sha256_bytes(data: bytes) -> str:
    return format_digest(hashlib.sha256(data).hexdigest())


def sha256_json(data: Any) -> str:
    """The digest of ``canonical_json(data)``."""
    return sha256_bytes(canonical_json(data))


def sha256_file(path: str | Path) -> str:
    """Digest of a file, read into one reused buffer: hashlib releases the GIL on big updates,
    so other threads keep running while this one hashes at full speed."""
    digest = hashlib.sha256()
    buf = bytearray(HASH_CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(view):
            digest.update(view[:n])
    return format_digest(digest.hexdigest())


def sha256_tree(path: str | Path) -> str:
    """Digest of a folder: canonical JSON of its sorted relative file paths and file digests.
    (``pipeline.hashing.path_digest`` gives the same value, remembering unchanged files.)"""
    root = Path(path)
    entries = [
        [child.relative_to(root).as_posix(), sha256_file(child)]
        for child in sorted(p for p in root.rglob("*") if p.is_file())
    ]
    return sha256_json(entries)
