"""tests/integration/peers.py's markers: a ready peer is used, a running install is waited for,
an absent or failed one skips (naming `bash scripts/peers.sh NAME`), or fails with the log's
tail under MLOPSCTL_REQUIRE_PEERS=1, and an interrupted install is told apart."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from . import peers
from .peers import REQUIRE_ENV, peer_python


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PEERS_DIR", str(tmp_path))
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    return tmp_path


def _venv(folder: Path, name: str) -> Path:
    python = folder / f"{name}-venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("")
    return python


def test_a_ready_peer_and_a_hand_made_one_are_used(folder: Path) -> None:
    python = _venv(folder, "feast")
    assert peer_python("feast") == python  # no markers: made by hand
    (folder / "feast.ready").write_text("12\n")
    assert peer_python("feast") == python


def test_an_absent_peer_skips_naming_the_command_or_fails_when_required(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(pytest.skip.Exception, match=r"bash scripts/peers\.sh kserve"):
        peer_python("kserve")
    monkeypatch.setenv(REQUIRE_ENV, "1")
    (folder / "peers-kserve.log").write_text("Collecting kserve\nERROR: no matching dist\n")
    with pytest.raises(pytest.fail.Exception, match="missing") as failed:
        peer_python("kserve")
    assert "ERROR: no matching dist" in str(failed.value)


def test_a_failed_install_shows_its_tail(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _venv(folder, "kserve")
    (folder / "kserve.failed").write_text("ERROR: Could not find a version\n")
    with pytest.raises(pytest.skip.Exception, match="install failed"):
        peer_python("kserve")
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="Could not find a version"):
        peer_python("kserve")


def test_a_running_install_is_waited_for_and_a_dead_one_is_not(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(peers, "POLL_S", 0.05)
    installer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (folder / "mlflow-client.pending").write_text(f"{installer.pid}\n")
        python = _venv(folder, "mlflow-client")  # half made: not to be used before .ready

        def finish() -> None:
            time.sleep(0.5)
            (folder / "mlflow-client.ready").write_text("1\n")
            (folder / "mlflow-client.pending").unlink()

        threading.Thread(target=finish).start()
        started = time.monotonic()
        assert peer_python("mlflow-client", wait_s=20) == python
        assert time.monotonic() - started >= 0.4
        (folder / "mlflow-client.ready").unlink()
        (folder / "mlflow-client.pending").write_text(f"{installer.pid}\n")
        with pytest.raises(pytest.skip.Exception, match="still installing after 0 s"):
            peer_python("mlflow-client", wait_s=0.2)
    finally:
        installer.kill()
        installer.wait()
    with pytest.raises(pytest.skip.Exception, match="interrupted"):
        peer_python("mlflow-client")
