"""Killed runs, with real processes: `mlopsctl run` as a subprocess on a temporary project,
real signals, the step's processes looked up by PID in /proc, the records read from the store.

- SIGTERM is handled like Ctrl-C: the steps are stopped, the run is recorded `interrupted`
  with the signal, one line on stderr, exit 143 (128 + SIGTERM).
- SIGKILL of `mlopsctl run` takes its steps with it (the step's `python -m mlopsctl.exec`
  watches a pipe from its parent and stops its process group), and the run, left `running`,
  reads as `abandoned`.
- Work folders left by a killed run are removed when the next run starts, never a live run's.

Every wait is bounded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import git

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="looks processes up in /proc"
)

SLOW = """apiVersion: mlopsctl/v1
kind: Pipeline
name: slow
steps:
  quick:
    run: "echo hi > {outputs.out}"
    outputs: [out]
  slow:
    run: "echo $$ > shell.pid; sleep 60 & echo $! > sleep.pid; wait"
    inputs: {x: quick.out}
    outputs: [out]
"""

QUICK = """apiVersion: mlopsctl/v1
kind: Pipeline
name: quick
steps:
  only:
    run: "echo hi > {outputs.out}"
    outputs: [out]
"""


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "demo"
    root.mkdir()
    assert git(root, "init", "-q").returncode == 0
    done = subprocess.run(
        [sys.executable, "-m", "mlopsctl", "init", str(root)],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    (root / "pipelines/slow.yaml").write_text(SLOW)
    (root / "pipelines/quick.yaml").write_text(QUICK)
    yield root


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of an mlopsctl child: this test's own temp folder (work folders land
    there, so the test sees exactly its own) and the project's store, not the caller's."""
    temp = tmp_path / "tmp"
    temp.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "MLOPSCTL_STORE"}
    env.update(TMPDIR=str(temp), **extra)
    return env


def _start(project: Path, spec: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        # --quiet: stderr holds the one line the signal leaves, without the progress lines
        [sys.executable, "-m", "mlopsctl", "--quiet", "run", spec, "--json"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(project.parent, **env),
    )


def _mlopsctl(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlopsctl", *args],
        cwd=project,
        capture_output=True,
        text=True,
        env=_env(project.parent),
        timeout=60,
    )


def _wait_for_file(path: Path, proc: subprocess.Popen[str], timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text().strip() if path.exists() else ""
        if text:
            return int(text)
        if proc.poll() is not None:
            raise AssertionError(f"mlopsctl run ended early: {proc.communicate(timeout=10)}")
        time.sleep(0.05)
    raise AssertionError(f"{path.name} never appeared")


def _stat(pid: int) -> list[str] | None:
    """/proc/PID/stat fields after the command name (state, ppid, pgrp, ...), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text.rpartition(")")[2].split()


def _alive(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")  # a zombie has finished


def _step_pids(project: Path, proc: subprocess.Popen[str]) -> dict[str, int]:
    """The slow step's processes: its `mlopsctl.exec`, the shell of its command, the sleep."""
    shell = _wait_for_file(project / "shell.pid", proc)
    sleep = _wait_for_file(project / "sleep.pid", proc)
    fields = _stat(shell)
    assert fields is not None, "the step's shell is already gone"
    exec_pid = int(fields[1])
    assert "mlopsctl.exec" in Path(f"/proc/{exec_pid}/cmdline").read_text().replace("\0", " ")
    return {"exec": exec_pid, "shell": shell, "sleep": sleep}


def _assert_gone(pids: dict[str, int], within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        left = {name: pid for name, pid in pids.items() if _alive(pid)}
        if not left:
            return
        time.sleep(0.05)
    for pid in left.values():  # do not leave them behind for the next test
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    raise AssertionError(f"step processes still running after {within} s: {left}")


def _records(project: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((project / ".mlops/runs").glob("*.json"))]


def _work_folders(project: Path) -> list[str]:
    return sorted(p.name for p in (project.parent / "tmp").glob("mlopsctl-*"))


def test_sigterm_stops_the_steps_and_records_the_run_interrupted(project: Path) -> None:
    proc = _start(project, "pipelines/slow.yaml")
    try:
        pids = _step_pids(project, proc)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 143, (proc.returncode, stderr)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "interrupted" in lines[0] and "SIGTERM" in lines[0], lines
    assert stdout == ""

    [record] = _records(project)
    assert record["status"] == "interrupted"
    assert record["signal"] == "SIGTERM"
    assert record["id"] in lines[0]
    assert record["steps"]["quick"]["status"] == "executed"
    assert record["steps"]["slow"]["status"] == "interrupted"
    _assert_gone(pids, within=5)
    # nothing of the run is left running or lying around
    assert not list((project / ".mlops/runs").glob("live/*.json"))
    assert _work_folders(project) == []
    listed = json.loads(_mlopsctl(project, "runs", "list", "--json").stdout)
    assert [r["status"] for r in listed] == ["interrupted"]


def test_sigterm_during_ct_check_run_records_the_triggered_run_interrupted(
    project: Path,
) -> None:
    (project / "trigger.yaml").write_text(
        "apiVersion: mlopsctl/v1\nkind: Trigger\nname: t\npipeline: pipelines/slow.yaml\n"
        "schedule: '* * * * *'\n"  # never run: due at once
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlopsctl", "--quiet", "ct", "check", "trigger.yaml", "--run"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(project.parent),
    )
    try:
        pids = _step_pids(project, proc)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 143, (proc.returncode, stderr)
    [line] = stderr.strip().splitlines()
    [record] = _records(project)
    assert record["status"] == "interrupted" and record["signal"] == "SIGTERM"
    assert f"run {record['id']} recorded as interrupted" in line
    _assert_gone(pids, within=5)


def test_sigkill_of_the_run_takes_its_steps_along_and_the_run_reads_abandoned(
    project: Path,
) -> None:
    proc = _start(project, "pipelines/slow.yaml", MLOPSCTL_HEARTBEAT_S="0.2")
    try:
        pids = _step_pids(project, proc)
        # While it runs, the run is listed as running and its heartbeat moves on.
        [live] = json.loads(_mlopsctl(project, "runs", "list", "--json").stdout)
        assert live["status"] == "running"
        first = json.loads(_mlopsctl(project, "runs", "show", live["id"], "--json").stdout)
        assert first["pid"] == proc.pid and first["host"]
        time.sleep(1.5)
        later = json.loads(_mlopsctl(project, "runs", "show", live["id"], "--json").stdout)
        assert later["heartbeat"] > first["heartbeat"]
        assert later["status"] == "running"
    except BaseException:
        proc.kill()
        raise
    proc.kill()
    proc.communicate(timeout=30)
    _assert_gone(pids, within=5)

    [row] = json.loads(_mlopsctl(project, "runs", "list", "--json").stdout)
    assert row["id"] == live["id"]
    assert row["status"] == "abandoned"
    shown = _mlopsctl(project, "runs", "show", live["id"])
    assert shown.returncode == 0, shown.stderr
    assert "(abandoned)" in shown.stdout
    # never written: the final record of a run that did not end
    assert _records(project) == []


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait(timeout=30)
    return child.pid


def test_the_next_run_removes_work_folders_of_dead_runs_only(project: Path) -> None:
    temp = project.parent / "tmp"
    dead, live = _dead_pid(), os.getpid()
    two_minutes_ago = time.time() - 120
    folders = {
        "dead-old": temp / f"mlopsctl-{dead}-slow-abcd1234",
        "dead-new": temp / f"mlopsctl-{dead}-slow-efgh5678",
        "live-old": temp / f"mlopsctl-{live}-slow-ijkl9012",
        "kept-failed": temp / f"mlopsctl-{dead}-train-mnop3456",
        "old-style": temp / "mlopsctl-slow-qrst7890",
        "not-ours": temp / f"other-{dead}-slow-uvwx1234",
    }
    for name, folder in folders.items():
        (folder / "outputs").mkdir(parents=True)
        (folder / "step.log").write_text("...")
        if name == "kept-failed":
            (folder / ".mlopsctl-kept").write_text("")  # a failed step's folder, shown to the user
        if name != "dead-new":
            os.utime(folder, (two_minutes_ago, two_minutes_ago))

    proc = _start(project, "pipelines/quick.yaml")
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr

    assert not folders["dead-old"].exists()
    for name in ("dead-new", "live-old", "kept-failed", "old-style", "not-ours"):
        assert folders[name].exists(), name
