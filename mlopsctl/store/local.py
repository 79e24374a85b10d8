"""The local-folder backend: the default store, which needs nothing but a filesystem.

Writes go to a temp file in the target's own directory, are fsynced, then renamed over the key,
so a reader (or a crash) only ever sees the old or the new object. Conditional writes take an
exclusive ``flock`` on one lock file per store: flock locks belong to the open file description,
so they exclude other threads of this process as well as other processes.

The store writes only inside its own folder. A symbolic link anywhere below the root on the way
to a key (a linked ``events/`` or blob folder, a linked object, a linked lock file) makes a write
or delete fail with a StoreError naming the link: each folder is lstat-ed (and created with
mkdir, which never follows a link) one component at a time, and files are created with O_EXCL
and O_NOFOLLOW. The root itself may be a link (a store kept on another disk). Reads still follow
links: they cannot put anything outside the store, and blobs are verified by digest on read.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import os
import stat
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from mlopsctl.errors import (
    AlreadyExists,
    Conflict,
    IntegrityError,
    MlopsError,
    NotFound,
    StoreError,
    StoreUnauthorized,
    UsageError,
)
from mlopsctl.store.base import RESERVED_PREFIX, ObjectInfo, ObjectStore, check_key, check_prefix
from mlopsctl.store.transfer import meter

CHUNK = 1 << 20
TEMP_PREFIX = RESERVED_PREFIX + "tmp-"
LOCK_NAME = RESERVED_PREFIX + "lock"


def _sha256_of(f: io.BufferedReader) -> str:
    digest = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    while n := f.readinto(view):
        digest.update(view[:n])
    return digest.hexdigest()


class LocalStore(ObjectStore):
    scheme = "file"

    def __init__(self, root: str | Path, url: str | None = None) -> None:
        self.root = Path(root).absolute()
        super().__init__(url or self.root.as_uri())

    # -- paths and errors ------------------------------------------------------------------
    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def _os_error(self, exc: OSError, action: str, key: str | None = None) -> MlopsError:
        where = f"{self.root}/{key}" if key else str(self.root)
        if isinstance(exc, PermissionError):
            return StoreUnauthorized(
                f"permission denied to {action} {where}",
                hint="check the permissions of the store folder",
            )
        reason = exc.strerror or str(exc)
        if exc.errno == errno.ENOSPC:
            return StoreError(f"cannot {action} {where}: no space left on the device")
        return StoreError(f"cannot {action} {where}: {reason}")

    def _not_found(self, key: str) -> NotFound:
        return NotFound(f"{key} not found in the store at {self.root}")

    def _link_refused(self, action: str, key: str, link: str) -> StoreError:
        return StoreError(
            f"refusing to {action} {key}: {self.root}/{link} is a symbolic link, and the store "
            "writes only inside its own folder",
            hint="replace the link with a real folder (move what it points at into the store), "
            "or point the store url at the linked folder itself",
        )

    def _check_write_path(self, key: str, *, create: bool, action: str = "write") -> Path | None:
        """The key's path once no folder between the root and the key, nor the key itself, is a
        symbolic link; with `create`, missing folders are made (mkdir never follows a link).
        Without `create`, None when a folder on the way does not exist."""
        return self._check_parts(check_key(key).split("/"), key, create=create, action=action)

    def _check_parts(self, parts: list[str], key: str, *, create: bool, action: str) -> Path | None:
        # Plain strings and os calls: a put pays a few microseconds per folder level.
        root = str(self.root)
        if create and not os.path.isdir(root):
            os.makedirs(root, exist_ok=True)
        folder = root
        last = len(parts) - 1
        for depth, name in enumerate(parts):
            folder = f"{folder}/{name}"
            try:
                mode = os.lstat(folder).st_mode
            except FileNotFoundError:
                if depth == last:
                    break  # a new key
                if not create:
                    return None
                try:
                    os.mkdir(folder)
                    continue
                except FileExistsError:
                    mode = os.lstat(folder).st_mode  # made by another writer meanwhile
            if stat.S_ISLNK(mode):
                raise self._link_refused(action, key, "/".join(parts[: depth + 1]))
        return Path(folder)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.root / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise self._link_refused("lock", "the store", LOCK_NAME) from None
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # -- writing ---------------------------------------------------------------------------
    def _write_temp(self, target: Path, chunks: Iterable[bytes]) -> tuple[Path, str]:
        """Write ``chunks`` durably to a temp file beside ``target``; returns it and the sha256.
        The caller has checked (and made) the folders on the way: see _check_write_path."""
        tmp = target.parent / f"{TEMP_PREFIX}{uuid.uuid4().hex}"
        # O_EXCL with mode 0o666 lets the umask decide the final permissions, as for any file
        # the user creates; O_EXCL also refuses a link planted at the temp name.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
        try:
            digest = hashlib.sha256()
            for chunk in chunks:
                digest.update(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        os.close(fd)
        return tmp, digest.hexdigest()

    @staticmethod
    def _sync_dir(path: Path) -> None:
        # The rename is only durable once the directory entry is on disk.
        with contextlib.suppress(OSError):
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _commit(
        self,
        key: str,
        chunks: Iterable[bytes],
        *,
        if_absent: bool = False,
        expected: str | None = None,
        check_expected: bool = False,
    ) -> str:
        try:
            target = self._check_write_path(key, create=True)
        except OSError as exc:
            raise self._os_error(exc, "write", key) from None
        assert target is not None
        if if_absent and target.exists():
            # Fail fast before copying what may be a large file; re-checked under the lock.
            raise AlreadyExists(f"{key} already exists in the store at {self.root}")
        try:
            tmp, etag = self._write_temp(target, chunks)
        except MlopsError:
            raise
        except OSError as exc:
            raise self._os_error(exc, "write", key) from None
        try:
            with self._locked():
                # Checked again under the lock: a link could have been put there meanwhile.
                self._check_write_path(key, create=False)
                if if_absent and target.exists():
                    raise AlreadyExists(f"{key} already exists in the store at {self.root}")
                if check_expected:
                    current = self._etag_or_none(target)
                    if current != expected:
                        state = "does not exist" if current is None else "has changed"
                        raise Conflict(
                            f"{key} {state} since it was read (compare-and-swap lost)",
                            hint="read it again and retry",
                        )
                os.replace(tmp, target)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            if isinstance(exc, OSError):
                raise self._os_error(exc, "write", key) from None
            raise
        self._sync_dir(target.parent)
        return etag

    def put(self, key: str, data: bytes) -> str:
        return self._commit(key, [data])

    def put_if_absent(self, key: str, data: bytes) -> str:
        return self._commit(key, [data], if_absent=True)

    def compare_and_swap(self, key: str, data: bytes, expected_etag: str | None) -> str:
        return self._commit(key, [data], expected=expected_etag, check_expected=True)

    def put_file(self, key: str, path: str | Path, *, if_absent: bool = False) -> str:
        try:
            source = open(path, "rb")  # noqa: SIM115 - closed below, after the commit
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from None
        with source, meter("upload", key, os.fstat(source.fileno()).st_size) as bar:

            def chunks() -> Iterator[bytes]:
                while chunk := source.read(CHUNK):
                    bar.advance(len(chunk))
                    yield chunk

            return self._commit(key, chunks(), if_absent=if_absent)

    # -- reading ---------------------------------------------------------------------------
    def _etag_or_none(self, path: Path) -> str | None:
        try:
            with open(path, "rb") as f:
                return _sha256_of(f)
        except FileNotFoundError:
            return None

    def _open(self, key: str) -> io.BufferedReader:
        path = self._path(key)
        try:
            return open(path, "rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise self._not_found(key) from None
        except OSError as exc:
            raise self._os_error(exc, "read", key) from None

    def get(self, key: str) -> bytes:
        with self._open(key) as f:
            return f.read()

    def get_versioned(self, key: str) -> tuple[bytes, str]:
        # One open file: a concurrent rename swaps the directory entry, not this inode, so the
        # bytes and the etag computed from them always belong together.
        data = self.get(key)
        return data, hashlib.sha256(data).hexdigest()

    def iter_chunks(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        f = self._open(key)

        def chunks() -> Iterator[bytes]:
            with f:
                while chunk := f.read(chunk_size):
                    yield chunk

        return chunks()

    def get_file(self, key: str, dest: str | Path, *, expect_sha256: str | None = None) -> int:
        dest = Path(dest)
        with self._open(key) as source:
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                tmp = dest.parent / f".{dest.name}.{TEMP_PREFIX}{uuid.uuid4().hex}"
                out = open(tmp, "xb")  # noqa: SIM115 - closed in the finally below
            except OSError as exc:
                raise StoreError(f"cannot write {dest}: {exc.strerror or exc}") from None
            done = False
            try:
                digest = hashlib.sha256()
                size = 0
                total = os.fstat(source.fileno()).st_size
                with out, meter("download", key, total) as bar:
                    while chunk := source.read(CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                        size += len(chunk)
                        bar.advance(len(chunk))
                got = digest.hexdigest()
                if expect_sha256 is not None and got != expect_sha256.lower():
                    raise IntegrityError(
                        f"{key} in the store at {self.root} is corrupt: its sha256 is {got}, "
                        f"expected {expect_sha256}",
                        hint="delete it and store the original again",
                    )
                os.replace(tmp, dest)
                done = True
                return size
            except OSError as exc:
                raise StoreError(f"cannot write {dest}: {exc.strerror or exc}") from None
            finally:
                if not done:
                    with contextlib.suppress(OSError):
                        tmp.unlink()

    # -- metadata --------------------------------------------------------------------------
    def stat(self, key: str) -> ObjectInfo:
        with self._open(key) as f:
            size = os.fstat(f.fileno()).st_size
            etag = _sha256_of(f)
        return ObjectInfo(key=key, size=size, etag=etag)

    def exists(self, key: str) -> bool:
        # Cheaper than stat, which hashes the whole object to produce its etag.
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        # Empty directories are left behind on purpose: removing them would race with a
        # concurrent writer that has just created its temp file's parent.
        try:
            path = self._check_write_path(key, create=False, action="delete")
            if path is not None:
                path.unlink()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            pass
        except OSError as exc:
            raise self._os_error(exc, "delete", key) from None

    def _walk(self, prefix: str) -> list[tuple[str, Path]]:
        """(key, path) of every object under ``prefix``, in key order."""
        check_prefix(prefix)
        # Walk only the deepest directory the prefix names, then filter on the full prefix.
        # Keys are sorted as whole strings: a directory walk would put "a/b" before "a-c".
        head, _, _ = prefix.rpartition("/")
        start = self.root.joinpath(*head.split("/")) if head else self.root
        found: list[tuple[str, Path]] = []
        try:
            for dirpath, dirnames, filenames in os.walk(start):
                dirnames[:] = [d for d in dirnames if not d.startswith(RESERVED_PREFIX)]
                rel = os.path.relpath(dirpath, self.root)
                base = "" if rel == "." else rel.replace(os.sep, "/") + "/"
                for name in filenames:
                    if name.startswith(RESERVED_PREFIX):
                        continue
                    key = base + name
                    if key.startswith(prefix):
                        found.append((key, Path(dirpath, name)))
        except OSError as exc:
            raise self._os_error(exc, "list", prefix or None) from None
        found.sort()
        return found

    def list(self, prefix: str = "") -> Iterator[str]:
        return iter([key for key, _ in self._walk(prefix)])

    def list_info(self, prefix: str = "") -> Iterator[ObjectInfo]:
        infos = []
        for key, path in self._walk(prefix):
            try:
                st = path.stat()
            except FileNotFoundError:
                continue  # deleted since the walk
            infos.append(ObjectInfo(key=key, size=st.st_size, etag="", modified=st.st_mtime))
        return iter(infos)

    # -- interrupted writes ----------------------------------------------------------------
    def stale_uploads(self, older_than_s: float) -> Iterator[str]:
        """Temp files of writers killed before their rename, as paths relative to the root."""
        cutoff = time.time() - older_than_s
        stale = []
        for dirpath, _, filenames in os.walk(self.root):
            for name in filenames:
                if not name.startswith(TEMP_PREFIX):
                    continue
                path = Path(dirpath, name)
                try:
                    if path.stat().st_mtime <= cutoff:
                        stale.append(path.relative_to(self.root).as_posix())
                except FileNotFoundError:
                    continue
        return iter(sorted(stale))

    def abort_upload(self, upload: str) -> None:
        parts = upload.split("/")
        if not parts[-1].startswith(TEMP_PREFIX) or any(p in ("", ".", "..") for p in parts):
            raise UsageError(f"not a leftover temp file of this store: {upload!r}")
        with contextlib.suppress(FileNotFoundError):
            # Temp names are reserved, so not valid keys: the parts were checked above.
            path = self._check_parts(parts, upload, create=False, action="delete")
            if path is not None:
                path.unlink()

    # -- health ----------------------------------------------------------------------------
    def probe(self) -> None:
        """Create the root if needed and check that it is writable and lockable."""
        probe_key = f"_probe/{uuid.uuid4().hex}"
        try:
            self.put_if_absent(probe_key, b"probe")
        finally:
            self.delete(probe_key)
