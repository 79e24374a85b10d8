"""How S3 failures become one-line MlopsErrors (no server: synthetic botocore errors)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from mlopsctl.errors import (
    AlreadyExists,
    BucketMissing,
    Conflict,
    ExitCode,
    NotFound,
    StoreError,
    StoreUnauthorized,
    StoreUnreachable,
)
from mlopsctl.store.s3 import S3Store


@pytest.fixture
def s3() -> S3Store:
    return S3Store("s3://bucket-a/pre", endpoint_url="http://127.0.0.1:9")


def client_error(code: str, status: int, retries: int = 0) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": f"message for {code}\nsecond line"},
        "ResponseMetadata": {"HTTPStatusCode": status, "RetryAttempts": retries},
    }
    return ClientError(response, "PutObject")


@pytest.mark.parametrize(
    ("code", "status", "action", "expected"),
    [
        ("NoSuchBucket", 404, "read", BucketMissing),
        ("NoSuchKey", 404, "read", NotFound),
        ("404", 404, "stat", NotFound),
        ("InvalidAccessKeyId", 403, "write", StoreUnauthorized),
        ("SignatureDoesNotMatch", 403, "write", StoreUnauthorized),
        ("AccessDenied", 403, "read", StoreUnauthorized),
        ("403", 403, "stat", StoreUnauthorized),
        ("PreconditionFailed", 412, "put_if_absent", AlreadyExists),
        ("ConditionalRequestConflict", 409, "put_if_absent", AlreadyExists),
        ("PreconditionFailed", 412, "cas", Conflict),
        ("ConditionalRequestConflict", 409, "cas", Conflict),
        ("NoSuchKey", 404, "cas", Conflict),  # AWS: If-Match on a missing key
        ("SlowDown", 503, "write", StoreError),
        ("InternalError", 500, "write", StoreError),
        ("InvalidArgument", 400, "write", StoreError),
    ],
)
def test_client_error_mapping(
    s3: S3Store, code: str, status: int, action: str, expected: type
) -> None:
    error = s3._translate(client_error(code, status), action, "runs/r.json")
    assert type(error) is expected
    assert "\n" not in str(error)


def test_busy_error_counts_attempts(s3: S3Store) -> None:
    error = s3._translate(client_error("SlowDown", 503, retries=3), "write", "k")
    assert "after 4 attempts" in str(error)
    assert "s3://bucket-a/pre/k" in str(error)


def test_bucket_missing_names_bucket(s3: S3Store) -> None:
    error = s3._translate(client_error("NoSuchBucket", 404), "read", "k")
    assert "'bucket-a'" in str(error) and "create it" in str(error)
    assert error.exit_code == ExitCode.UNREACHABLE  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "exc",
    [
        EndpointConnectionError(endpoint_url="http://127.0.0.1:9/x"),
        ConnectTimeoutError(endpoint_url="http://127.0.0.1:9/x"),
    ],
)
def test_connection_errors(s3: S3Store, exc: Exception) -> None:
    error = s3._translate(exc, "read", "k")
    assert type(error) is StoreUnreachable
    assert "http://127.0.0.1:9" in str(error) and "AWS_ENDPOINT_URL" in str(error)


def test_read_timeout(s3: S3Store) -> None:
    error = s3._translate(ReadTimeoutError(endpoint_url="http://127.0.0.1:9/x"), "read", "k")
    assert isinstance(error, StoreUnreachable)


def test_no_credentials(s3: S3Store) -> None:
    error = s3._translate(NoCredentialsError(), "read", "k")
    assert type(error) is StoreUnauthorized
    assert "AWS_ACCESS_KEY_ID" in str(error)


def test_other_exceptions_pass_through(s3: S3Store) -> None:
    exc = KeyError("x")
    assert s3._translate(exc, "read", "k") is exc


def test_part_size_floor() -> None:
    from mlopsctl.errors import ConfigError

    with pytest.raises(ConfigError):
        S3Store("s3://bucket-a/x", part_size=1 << 20)


def test_part_size_grows_for_huge_files(s3: S3Store) -> None:
    huge = 10_000 * s3.part_size * 3
    part = s3._part_size_for(huge)
    assert -(-huge // part) <= 10_000
