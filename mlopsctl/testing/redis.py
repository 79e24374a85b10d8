"""Start and stop a throw-away redis-server (Debian's) on a free loopback port, for the online
store's tests and benchmark: no persistence, its files in a folder of the caller's, stopped by
its PID."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path


class RedisUnavailable(RuntimeError):
    """redis-server is not installed, or did not start (the message says which)."""


def start_redis(folder: Path, timeout: float = 15.0) -> tuple[subprocess.Popen[bytes], str]:
    """A running redis-server and its URL (``redis://127.0.0.1:PORT/0``); RedisUnavailable when
    it is missing or does not answer within `timeout` seconds."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RedisUnavailable("not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    options = {"port": str(port), "bind": "127.0.0.1", "save": "", "appendonly": "no"}
    argv = [binary, *(f for k, v in options.items() for f in (f"--{k}", v))]
    proc = subprocess.Popen(
        [*argv, "--daemonize", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                said = proc.stderr.read().decode()[-300:] if proc.stderr else ""
                proc.wait(5)
                raise RedisUnavailable(f"did not start: {said}") from None
            time.sleep(0.02)


def stop_redis(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds."""
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
