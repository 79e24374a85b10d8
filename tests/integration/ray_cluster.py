"""A real two-node Ray cluster on this machine, for the Ray backend's tests and benchmark.

Ray rewrites a loopback --node-ip-address to the machine's routable address and listens on
every interface, so the cluster runs inside a network namespace made for it (as root): a veth
pair with one end moved into the namespace, a 10.x address inside the namespace only and a
default route through it, so no packet of the cluster's ever leaves the namespace. A head node
and a separate worker node start with Ray's own `ray start --block` (every port explicit, a temp
folder each, one CPU each, no dashboard, no usage stats); drivers (`mlopsctl run --backend ray`)
run in the same namespace through `ip netns exec` (`RayCluster.command`). The worker node also
gets a mount namespace of its own in which `RayCluster.hidden` is an empty tmpfs: a store kept
in there is a folder the worker node cannot see, as on another machine.

Stopping is by PID: SIGTERM to the worker's `ray start --block`, then the head's, SIGKILL after
a bound; never `ray stop`, which kills every Ray process on the machine by name. Then the
namespace and the veth are deleted and the temp folders removed.

`python tests/integration/ray_cluster.py seaweed DIR`, run inside the namespace, starts a
SeaweedFS S3 server on the namespace's own loopback and prints its endpoint as one JSON line;
it stops the server when its stdin closes (see `RayCluster.start_seaweed`)."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

REQUIRE_ENV = "MLOPSCTL_REQUIRE_RAY"
GCS_PORT = 6380
CLIENT_PORT = 10001  # Ray Client's server on the head (ray://), with ray[client] installed
STOP_GRACE_S = 10.0
START_TIMEOUT_S = 90.0
_OBJECT_STORE_BYTES = 100_000_000
# Ports of each node; the namespace is fresh, so nothing else holds them.
_HEAD_PORTS = {
    "--node-manager-port": 6381,
    "--object-manager-port": 6382,
    "--min-worker-port": 20000,
    "--max-worker-port": 20099,
    "--dashboard-agent-listen-port": 6383,
    "--dashboard-agent-grpc-port": 6384,
    "--runtime-env-agent-port": 6385,
    "--metrics-export-port": 6386,
}
_WORKER_PORTS = {
    "--node-manager-port": 6391,
    "--object-manager-port": 6392,
    "--min-worker-port": 20100,
    "--max-worker-port": 20199,
    "--dashboard-agent-listen-port": 6393,
    "--dashboard-agent-grpc-port": 6394,
    "--runtime-env-agent-port": 6395,
    "--metrics-export-port": 6396,
}


class ClusterUnavailable(RuntimeError):
    """Something the cluster needs is missing (root, `ip`, `unshare`, the ray package)."""


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if found is None:
        raise ClusterUnavailable(f"the '{name}' command is missing")
    return found


def ray_executable() -> str:
    beside = Path(sys.executable).parent / "ray"
    if beside.is_file():
        return str(beside)
    found = shutil.which("ray")
    if found is None:
        raise ClusterUnavailable("the ray package is not installed (pip install 'mlopsctl[ray]')")
    return found


def problem() -> str | None:
    """Why a cluster cannot be started here, or None."""
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "a network namespace for the cluster needs root"
    try:
        import ray  # noqa: F401
    except ImportError:
        return "the ray package is not installed (pip install 'mlopsctl[ray]')"
    try:
        for name in ("ip", "unshare", "mount"):
            _tool(name)
        ray_executable()
    except ClusterUnavailable as exc:
        return str(exc)
    return None


def _run(*argv: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if proc.returncode != 0:
        raise ClusterUnavailable(f"{' '.join(argv)}: {proc.stderr.strip() or proc.returncode}")


@dataclass
class RayCluster:
    netns: str
    veth: str  # the end in the root namespace; its peer is inside the namespace
    ip: str
    workdir: Path
    hidden: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)
    temp_dirs: list[Path] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"{self.ip}:{GCS_PORT}"

    @property
    def client_address(self) -> str:
        """The head's Ray Client address: a driver that is not a node of the cluster."""
        return f"ray://{self.ip}:{CLIENT_PORT}"

    def command(self, *argv: str) -> list[str]:
        """`argv` run inside the cluster's network namespace."""
        return [_tool("ip"), "netns", "exec", self.netns, *argv]

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", **extra)
        env.pop("RAY_ADDRESS", None)
        return env

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for name, path in self.logs.items():
            try:
                text = path.read_text(errors="replace")
            except OSError:
                text = "(no log)"
            parts.append(f"--- {name} ---\n" + "\n".join(text.splitlines()[-lines:]))
        # Ray Client's servers log only into the head's session folder (a failed start of the
        # server a ray:// driver gets says no more than "see ray_client_server_PORT.err").
        for temp in self.temp_dirs:
            for path in sorted(temp.glob("session_latest/logs/ray_client_server*")):
                text = path.read_text(errors="replace").strip()
                if text:
                    tail = "\n".join(text.splitlines()[-lines:])
                    parts.append(f"--- {path.name} ---\n{tail}")
        return "\n".join(parts)

    # -- start ---------------------------------------------------------------------------
    def _network(self) -> None:
        peer = self.veth[:-1] + "b"
        _run(_tool("ip"), "netns", "add", self.netns)
        _run(_tool("ip"), "netns", "exec", self.netns, "ip", "link", "set", "lo", "up")
        _run(_tool("ip"), "link", "add", self.veth, "type", "veth", "peer", "name", peer)
        _run(_tool("ip"), "link", "set", peer, "netns", self.netns)
        inside = ["ip", "netns", "exec", self.netns, "ip"]
        _run(*inside, "addr", "add", f"{self.ip}/24", "dev", peer)
        _run(*inside, "link", "set", peer, "up")
        _run(_tool("ip"), "link", "set", self.veth, "up")
        _run(*inside, "route", "add", "default", "dev", peer)

    def _start_node(self, name: str, argv: list[str], private_mount: bool) -> None:
        temp = Path(tempfile.mkdtemp(prefix=f"mlr{name[0]}-", dir="/tmp"))  # sockets: short
        self.logs[name] = self.workdir / f"{name}.log"
        ray_argv = [
            ray_executable(),
            "start",
            "--block",
            f"--node-ip-address={self.ip}",
            f"--temp-dir={temp}",
            "--num-cpus=1",
            "--num-gpus=0",
            f"--object-store-memory={_OBJECT_STORE_BYTES}",
            "--disable-usage-stats",
            *argv,
        ]
        if private_mount:
            # A mount namespace of its own, where `hidden` is an empty tmpfs; `exec` keeps the
            # PID the one of `ray start --block`, the process to stop.
            script = 'mount -t tmpfs -o size=1m mlopsctl-hidden "$0" && exec "$@"'
            ray_argv = [
                _tool("unshare"),
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
                str(self.hidden),
                *ray_argv,
            ]
        with open(self.logs[name], "wb") as log:
            self.processes[name] = subprocess.Popen(
                self.command(*ray_argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # A busy test machine can take longer than Ray's 30 s to register a node.
                env=self.env(RAY_raylet_start_wait_time_s="180"),
                start_new_session=True,
            )
        self.temp_dirs.append(temp)

    def _wait_nodes(self, count: int, timeout: float) -> None:
        probe = (
            "import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR', "
            "log_to_driver=False); "
            "print(sum(1 for n in ray.nodes() if n['Alive']))"
        )
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for name, proc in self.processes.items():
                if proc.poll() is not None:
                    raise ClusterUnavailable(
                        f"ray node '{name}' exited with status {proc.returncode}:\n"
                        + self.log_tail()
                    )
            try:
                proc = subprocess.run(
                    self.command(sys.executable, "-c", probe, self.address),
                    capture_output=True,
                    text=True,
                    timeout=30,
                    env=self.env(),
                    check=False,
                )
            except subprocess.TimeoutExpired:
                last = "a driver did not connect within 30 s"
                continue
            last = proc.stdout.strip() or proc.stderr.strip()[-500:]
            if proc.returncode == 0 and proc.stdout.strip() == str(count):
                return
            time.sleep(1.0)
        raise ClusterUnavailable(
            f"the Ray cluster did not come up with {count} nodes in {timeout:.0f} s "
            f"(last: {last}):\n{self.log_tail()}"
        )

    # -- SeaweedFS inside the namespace ----------------------------------------------------
    def start_seaweed(self, folder: Path) -> tuple[subprocess.Popen[str], dict[str, str]]:
        """A SeaweedFS S3 server on the namespace's loopback (the root namespace's 127.0.0.1
        is out of the cluster's reach), with one bucket. Returns the helper process (close its
        stdin to stop the server) and {endpoint, bucket, access_key, secret_key, region}."""
        proc = subprocess.Popen(
            self.command(sys.executable, str(Path(__file__).resolve()), "seaweed", str(folder)),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=self.env(),
            start_new_session=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            proc.wait(timeout=30)
            raise ClusterUnavailable(f"SeaweedFS did not start in the namespace ({folder})")
        return proc, json.loads(line)

    # -- stop ------------------------------------------------------------------------------
    def stop(self) -> None:
        for name in ("worker", "head"):
            proc = self.processes.get(name)
            if proc is not None:
                stop_pid(proc, STOP_GRACE_S)
        with contextlib.suppress(ClusterUnavailable, subprocess.TimeoutExpired):
            _run(_tool("ip"), "netns", "del", self.netns)
        with contextlib.suppress(ClusterUnavailable, subprocess.TimeoutExpired):
            _run(_tool("ip"), "link", "del", self.veth)  # usually gone with its peer
        for temp in self.temp_dirs:
            shutil.rmtree(temp, ignore_errors=True)
        shutil.rmtree(self.hidden, ignore_errors=True)
        # `ray start --head` notes its address for `auto` in /tmp/ray, whatever --temp-dir
        # says: take the note back when it is ours, so no later `auto` looks for this cluster.
        note = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
        with contextlib.suppress(OSError):
            if note.read_text().strip() == self.address:
                note.unlink()


def stop_pid(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM to the process (`ray start --block` stops its node's processes itself), then
    SIGKILL to its whole session after `grace` seconds."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    # Whatever of its session is left (a raylet or worker that outlived its parent).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def start_cluster(workdir: Path) -> RayCluster:
    """Network namespace, veth, head node and worker node; returns once both nodes are up."""
    trouble = problem()
    if trouble:
        raise ClusterUnavailable(trouble)
    tag = uuid.uuid4().hex[:8]
    hidden = Path(tempfile.mkdtemp(prefix="mlopsctl-ray-hidden-"))
    cluster = RayCluster(
        netns=f"mlopsctl-ray-{tag}",
        veth=f"mlr{tag[:6]}a",
        ip=f"10.{random.randint(200, 250)}.{random.randint(0, 255)}.1",
        workdir=workdir,
        hidden=hidden,
    )
    try:
        cluster._network()
        head = ["--head", f"--port={GCS_PORT}", "--include-dashboard=false"]
        head.append(f"--ray-client-server-port={CLIENT_PORT}")
        cluster._start_node("head", head + _flags(_HEAD_PORTS), private_mount=False)
        cluster._wait_nodes(1, START_TIMEOUT_S)
        worker = [f"--address={cluster.address}"]
        cluster._start_node("worker", worker + _flags(_WORKER_PORTS), private_mount=True)
        cluster._wait_nodes(2, START_TIMEOUT_S)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _flags(ports: dict[str, int]) -> list[str]:
    return [f"{flag}={port}" for flag, port in ports.items()]


def _serve_seaweed(folder: str) -> int:
    """Inside the namespace: a SeaweedFS server on its loopback until stdin closes."""
    from mlopsctl.testing.seaweed import start_seaweed

    server = start_seaweed(folder)
    try:
        bucket = f"mlopsctl-ray-{uuid.uuid4().hex[:8]}"
        server.create_bucket(bucket)
        facts = {
            "endpoint": server.endpoint,
            "bucket": bucket,
            "access_key": server.access_key,
            "secret_key": server.secret_key,
            "region": server.region,
        }
        sys.stdout.write(json.dumps(facts) + "\n")
        sys.stdout.flush()
        sys.stdin.read()  # until the test closes it (or dies)
    finally:
        server.stop(grace=3.0)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "seaweed":
        sys.exit(_serve_seaweed(sys.argv[2]))
    sys.stderr.write("usage: ray_cluster.py seaweed DIR\n")
    sys.exit(2)
