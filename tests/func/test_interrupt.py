"""Ctrl-C during a run: the step processes are stopped, the run is recorded as interrupted, the
interrupted step is never cached, and the exit code is 130."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

SLOW = """apiVersion: mlopsctl/v1
kind: Pipeline
name: slow
steps:
  quick:
    run: "echo hi > {outputs.out}"
    outputs: [out]
  slow:
    run: "echo $$ > pid.txt; sleep 60; echo late > {outputs.out}"
    inputs: {x: quick.out}
    outputs: [out]
"""


def test_ctrl_c_marks_the_run_interrupted(project: Path) -> None:
    (project / "pipelines/slow.yaml").write_text(SLOW)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlopsctl", "run", "pipelines/slow.yaml", "--json"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    pid_file = project / "pid.txt"
    deadline = time.monotonic() + 60
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pid_file.exists(), "the slow step never started"
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    try:
        _, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr

    runs = list((project / ".mlops/runs").glob("*.json"))
    assert len(runs) == 1
    record = json.loads(runs[0].read_text())
    assert record["status"] == "interrupted"
    assert record["steps"]["quick"]["status"] == "executed"
    assert record["steps"]["slow"]["status"] == "interrupted"
    # the step's shell (and its sleep) is gone
    step_pid = int(pid_file.read_text().split()[0])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(step_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"step process {step_pid} still running after Ctrl-C")
    # nothing of the interrupted step was cached
    cached = [json.loads(p.read_text()) for p in (project / ".mlops/cache").rglob("*.json")]
    assert [c["step"] for c in cached] == ["quick"]
