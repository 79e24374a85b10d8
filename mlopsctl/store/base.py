"""The object-store interface every backend implements (local folder, S3).

Keys are '/'-separated paths relative to the store root, e.g. ``runs/abc.json``. An *etag* is an
opaque version token of one object's current content: whatever ``stat``/``get_versioned``
return is what ``compare_and_swap`` expects back.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

# Names a backend uses for its own bookkeeping (temp files, lock files). No key may contain a
# segment starting with it, so listing can skip them without hiding a real object.
RESERVED_PREFIX = ".mlopsctl-"


def check_key(key: str) -> str:
    """``key`` if it is a valid store key; UsageError otherwise.

    Keys often carry user input (model names, aliases), so a bad one is reported like a bad
    argument rather than as a store failure. '.'/'..' and empty segments are refused because the
    local backend maps keys onto paths and must never leave its root.
    """
    from mlopsctl.errors import UsageError

    problem = None
    if not isinstance(key, str) or not key:
        problem = "it is empty"
    elif key.startswith("/") or key.endswith("/"):
        problem = "it must not start or end with '/'"
    elif "\\" in key or "\x00" in key:
        problem = "it must not contain a backslash or a NUL character"
    else:
        for part in key.split("/"):
            if part in ("", ".", ".."):
                problem = "it must not contain empty, '.' or '..' segments"
                break
            if part.startswith(RESERVED_PREFIX):
                problem = f"segments starting with {RESERVED_PREFIX!r} are reserved"
                break
    if problem:
        raise UsageError(f"invalid store key {key!r}: {problem}")
    return key


def check_prefix(prefix: str) -> str:
    """A list prefix: any leading part of a valid key (so '' and 'runs/' are fine)."""
    from mlopsctl.errors import UsageError

    if prefix.startswith("/") or "\x00" in prefix or "\\" in prefix:
        raise UsageError(f"invalid store prefix {prefix!r}")
    if any(part in (".", "..") for part in prefix.split("/")[:-1]):
        raise UsageError(f"invalid store prefix {prefix!r}: '.' and '..' segments are not keys")
    return prefix


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str
    # Last modification, seconds since the epoch; None where the backend does not say.
    modified: float | None = None


class ObjectStore(abc.ABC):
    """One store root. Methods raise subclasses of MlopsError (mlopsctl.errors), never raw
    backend exceptions: NotFound, AlreadyExists, Conflict, IntegrityError, StoreUnreachable."""

    scheme: ClassVar[str]

    def __init__(self, url: str) -> None:
        self.url = url

    # -- bytes ---------------------------------------------------------------------------
    @abc.abstractmethod
    def get(self, key: str) -> bytes:
        """The object's bytes. NotFound when absent."""

    @abc.abstractmethod
    def get_versioned(self, key: str) -> tuple[bytes, str]:
        """The object's bytes and etag, read together (no torn read). NotFound when absent."""

    @abc.abstractmethod
    def put(self, key: str, data: bytes) -> str:
        """Unconditional write (last writer wins); returns the new etag. Readers never see a
        partial object."""

    @abc.abstractmethod
    def put_if_absent(self, key: str, data: bytes) -> str:
        """Create the object only if no object has that key; AlreadyExists otherwise."""

    @abc.abstractmethod
    def compare_and_swap(self, key: str, data: bytes, expected_etag: str | None) -> str:
        """Replace the object only if its etag is still ``expected_etag`` (None: only if it
        does not exist). Conflict when it changed; returns the new etag."""

    # -- files (streamed, never whole in memory) ------------------------------------------
    @abc.abstractmethod
    def put_file(self, key: str, path: str | Path, *, if_absent: bool = False) -> str:
        """Upload a file by streaming it. With ``if_absent`` it is a put_if_absent (also for
        objects large enough to need a multipart upload)."""

    @abc.abstractmethod
    def get_file(self, key: str, dest: str | Path, *, expect_sha256: str | None = None) -> int:
        """Download to ``dest`` by streaming; returns the size. The file appears at ``dest`` only
        when complete, and, with ``expect_sha256`` (hex), only when its sha256 matches:
        IntegrityError otherwise, leaving ``dest`` untouched."""

    @abc.abstractmethod
    def iter_chunks(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """Stream the object's bytes. NotFound when absent."""

    # -- metadata ----------------------------------------------------------------------
    @abc.abstractmethod
    def stat(self, key: str) -> ObjectInfo:
        """Size and etag. NotFound when absent."""

    def exists(self, key: str) -> bool:
        from mlopsctl.errors import NotFound

        try:
            self.stat(key)
        except NotFound:
            return False
        return True

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; a missing key is not an error."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]:
        """Every key under ``prefix`` (a plain string prefix), in lexicographic order, paging
        through as many keys as there are."""

    def list_info(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Size and modification time of every key under ``prefix``, in key order (for garbage
        collection). ``etag`` is empty where a backend would have to read every object to give
        it (the local folder); use ``stat`` for a CAS etag."""
        from mlopsctl.errors import NotFound

        for key in self.list(prefix):
            try:
                yield self.stat(key)
            except NotFound:
                continue  # deleted since it was listed

    # -- interrupted writes --------------------------------------------------------------
    def stale_uploads(self, older_than_s: float) -> Iterator[str]:
        """Leftovers of writers that died mid-upload (S3 multipart uploads never completed,
        temp files of the local folder) started more than ``older_than_s`` seconds ago, as
        opaque ids for ``abort_upload``."""
        return iter(())

    def abort_upload(self, upload: str) -> None:  # noqa: B027 - nothing to do by default
        """Discard one leftover named by ``stale_uploads``; one already gone is not an error."""

    # -- health ------------------------------------------------------------------------
    @abc.abstractmethod
    def probe(self) -> None:
        """Check the store is reachable and really honours put_if_absent and compare_and_swap.
        Raises StoreUnreachable / StoreUnsafe with a one-line reason."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and pools."""

    def __enter__(self) -> ObjectStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"
