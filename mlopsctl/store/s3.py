"""The S3 backend (AWS S3 or any S3-compatible server such as MinIO or SeaweedFS).

boto3/botocore are imported only when the first request is made, so importing this module is
cheap and a missing boto3 becomes a one-line error with the fix instead of an ImportError.
Credentials come only from the standard AWS chain (environment, ~/.aws, a profile); the
endpoint from the options or boto3's own AWS_ENDPOINT_URL(_S3) variables.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mlopsctl.errors import (
    AlreadyExists,
    BucketMissing,
    ConfigError,
    Conflict,
    IntegrityError,
    MlopsError,
    NotFound,
    StoreError,
    StoreUnauthorized,
    StoreUnreachable,
    StoreUnsafe,
    UsageError,
)
from mlopsctl.store.base import RESERVED_PREFIX, ObjectInfo, ObjectStore, check_key, check_prefix
from mlopsctl.store.transfer import meter

MiB = 1 << 20
DEFAULT_PART_SIZE = 8 * MiB
MIN_PART_SIZE = 5 * MiB  # S3 refuses smaller parts (except the last one)
MAX_PARTS = 10_000
# Enough parallel streams for a remote endpoint without starving a small machine, where the
# client's CPU competes with everything else (a local server, the hashing).
DEFAULT_WORKERS = min(8, max(4, os.cpu_count() or 1))
DEFAULT_MAX_ATTEMPTS = 4
STREAM_CHUNK = 1 * MiB
TEMP_PREFIX = RESERVED_PREFIX + "tmp-"

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_AUTH_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "InvalidToken",
    "ExpiredToken",
    "TokenRefreshRequired",
    "AuthorizationHeaderMalformed",
    "InvalidClientTokenId",
    "AllAccessDisabled",
    "403",
}
_CONDITION_CODES = {"PreconditionFailed", "ConditionalRequestConflict", "412"}
_MISSING_CODES = {"NoSuchKey", "NotFound", "404"}
_BUSY_CODES = {
    "SlowDown",
    "ServiceUnavailable",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "InternalError",
    "500",
    "503",
}
_UPLOAD_ID = "?uploadId="
# Stands for "some other version": no real object has an all-zero MD5 etag.
_STALE_ETAG = "0" * 32


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> (bucket, "some/prefix/"); ConfigError when malformed."""
    if not url.startswith("s3://"):
        raise ConfigError(f"not an S3 URL: {url!r}", hint="write it as s3://bucket/prefix")
    bucket, _, prefix = url[len("s3://") :].partition("/")
    if not _BUCKET_RE.match(bucket) or ".." in bucket:
        raise ConfigError(
            f"invalid bucket name {bucket!r} in {url!r}",
            hint="bucket names have 3-63 lowercase letters, digits, '.' or '-'",
        )
    prefix = prefix.strip("/")
    if prefix:
        try:
            check_key(prefix)
        except UsageError as exc:
            raise ConfigError(f"invalid prefix in the store URL {url!r}: {exc.message}") from None
        prefix += "/"
    return bucket, prefix


def _quote(etag: str) -> str:
    return etag if etag.startswith('"') else f'"{etag}"'


def _unquote(etag: str | None) -> str:
    return (etag or "").strip('"')


class S3Store(ObjectStore):
    scheme = "s3"

    def __init__(
        self,
        url: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        profile: str | None = None,
        addressing_style: str | None = None,
        part_size: int = DEFAULT_PART_SIZE,
        workers: int = DEFAULT_WORKERS,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        connect_timeout: float = 3.0,
        read_timeout: float = 60.0,
    ) -> None:
        super().__init__(url)
        self.bucket, self.prefix = parse_s3_url(url)
        if addressing_style not in (None, "auto", "path", "virtual"):
            raise ConfigError(
                f"invalid S3 addressing_style {addressing_style!r}",
                hint="use auto, path or virtual",
            )
        if part_size < MIN_PART_SIZE:
            raise ConfigError(f"S3 part size must be at least {MIN_PART_SIZE // MiB} MiB")
        self.endpoint_url = endpoint_url or None
        self.region = region or None
        self.profile = profile or None
        self.addressing_style = addressing_style
        self.part_size = part_size
        self.workers = max(1, workers)
        self.max_attempts = max(1, max_attempts)
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._client_obj: Any = None
        self._bulk_client_obj: Any = None
        self._session: Any = None
        self._lock = threading.Lock()
        self._probe_lock = threading.Lock()
        self._probe_result: StoreUnsafe | bool | None = None
        self._bucket_seen = False
        self._fast_ok = True

    # -- client ----------------------------------------------------------------------------
    def _configured_endpoint(self) -> str | None:
        return (
            self.endpoint_url
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
            or None
        )

    @property
    def endpoint(self) -> str:
        """Where requests go, for messages."""
        if self._client_obj is not None:
            return str(self._client_obj.meta.endpoint_url)
        return self._configured_endpoint() or "https://s3.amazonaws.com"

    @property
    def client(self) -> Any:
        """The client for requests and small objects (records): SigV4 signs their bodies."""
        if self._client_obj is None:
            with self._lock:
                if self._client_obj is None:
                    self._client_obj = self._make_client(sign_payload=True)
        return self._client_obj

    @property
    def bulk_client(self) -> Any:
        """The client for large uploads. It does not hash each part into the signature (over
        plain HTTP botocore otherwise sha256es every byte once more): TLS protects the bytes on
        HTTPS, and every blob's sha256 is verified whenever it is read."""
        if self._bulk_client_obj is None:
            with self._lock:
                if self._bulk_client_obj is None:
                    self._bulk_client_obj = self._make_client(sign_payload=False)
        return self._bulk_client_obj

    def _make_client(self, *, sign_payload: bool) -> Any:
        try:
            # botocore alone: boto3's resource layer and s3transfer are ~70 ms of imports that a
            # store making its own multipart transfers never uses.
            import botocore.session
            from botocore.config import Config
            from botocore.exceptions import BotoCoreError, ProfileNotFound
        except ImportError:
            raise ConfigError(
                "the S3 store needs botocore, which is not installed", hint="pip install boto3"
            ) from None
        s3_config: dict[str, Any] = {}
        style = self.addressing_style
        if style is None and self._configured_endpoint():
            # S3-compatible servers (MinIO, SeaweedFS, localhost) rarely have the wildcard DNS
            # that virtual-hosted addressing needs.
            style = "path"
        if style:
            s3_config["addressing_style"] = style
        if not sign_payload:
            s3_config["payload_signing_enabled"] = False
        config = Config(
            retries={"mode": "standard", "total_max_attempts": self.max_attempts},
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            max_pool_connections=max(10, self.workers * 2 + 2),
            # We verify every blob's sha256 ourselves; CRCs on top only cost CPU.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3=s3_config or None,
            user_agent_extra="mlopsctl",
        )
        try:
            if self._session is None:
                self._session = botocore.session.Session(profile=self.profile)
            return self._session.create_client(
                "s3", endpoint_url=self.endpoint_url, region_name=self.region, config=config
            )
        except ProfileNotFound:
            raise ConfigError(
                f"the AWS profile {self.profile!r} does not exist",
                hint="check store.s3.profile in mlops.yaml, AWS_PROFILE and ~/.aws/config",
            ) from None
        except ValueError as exc:
            # botocore rejects a malformed endpoint URL with a bare ValueError.
            raise ConfigError(
                f"cannot use the S3 endpoint {self._configured_endpoint()!r}: {exc}",
                hint="check store.s3.endpoint_url in mlops.yaml or AWS_ENDPOINT_URL",
            ) from None
        except BotoCoreError as exc:
            raise self._translate(exc, "connect to") from None

    def close(self) -> None:
        clients = (self._client_obj, self._bulk_client_obj)
        self._client_obj = self._bulk_client_obj = None
        for client in clients:
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()

    # -- errors ----------------------------------------------------------------------------
    def _uri(self, key: str | None = None) -> str:
        return f"s3://{self.bucket}/{self.prefix}{key or ''}"

    def _translate(self, exc: BaseException, action: str, key: str | None = None) -> BaseException:
        """The MlopsError that explains ``exc`` in one line (or ``exc`` itself when it is not
        a botocore error). ``action`` names the operation ("read", "put_if_absent", ...)."""
        try:
            from botocore import exceptions as bex
        except ImportError:
            return exc
        where = self._uri(key)
        if isinstance(exc, (bex.NoCredentialsError, bex.PartialCredentialsError)):
            return StoreUnauthorized(
                f"no usable AWS credentials for {where}",
                hint="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE "
                "(see ~/.aws/credentials)",
            )
        if isinstance(exc, bex.ConnectionError):
            return StoreUnreachable(
                f"cannot reach the S3 endpoint {self.endpoint}",
                hint="is the server running? check store.s3.endpoint_url in mlops.yaml "
                "or AWS_ENDPOINT_URL",
            )
        if isinstance(exc, bex.HTTPClientError):
            return StoreUnreachable(
                f"the S3 endpoint {self.endpoint} stopped answering while trying to "
                f"{action} {where} ({type(exc).__name__})",
                hint="is the server overloaded or down? try again",
            )
        if isinstance(exc, bex.ClientError):
            return self._translate_client_error(exc, action, key)
        if isinstance(exc, bex.BotoCoreError):
            return StoreError(f"cannot {action} {where}: {str(exc).splitlines()[0]}")
        return exc

    def _translate_client_error(self, exc: Any, action: str, key: str | None) -> MlopsError:
        response = getattr(exc, "response", {}) or {}
        error = response.get("Error", {}) or {}
        meta = response.get("ResponseMetadata", {}) or {}
        code = str(error.get("Code") or "")
        status = int(meta.get("HTTPStatusCode") or 0)
        attempts = int(meta.get("RetryAttempts") or 0) + 1
        message = str(error.get("Message") or "").replace("\n", " ").strip()
        where = self._uri(key)
        if code == "NoSuchBucket":
            return BucketMissing(
                f"the bucket {self.bucket!r} does not exist at {self.endpoint}",
                hint=f"create it (aws s3 mb s3://{self.bucket}) or fix store.url in mlops.yaml",
            )
        if code in _AUTH_CODES or status == 403:
            return StoreUnauthorized(
                f"the S3 endpoint {self.endpoint} refused access to {where} ({code or status})",
                hint="check the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE,"
                f" ~/.aws/credentials) and that they may {action} in bucket {self.bucket!r}",
            )
        if code in _CONDITION_CODES or status == 412 or (status == 404 and action == "cas"):
            # SeaweedFS answers If-Match on a missing key with 412, AWS with 404: both mean the
            # object is not the version the caller read.
            if action == "put_if_absent":
                return AlreadyExists(f"{where} already exists")
            return Conflict(
                f"{where} changed since it was read (compare-and-swap lost)",
                hint="read it again and retry",
            )
        if code in _MISSING_CODES or status == 404:
            return NotFound(f"{where} not found")
        detail = f"{code or 'HTTP'} {status}".strip() + (f": {message}" if message else "")
        if code in _BUSY_CODES or status >= 500:
            return StoreError(
                f"cannot {action} {where}: the server answered {detail} "
                f"after {attempts} attempt{'s' if attempts != 1 else ''}",
                hint="the store is overloaded or failing; try again later",
            )
        return StoreError(f"cannot {action} {where}: {detail}")

    def _call(self, action: str, key: str | None, fn: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return fn(**kwargs)
        except MlopsError:
            raise
        except Exception as exc:
            translated = self._translate(exc, action, key)
            if translated is exc:
                raise
            raise translated from None

    def _full(self, key: str) -> str:
        return self.prefix + check_key(key)

    # -- bytes -----------------------------------------------------------------------------
    def get(self, key: str) -> bytes:
        return self.get_versioned(key)[0]

    def get_versioned(self, key: str) -> tuple[bytes, str]:
        full = self._full(key)
        fast = self._fast_get(key, full)
        if fast is not None:
            return fast

        def fetch() -> tuple[bytes, str]:
            response = self.client.get_object(Bucket=self.bucket, Key=full)
            with contextlib.closing(response["Body"]) as body:
                return body.read(), _unquote(response.get("ETag"))

        return self._call("read", key, fetch)

    def _fast_get(self, key: str, full: str) -> tuple[bytes, str] | None:
        """Records through the small signed GET of s3fast while it works (read commands then
        never load botocore); after its first miss, botocore alone."""
        if not self._fast_ok:
            return None
        from mlopsctl.store import s3fast

        target = s3fast.target_for(
            self.bucket, self._configured_endpoint(), self.region, self.addressing_style
        )
        if target is None:
            self._fast_ok = False
            return None
        try:
            found = s3fast.fetch(target, full, timeout=self.connect_timeout)
        except s3fast.Missing:
            raise NotFound(f"{self._uri(key)} not found") from None
        if found is None:
            self._fast_ok = False  # botocore will retry and explain whatever went wrong
        return found

    def put(self, key: str, data: bytes) -> str:
        return self._put(key, data, "write")

    def _put(self, key: str, data: bytes, action: str, **cond: str) -> str:
        response = self._call(
            action,
            key,
            self.client.put_object,
            Bucket=self.bucket,
            Key=self._full(key),
            Body=data,
            **cond,
        )
        return _unquote(response.get("ETag"))

    def put_if_absent(self, key: str, data: bytes) -> str:
        self._require_safe()
        return self._put(key, data, "put_if_absent", IfNoneMatch="*")

    def compare_and_swap(self, key: str, data: bytes, expected_etag: str | None) -> str:
        self._require_safe()
        return self._cas(key, data, expected_etag)

    def _cas(self, key: str, data: bytes, expected_etag: str | None) -> str:
        if expected_etag is None:
            # A key that already exists means the caller's "absent" view is stale: a conflict.
            return self._put(key, data, "cas", IfNoneMatch="*")
        return self._put(key, data, "cas", IfMatch=_quote(expected_etag))

    # -- files -----------------------------------------------------------------------------
    def put_file(self, key: str, path: str | Path, *, if_absent: bool = False) -> str:
        path = Path(path)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from None
        cond = {"IfNoneMatch": "*"} if if_absent else {}
        action = "put_if_absent" if if_absent else "write"
        if size <= self.part_size:
            full = self._full(key)
            with open(path, "rb") as f, meter("upload", key, size) as bar:
                response = self._call(
                    action,
                    key,
                    self.bulk_client.put_object,
                    Bucket=self.bucket,
                    Key=full,
                    Body=f,
                    ContentLength=size,
                    **cond,
                )
                bar.advance(size)
            return _unquote(response.get("ETag"))
        if if_absent and self.exists(key):
            # Saves uploading what is already there; the conditional complete still decides.
            raise AlreadyExists(f"{self._uri(key)} already exists")
        return self._multipart_upload(key, path, size, cond, action)

    def _part_size_for(self, size: int) -> int:
        part = self.part_size
        while -(-size // part) > MAX_PARTS:
            part *= 2
        return part

    def _multipart_upload(
        self, key: str, path: Path, size: int, cond: dict[str, str], action: str
    ) -> str:
        # boto3's managed upload_file does not pass IfNoneMatch to the final complete call, so
        # this drives create/upload_part/complete itself.
        full = self._full(key)
        part = self._part_size_for(size)
        client = self.bulk_client
        created = self._call(
            action, key, client.create_multipart_upload, Bucket=self.bucket, Key=full
        )
        upload_id = created["UploadId"]
        # One part-sized buffer per worker thread, refilled in place: no fresh allocation (and
        # page faults) per part.
        buffers = threading.local()
        try:
            with (
                open(path, "rb") as f,
                meter("upload", key, size) as bar,
                ThreadPoolExecutor(self.workers) as pool,
            ):
                fd = f.fileno()

                def upload(number: int) -> dict[str, Any]:
                    offset = (number - 1) * part
                    length = min(part, size - offset)
                    buf = getattr(buffers, "buf", None)
                    if buf is None or len(buf) != length:
                        buf = buffers.buf = bytearray(length)
                    _pread_into(fd, buf, offset, path)
                    response = self._call(
                        action,
                        key,
                        client.upload_part,
                        Bucket=self.bucket,
                        Key=full,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=buf,
                        ContentLength=length,
                    )
                    bar.advance(length)
                    return {"PartNumber": number, "ETag": response["ETag"]}

                count = -(-size // part)
                futures = [pool.submit(upload, n) for n in range(1, count + 1)]
                try:
                    parts = [future.result() for future in futures]
                except BaseException:
                    for future in futures:
                        future.cancel()
                    raise
            response = self._call(
                action,
                key,
                client.complete_multipart_upload,
                Bucket=self.bucket,
                Key=full,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
                **cond,
            )
        except BaseException:
            with contextlib.suppress(Exception):
                client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)
            raise
        return _unquote(response.get("ETag"))

    def _open_range(
        self, key: str, start: int, end: int, etag: str | None
    ) -> tuple[Any, int, str, bool]:
        """GET bytes start..end (inclusive); returns once the headers are in, with the
        unread body, the object's total size, its etag, and whether the server sent the
        whole object instead of the range."""
        kwargs: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": self._full(key),
            "Range": f"bytes={start}-{end}",
        }
        if etag:
            # Every part must come from the version the first part came from.
            kwargs["IfMatch"] = _quote(etag)

        def fetch() -> tuple[Any, int, str, bool]:
            from botocore.exceptions import ClientError

            try:
                response = self.client.get_object(**kwargs)
            except ClientError as exc:
                if start != 0 or exc.response.get("Error", {}).get("Code") != "InvalidRange":
                    raise
                # Only an empty object has no byte 0: fetch it whole.
                del kwargs["Range"]
                response = self.client.get_object(**kwargs)
            content_range = response.get("ContentRange") or ""
            whole = "/" not in content_range
            if not whole:
                total = int(content_range.rpartition("/")[2])
            elif start == 0:
                total = int(response.get("ContentLength") or 0)
            else:
                response["Body"].close()
                raise StoreError(
                    f"the S3 endpoint {self.endpoint} ignored the Range header of a GET",
                    hint="use a server that supports ranged GETs",
                )
            return response["Body"], total, _unquote(response.get("ETag")), whole

        try:
            return self._call("read", key, fetch)
        except Conflict:
            raise StoreError(
                f"{self._uri(key)} was replaced while it was being downloaded", hint="try again"
            ) from None

    def _read_body(
        self, key: str, body: Any, buf: memoryview, offset: int, *, close: bool = True
    ) -> None:
        """Fill ``buf`` from a response body (the bytes starting at ``offset``)."""
        done = 0
        length = len(buf)
        readinto = getattr(body, "readinto", None)
        try:
            with contextlib.closing(body) if close else contextlib.nullcontext(body):
                while done < length:
                    if readinto is not None:
                        got = readinto(buf[done : done + STREAM_CHUNK])
                    else:
                        chunk = body.read(min(STREAM_CHUNK, length - done))
                        got = len(chunk)
                        buf[done : done + got] = chunk
                    if not got:
                        break
                    done += got
        except MlopsError:
            raise
        except Exception as exc:
            translated = self._translate(exc, "read", key)
            if translated is exc:
                raise
            raise translated from None
        if done != length:
            raise StoreError(
                f"{self._uri(key)}: short read at byte {offset} ({done} of {length} bytes)",
                hint="try again",
            )

    def _copy_whole(self, key: str, body: Any, out: Any, digest: Any, total: int) -> None:
        """A server that ignored the Range header sent everything: stream it as it comes."""
        buf = bytearray(STREAM_CHUNK)
        done = 0
        while done < total:
            view = memoryview(buf)[: min(STREAM_CHUNK, total - done)]
            self._read_body(key, body, view, done, close=False)
            _write_all(out, view)
            digest.update(view)
            done += len(view)
        body.close()

    def get_file(self, key: str, dest: str | Path, *, expect_sha256: str | None = None) -> int:
        """Parallel ranged GETs into a small pool of part buffers. Each worker writes its part
        at its offset; the main thread hashes the parts in order as they complete and recycles
        their buffers, so hashing overlaps the download and memory stays at a few parts."""
        dest = Path(dest)
        part = self.part_size
        body, total, etag, whole = self._open_range(key, 0, part - 1, None)
        count = 1 if whole else max(1, -(-total // part))
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.parent / f".{dest.name}.{TEMP_PREFIX}{uuid.uuid4().hex}"
            out = open(tmp, "xb", buffering=0)  # noqa: SIM115 - closed in the finally below
        except OSError as exc:
            body.close()
            raise StoreError(f"cannot write {dest}: {exc.strerror or exc}") from None
        done = False
        bar = meter("download", key, total)
        try:
            digest = hashlib.sha256()
            if whole:
                self._copy_whole(key, body, out, digest, total)
                bar.advance(total)
                count = 0
            free = [bytearray(min(part, total)) for _ in range(min(count, self.workers + 2))]

            write_lock = threading.Lock()

            def fetch(index: int, buf: bytearray, first_body: Any = None) -> memoryview:
                start = index * part
                length = min(total - start, part)
                view = memoryview(buf)[:length]
                part_body = first_body
                if part_body is None:
                    part_body, _, _, _ = self._open_range(key, start, start + length - 1, etag)
                self._read_body(key, part_body, view, start)
                try:
                    # One writer at a time: concurrent writes to one file contend for its
                    # inode lock inside the kernel, which spins and burns the CPU the server
                    # and the hashing need; waiting here sleeps instead.
                    with write_lock:
                        _pwrite_all(out.fileno(), view, start)
                except OSError as exc:
                    raise StoreError(f"cannot write {dest}: {exc.strerror or exc}") from None
                return view

            with ThreadPoolExecutor(self.workers) as pool:
                futures = {0: pool.submit(fetch, 0, free.pop(), body)} if count else {}
                next_submit = 1
                try:
                    for index in range(count):
                        while next_submit < count and free:
                            futures[next_submit] = pool.submit(fetch, next_submit, free.pop())
                            next_submit += 1
                        view = futures.pop(index).result()
                        bar.advance(len(view))
                        digest.update(view)
                        free.append(view.obj)  # type: ignore[arg-type]
                        view.release()
                except BaseException:
                    for future in futures.values():
                        future.cancel()
                    raise
            got = digest.hexdigest()
            if expect_sha256 is not None and got != expect_sha256.lower():
                raise IntegrityError(
                    f"{self._uri(key)} is corrupt: its sha256 is {got}, expected {expect_sha256}",
                    hint="delete it and store the original again",
                )
            out.close()
            os.replace(tmp, dest)
            done = True
            return total
        except OSError as exc:
            raise StoreError(f"cannot write {dest}: {exc.strerror or exc}") from None
        finally:
            bar.close()
            body.close()
            out.close()
            if not done:
                with contextlib.suppress(OSError):
                    tmp.unlink()

    def iter_chunks(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        full = self._full(key)
        response = self._call("read", key, self.client.get_object, Bucket=self.bucket, Key=full)
        body = response["Body"]

        def chunks() -> Iterator[bytes]:
            with contextlib.closing(body):
                stream = body.iter_chunks(chunk_size)
                while True:
                    try:
                        chunk = next(stream)
                    except StopIteration:
                        return
                    except Exception as exc:
                        translated = self._translate(exc, "read", key)
                        if translated is exc:
                            raise
                        raise translated from None
                    yield chunk

        return chunks()

    # -- metadata --------------------------------------------------------------------------
    def stat(self, key: str) -> ObjectInfo:
        full = self._full(key)
        try:
            response = self._call(
                "stat", key, self.client.head_object, Bucket=self.bucket, Key=full
            )
        except NotFound:
            # HEAD has no body, so a missing bucket also reads as a bare 404.
            self._check_bucket()
            raise
        self._bucket_seen = True
        return ObjectInfo(
            key=key, size=int(response.get("ContentLength") or 0), etag=_unquote(response["ETag"])
        )

    def _check_bucket(self) -> None:
        if self._bucket_seen:
            return
        try:
            self._call("access", None, self.client.head_bucket, Bucket=self.bucket)
        except NotFound:
            raise BucketMissing(
                f"the bucket {self.bucket!r} does not exist at {self.endpoint}",
                hint=f"create it (aws s3 mb s3://{self.bucket}) or fix store.url in mlops.yaml",
            ) from None
        self._bucket_seen = True

    def delete(self, key: str) -> None:
        self._call(
            "delete", key, self.client.delete_object, Bucket=self.bucket, Key=self._full(key)
        )

    def _list_objects(self, prefix: str) -> list[ObjectInfo]:
        check_prefix(prefix)
        paginator = self.client.get_paginator("list_objects_v2")
        skip = len(self.prefix)

        def collect() -> list[ObjectInfo]:
            found = []
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                for item in page.get("Contents") or ():
                    name = item["Key"]
                    if name.endswith("/"):
                        continue  # a "folder" marker made by another tool, never one of ours
                    modified = item.get("LastModified")
                    found.append(
                        ObjectInfo(
                            key=name[skip:],
                            size=int(item.get("Size") or 0),
                            etag=_unquote(item.get("ETag")),
                            modified=modified.timestamp() if modified is not None else None,
                        )
                    )
            return found

        infos: list[ObjectInfo] = self._call("list", prefix or None, collect)
        # SeaweedFS lists directory by directory ("a/b" before "a-c"); the contract is plain
        # lexicographic order, so sort whatever the server sent.
        infos.sort(key=lambda info: info.key)
        return infos

    def list(self, prefix: str = "") -> Iterator[str]:
        return iter([info.key for info in self._list_objects(prefix)])

    def list_info(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return iter(self._list_objects(prefix))

    # -- interrupted writes ----------------------------------------------------------------
    def stale_uploads(self, older_than_s: float) -> Iterator[str]:
        """Multipart uploads under this store's prefix never completed nor aborted (their
        writer died), as ``<key>?uploadId=<id>``."""
        import time

        cutoff = time.time() - older_than_s
        paginator = self.bulk_client.get_paginator("list_multipart_uploads")
        skip = len(self.prefix)

        def collect() -> list[str]:
            found = []
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for upload in page.get("Uploads") or ():
                    started = upload.get("Initiated")
                    if started is not None and started.timestamp() > cutoff:
                        continue
                    found.append(f"{upload['Key'][skip:]}{_UPLOAD_ID}{upload['UploadId']}")
            return found

        uploads: list[str] = self._call("list uploads in", None, collect)
        return iter(sorted(uploads))

    def abort_upload(self, upload: str) -> None:
        key, sep, upload_id = upload.rpartition(_UPLOAD_ID)
        if not sep or not upload_id:
            raise UsageError(f"not an upload id of this store: {upload!r}")
        try:
            self._call(
                "abort an upload of",
                key,
                self.bulk_client.abort_multipart_upload,
                Bucket=self.bucket,
                Key=self._full(key),
                UploadId=upload_id,
            )
        except NotFound:
            pass  # already completed or aborted

    # -- health ----------------------------------------------------------------------------
    def probe(self) -> None:
        """Check reachability and that conditional writes are really honoured, with a
        throw-away key under ``_probe/``."""
        key = f"_probe/{uuid.uuid4().hex}"
        try:
            etag = self._put(key, b"probe 1", "put_if_absent", IfNoneMatch="*")
            try:
                self._put(key, b"probe 2", "put_if_absent", IfNoneMatch="*")
            except AlreadyExists:
                pass
            else:
                raise self._unsafe("If-None-Match")
            try:
                self._cas(key, b"probe 3", _STALE_ETAG)
            except Conflict:
                pass
            else:
                raise self._unsafe("If-Match")
            self._cas(key, b"probe 4", etag)
        finally:
            with contextlib.suppress(MlopsError):
                self.delete(key)

    def _unsafe(self, header: str) -> StoreUnsafe:
        return StoreUnsafe(
            f"the store at {self.endpoint} ({self._uri()}) ignores conditional writes "
            f"({header} was not honoured); mlopsctl refuses to write records to it",
            hint="use AWS S3, MinIO, SeaweedFS or another server that supports "
            "If-None-Match/If-Match on PutObject",
        )

    def _require_safe(self) -> None:
        """Run the probe once per instance before the first conditional write."""
        if self._probe_result is True:
            return
        with self._probe_lock:
            if self._probe_result is None:
                try:
                    self.probe()
                    self._probe_result = True
                except StoreUnsafe as exc:
                    self._probe_result = exc
            result = self._probe_result
        if isinstance(result, StoreUnsafe):
            raise StoreUnsafe(result.message, result.hint)


def _pread_into(fd: int, buf: bytearray, offset: int, path: Path) -> None:
    view = memoryview(buf)
    while view:
        got = os.preadv(fd, [view], offset)
        if not got:
            raise StoreError(f"{path} shrank while it was being uploaded", hint="try again")
        view = view[got:]
        offset += got


# Writes go in 1 MiB slices: on the test machines one multi-MiB write() into the page cache
# cost several times the CPU of the same bytes written 1 MiB at a time.
def _write_all(out: Any, view: memoryview) -> None:
    while view:
        view = view[out.write(view[:STREAM_CHUNK]) :]


def _pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    while view:
        written = os.pwrite(fd, view[:STREAM_CHUNK], offset)
        view = view[written:]
        offset += written
