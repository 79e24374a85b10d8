"""S3 failure modes against the real server, each mapped to a one-line error and exit code.

Faults that SeaweedFS cannot produce on demand (503 SlowDown, a server that ignores conditional
writes) come from a small HTTP proxy on loopback in front of it.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest

from mlopsctl.errors import (
    BucketMissing,
    ExitCode,
    MlopsError,
    NotFound,
    StoreError,
    StoreUnauthorized,
    StoreUnreachable,
    StoreUnsafe,
)
from mlopsctl.store import open_store
from mlopsctl.store.s3 import DEFAULT_MAX_ATTEMPTS
from mlopsctl.testing.seaweed import free_ports

pytestmark = pytest.mark.s3

SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


class FaultProxy:
    """Forwards requests to ``upstream`` byte for byte (the Host header too, so SigV4
    signatures still verify), after answering the first ``fail_first`` with 503 SlowDown.
    With ``ignore_conditions`` it turns a 412 on PUT into a 200, like a server that does not
    implement If-None-Match/If-Match."""

    def __init__(self, upstream: str, *, fail_first: int = 0, ignore_conditions: bool = False):
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.fail_first = fail_first
        self.ignore_conditions = ignore_conditions
        self.requests = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def handle_one(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy._lock:
                    proxy.requests += 1
                    number = proxy.requests
                if number <= proxy.fail_first:
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(SLOW_DOWN)))
                    self.end_headers()
                    self.wfile.write(SLOW_DOWN)
                    return
                status, headers, payload = proxy.forward(
                    self.command, self.path, self.headers, body
                )
                if proxy.ignore_conditions and self.command == "PUT" and status == 412:
                    status, headers, payload = 200, [("ETag", '"%s"' % ("f" * 32))], b""
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in _HOP_BY_HOP:
                        self.send_header(name, value)
                if self.command == "HEAD":
                    upstream_length = dict((k.lower(), v) for k, v in headers)
                    self.send_header("Content-Length", upstream_length.get("content-length", "0"))
                else:
                    self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_one

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def forward(
        self, method: str, path: str, headers: Any, body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for name, value in headers.items():
                if name.lower() not in ("connection", "keep-alive"):
                    conn.putheader(name, value)
            conn.endheaders(body or None)
            response = conn.getresponse()
            payload = response.read()
            return response.status, response.getheaders(), payload
        finally:
            conn.close()

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy_factory(s3_env: Any) -> Iterator[Callable[..., FaultProxy]]:
    proxies: list[FaultProxy] = []

    def make(**kwargs: Any) -> FaultProxy:
        proxy = FaultProxy(s3_env.endpoint, **kwargs).__enter__()
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.__exit__()


def _one_line(exc: MlopsError) -> str:
    text = str(exc)
    assert "\n" not in text and "Traceback" not in text
    return text


def test_endpoint_down_is_unreachable_fast(s3_env: Any, s3_url: str) -> None:
    (port,) = free_ports(1)
    endpoint = f"http://127.0.0.1:{port}"
    store = open_store(s3_url, s3_options={"endpoint_url": endpoint})
    started = time.monotonic()
    with pytest.raises(StoreUnreachable) as info:
        store.get("runs/x.json")
    elapsed = time.monotonic() - started
    assert elapsed < 10, f"took {elapsed:.1f} s to give up"
    assert type(info.value) is StoreUnreachable
    assert info.value.exit_code == ExitCode.UNREACHABLE
    text = _one_line(info.value)
    assert endpoint in text and "AWS_ENDPOINT_URL" in text and "is the server running" in text


@pytest.mark.parametrize("which", ["secret", "access_key"])
def test_bad_credentials_are_unauthorized(
    s3_env: Any, s3_url: str, aws_env: pytest.MonkeyPatch, which: str
) -> None:
    if which == "secret":
        aws_env.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    else:
        aws_env.setenv("AWS_ACCESS_KEY_ID", "nobody")
    store = open_store(s3_url, s3_options={"endpoint_url": s3_env.endpoint})
    for call in (
        lambda: store.put("k", b"x"),
        lambda: store.get("k"),
        lambda: store.stat("k"),
        lambda: list(store.list()),
    ):
        with pytest.raises(StoreUnauthorized) as info:
            call()
        assert info.value.exit_code == ExitCode.UNREACHABLE
        assert "credentials" in _one_line(info.value)


def test_no_credentials_at_all(s3_env: Any, s3_url: str, aws_env: pytest.MonkeyPatch) -> None:
    aws_env.delenv("AWS_ACCESS_KEY_ID")
    aws_env.delenv("AWS_SECRET_ACCESS_KEY")
    store = open_store(s3_url, s3_options={"endpoint_url": s3_env.endpoint})
    with pytest.raises(StoreUnauthorized) as info:
        store.get("k")
    assert "AWS_ACCESS_KEY_ID" in _one_line(info.value)


def test_missing_bucket(s3_env: Any, tmp_path: Any) -> None:
    store = open_store("s3://no-such-bucket-here/p", s3_options={"endpoint_url": s3_env.endpoint})
    src = tmp_path / "f"
    src.write_bytes(b"x")
    calls = {
        "get": lambda: store.get("k"),
        "put": lambda: store.put("k", b"x"),
        "put_file": lambda: store.put_file("k", src),
        "stat": lambda: store.stat("k"),
        "list": lambda: list(store.list()),
        "delete": lambda: store.delete("k"),
        "put_if_absent": lambda: store.put_if_absent("k", b"x"),
    }
    for name, call in calls.items():
        with pytest.raises(BucketMissing) as info:
            call()
        text = _one_line(info.value)
        assert "no-such-bucket-here" in text and "create it" in text, name
        assert info.value.exit_code == ExitCode.UNREACHABLE


def test_stat_of_missing_key_in_existing_bucket_is_not_found(make_s3_store: Any) -> None:
    store = make_s3_store()
    with pytest.raises(NotFound):
        store.stat("nope")
    with pytest.raises(NotFound):  # the bucket check is cached, the answer must not change
        store.stat("nope")


def test_slow_down_gives_up_after_total_attempts(
    proxy_factory: Callable[..., FaultProxy], make_s3_store: Any
) -> None:
    proxy = proxy_factory(fail_first=1000)
    store = make_s3_store(endpoint_url=proxy.endpoint)
    with pytest.raises(StoreError) as info:
        store.put("k", b"x")
    assert type(info.value) is StoreError
    assert info.value.exit_code == ExitCode.ERROR
    assert proxy.requests == DEFAULT_MAX_ATTEMPTS
    text = _one_line(info.value)
    assert "SlowDown" in text and f"after {DEFAULT_MAX_ATTEMPTS} attempts" in text


def test_slow_down_then_success(
    proxy_factory: Callable[..., FaultProxy], make_s3_store: Any
) -> None:
    proxy = proxy_factory(fail_first=DEFAULT_MAX_ATTEMPTS - 2)
    store = make_s3_store(endpoint_url=proxy.endpoint)
    store.put("k", b"through the proxy")
    assert proxy.requests == DEFAULT_MAX_ATTEMPTS - 1
    assert store.get("k") == b"through the proxy"


def test_store_ignoring_conditions_is_refused(
    proxy_factory: Callable[..., FaultProxy], make_s3_store: Any
) -> None:
    proxy = proxy_factory(ignore_conditions=True)
    store = make_s3_store(endpoint_url=proxy.endpoint)
    with pytest.raises(StoreUnsafe) as info:
        store.probe()
    assert "ignores conditional writes" in _one_line(info.value)
    assert info.value.exit_code == ExitCode.UNREACHABLE
    for call in (
        lambda: store.put_if_absent("records/a.json", b"{}"),
        lambda: store.compare_and_swap("records/a.json", b"{}", None),
    ):
        with pytest.raises(StoreUnsafe):
            call()
    assert list(store.list()) == []


def test_probe_runs_once_before_first_conditional_write(
    proxy_factory: Callable[..., FaultProxy], make_s3_store: Any
) -> None:
    proxy = proxy_factory()
    store = make_s3_store(endpoint_url=proxy.endpoint)
    store.put("plain", b"x")
    assert proxy.requests == 1  # unconditional writes need no probe
    store.put_if_absent("a", b"x")
    after_first = proxy.requests
    assert after_first > 3  # probe requests + the write
    store.put_if_absent("b", b"x")
    store.compare_and_swap("c", b"x", None)
    assert proxy.requests == after_first + 2


def test_endpoint_from_aws_endpoint_url_env(
    s3_env: Any, s3_url: str, aws_env: pytest.MonkeyPatch
) -> None:
    aws_env.setenv("AWS_ENDPOINT_URL", s3_env.endpoint)
    store = open_store(s3_url)
    store.put("via-env", b"ok")
    assert store.get("via-env") == b"ok"
    assert s3_env.endpoint in store.endpoint  # type: ignore[attr-defined]


def test_object_replaced_during_download(
    make_s3_store: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every part after the first is fetched with If-Match: a file never mixes two versions."""
    import os

    from mlopsctl.store.s3 import S3Store

    store = make_s3_store(part_size=5 << 20, workers=2)
    store.put("big", os.urandom(12 << 20))
    original = S3Store._open_range
    replaced = []

    def open_then_replace(self: S3Store, key: str, start: int, end: int, etag: Any) -> Any:
        opened = original(self, key, start, end, etag)
        if start == 0 and not replaced:
            replaced.append(True)
            self.put(key, os.urandom(12 << 20))
        return opened

    monkeypatch.setattr(S3Store, "_open_range", open_then_replace)
    dest = tmp_path / "big"
    with pytest.raises(StoreError) as info:
        store.get_file("big", dest)
    assert "replaced while it was being downloaded" in _one_line(info.value)
    assert not dest.exists()
    assert [p.name for p in tmp_path.iterdir()] == []
