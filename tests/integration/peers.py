"""The peers' own virtualenvs (Feast, the KServe SDK, MLflow), made by scripts/peers.sh.

`peer_python(name)` returns ``.bench/<name>-venv/bin/python``. While scripts/peers.sh is still
installing it (scripts/test.sh starts it in the background, so the install overlaps lint, type
checks and the unit tests), it waits for the ``.bench/<name>.ready`` marker, polling, up to
PEER_WAIT_S. A peer that is absent or failed skips the test, naming the command that makes it;
under MLOPSCTL_REQUIRE_PEERS=1 (set by .ci/run) it fails instead, with the install log's tail.
A venv made by hand (no markers at all) is used as it is.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
REQUIRE_ENV = "MLOPSCTL_REQUIRE_PEERS"
PEER_WAIT_S = 600.0
POLL_S = 2.0
# pytest-timeout (300 s per test, pyproject.toml) counts the wait too: tests that use a peer
# carry this mark, the wait plus the test's own time.
WAITS_FOR_PEER = pytest.mark.timeout(PEER_WAIT_S + 300)


def peers_dir() -> Path:
    return ROOT / os.environ.get("PEERS_DIR", ".bench")  # as scripts/peers.sh reads it


def _alive(pid_file: Path) -> bool:
    """Whether the peers.sh run that wrote `pid_file` is still running."""
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _unavailable(name: str, reason: str, log: Path) -> None:
    command = f"bash scripts/peers.sh {name}"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(
            f"peer {name!r} unusable: {reason} ({REQUIRE_ENV}=1; `{command}` makes it). "
            f"Tail of {log}:\n{_tail(log)}",
            pytrace=False,
        )
    pytest.skip(f"peer {name!r} unusable: {reason}; `{command}` makes it")


def peer_python(name: str, wait_s: float = PEER_WAIT_S) -> Path:
    """The python of the `name` peer's virtualenv, waiting for a running install (bounded)."""
    folder = peers_dir()
    python = folder / f"{name}-venv" / "bin" / "python"
    ready, failed, pending = (folder / f"{name}.{kind}" for kind in ("ready", "failed", "pending"))
    log = folder / f"peers-{name}.log"
    deadline = time.monotonic() + wait_s
    while True:
        if ready.exists() and python.exists():
            return python
        if failed.exists():
            _unavailable(name, f"its install failed (log {log})", failed)
        if pending.exists():
            if not _alive(pending):
                time.sleep(0.2)  # peers.sh may have finished just now: look once more
                if pending.exists() and not (ready.exists() or failed.exists()):
                    _unavailable(name, f"its install was interrupted (log {log})", log)
            elif time.monotonic() > deadline:
                _unavailable(name, f"still installing after {wait_s:.0f} s (log {log})", log)
            time.sleep(POLL_S)
            continue
        if python.exists():
            return python  # made by hand (no markers): used as it is
        _unavailable(name, f"{python.parent.parent} is missing", log)


CLIENTS = Path(__file__).resolve().parent / "clients"


def run_client(python: Path, script: str, *args: str, timeout: float = 180) -> Any:
    """Run tests/integration/clients/`script` with a peer's python; its stdout's JSON."""
    proc = subprocess.run(
        [str(python), str(CLIENTS / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert proc.returncode == 0, f"{script} exited {proc.returncode}:\n{proc.stderr[-4000:]}"
    return json.loads(proc.stdout)
