"""Docker pieces for tests and benchmarks: is the test bed up (engine, registry, base image),
and a second, throw-away Docker engine that plays a "remote host" (its own data-root,
exec-root, pidfile, unix socket and loopback TCP port), started and stopped by PID.

The test bed itself (the engine, the registry on 127.0.0.1:5000, mlopsctl-base:deps) comes from
`scripts/testbed-docker.sh` (as root)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlopsctl.testing.seaweed import free_ports, spawn_service, stop_process

REGISTRY = "127.0.0.1:5000"
BASE_IMAGE = "mlopsctl-base:deps"
REQUIRE_ENV = "MLOPSCTL_REQUIRE_DOCKER"


def default_client(timeout: float = 30) -> Any:
    """A low-level client for the engine of the environment (DOCKER_HOST or the default
    socket), the one mlopsctl uses without --host."""
    import docker

    return docker.APIClient(version="auto", timeout=timeout, **docker.utils.kwargs_from_env())


def testbed_problem(base_image: str = BASE_IMAGE, registry: str = REGISTRY) -> str | None:
    """Why the Docker test bed cannot be used, or None when the engine answers, the registry
    answers and the base image is there."""
    try:
        from docker.errors import DockerException, ImageNotFound
    except ImportError:
        return "the docker Python package is missing"
    try:
        client = default_client(timeout=10)
    except DockerException as exc:
        where = os.environ.get("DOCKER_HOST") or "the default socket"
        return f"no Docker engine answers on {where} ({str(exc).splitlines()[0][:120]})"
    try:
        client.inspect_image(base_image)
    except ImageNotFound:
        return f"the base image {base_image} is missing"
    finally:
        client.close()
    try:
        with urllib.request.urlopen(f"http://{registry}/v2/", timeout=5):
            pass
    except (urllib.error.URLError, OSError) as exc:
        return f"no image registry answers on {registry} ({exc})"
    return None


@dataclass
class SecondEngine:
    """A dockerd of its own: `socket_url` (unix://) and `tcp_url` (tcp://127.0.0.1:PORT)."""

    root: Path
    process: subprocess.Popen[bytes]
    socket_url: str
    tcp_url: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM (dockerd stops its containers and containerd, unmounts its layers), then
        SIGKILL after `grace` seconds; then the data-root goes."""
        stop_process(self.process, grace)
        unmount_under(self.root)
        shutil.rmtree(self.root / "data", ignore_errors=True)
        shutil.rmtree(self.root / "exec", ignore_errors=True)


def unmount_under(root: Path) -> None:
    """Unmount what a stopped dockerd left mounted under `root` (its netns bind mount, the
    layers of containers it could not stop), deepest first, so the folder can be removed."""
    prefix = str(root.resolve()) + "/"
    try:
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return
    for point in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False, timeout=30)


def start_second_engine(root: Path, timeout: float = 60.0) -> SecondEngine:
    """Start `dockerd` with everything of its own under `root` (needs root and dockerd)."""
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        raise RuntimeError("dockerd is not installed (apt-get install docker.io)")
    root.mkdir(parents=True, exist_ok=True)
    # Unix socket paths are limited to ~107 bytes: keep the socket short, outside `root`.
    sock = Path(f"/tmp/mlopsctl-dockerd-{os.getpid()}-{free_ports(1)[0]}.sock")
    (port,) = free_ports(1)
    log_path = root / "dockerd.log"
    cmd = [
        dockerd,
        "--storage-driver=overlay2",
        "--iptables=false",
        "--bridge=none",
        f"--data-root={root / 'data'}",
        f"--exec-root={root / 'exec'}",
        f"--pidfile={root / 'dockerd.pid'}",
        f"-H=unix://{sock}",
        f"-H=tcp://127.0.0.1:{port}",
    ]
    # SIGTERM, not SIGKILL, if we die: dockerd then stops its containers itself.
    process = spawn_service(cmd, log_path, signal.SIGTERM)
    engine = SecondEngine(root, process, f"unix://{sock}", f"tcp://127.0.0.1:{port}", log_path)
    try:
        _wait_ready(engine, timeout)
    except BaseException:
        engine.stop(grace=5.0)
        raise
    return engine


def _wait_ready(engine: SecondEngine, timeout: float) -> None:
    import docker
    from docker.errors import DockerException

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if engine.process.poll() is not None:
            raise RuntimeError(
                f"dockerd exited with status {engine.process.returncode} while starting; "
                f"log tail ({engine.log_path}):\n{engine.log_tail()}"
            )
        try:
            docker.APIClient(base_url=engine.socket_url, version="auto", timeout=2).close()
            return
        except DockerException:
            time.sleep(0.3)
    raise RuntimeError(f"dockerd did not answer within {timeout:.0f} s:\n{engine.log_tail()}")
