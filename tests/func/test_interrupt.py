"""Ctrl-C during a run: the step processes are stopped, the run is recorded as interrupted (with
the signal), the interrupted step is never cached, and the exit code is 130. A run whose owner
died reads as `abandoned` (tests/integration/test_run_signals.py kills real runs)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlopsctl.config import load_project, open_project_store
from mlopsctl.runs import RunLease, effective_status, new_run_id, owner
from mlopsctl.timeutil import stamp
from tests.func.conftest import Invoke

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
    # Progress lines (one per step start and end) may come first; the error is one line, last.
    errors = [x for x in stderr.strip().splitlines() if x.startswith("mlopsctl: ")]
    assert len(errors) == 1, stderr
    assert "interrupted" in errors[0] and stderr.strip().endswith(errors[0])

    runs = list((project / ".mlops/runs").glob("*.json"))
    assert len(runs) == 1
    record = json.loads(runs[0].read_text())
    assert record["status"] == "interrupted"
    assert record["signal"] == "SIGINT"
    assert record["id"] in errors[0]
    assert not list((project / ".mlops/runs").glob("live/*.json"))  # no live record left
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


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait(timeout=30)
    return child.pid


def _live(run_id: str, **fields: object) -> dict:
    """A run record as written while the run is in progress."""
    record = {
        "id": run_id,
        "kind": "pipeline",
        "pipeline": "slow",
        "experiment": "slow",
        "status": "running",
        "started": stamp(),
        "params": {},
        "metrics": {},
        "steps": {"slow": {"status": "running"}},
        "order": ["slow"],
        **owner(),
        "heartbeat": stamp(),
        "heartbeat_s": 30.0,
    }
    record.update(fields)
    return record


@pytest.mark.parametrize(
    ("fields", "shown"),
    [
        ({}, "running"),  # this process: alive, fresh heartbeat
        ({"pid": "dead"}, "abandoned"),  # same host, its process is gone
        ({"host": "elsewhere", "pid": "dead"}, "running"),  # another host: the heartbeat decides
        ({"host": "elsewhere", "heartbeat": 600}, "abandoned"),  # seconds ago
        ({"host": "elsewhere", "heartbeat": 60}, "running"),  # < 3 x 30 s
        ({"host": "elsewhere", "heartbeat_s": 5.0, "heartbeat": 60}, "abandoned"),
    ],
)
def test_a_running_record_whose_owner_died_reads_abandoned(
    project: Path, cli: Invoke, fields: dict, shown: str
) -> None:
    if fields.get("pid") == "dead":
        fields = {**fields, "pid": _dead_pid()}
    if "heartbeat" in fields:
        fields = {**fields, "heartbeat": stamp(time.time() - float(fields["heartbeat"]))}
    run_id = new_run_id()
    with open_project_store(load_project(project)) as store:
        lease = RunLease(store, lambda: _live(run_id, **fields), every_s=3600)
        lease.start()
    listed = cli("runs", "list", "--json", cwd=project)
    assert listed.exit_code == 0, listed.stderr
    assert [(r["id"], r["status"]) for r in json.loads(listed.stdout)] == [(run_id, shown)]
    by_experiment = json.loads(cli("runs", "list", "-e", "slow", "--json").stdout)
    assert [(r["id"], r["status"]) for r in by_experiment] == [(run_id, shown)]
    text = cli("runs", "show", run_id[:17])
    assert text.exit_code == 0, text.stderr
    assert f"({shown})" in text.stdout
    record = json.loads(cli("runs", "show", run_id, "--json").stdout)
    assert record["status"] == shown


def test_the_final_record_hides_a_live_one_left_behind(project: Path, cli: Invoke) -> None:
    (project / "pipelines/quick.yaml").write_text(
        "apiVersion: mlopsctl/v1\nkind: Pipeline\nname: quick\nsteps:\n"
        "  only:\n    run: 'echo hi > {outputs.out}'\n    outputs: [out]\n"
    )
    result = cli("run", "pipelines/quick.yaml", "--json", cwd=project)
    assert result.exit_code == 0, result.stderr
    run_id = json.loads(result.stdout)["id"]
    with open_project_store(load_project(project)) as store:
        assert not list(store.list("runs/live/"))  # the run deleted its live record
        # as if that delete had failed: the final record wins wherever the run is read
        RunLease(store, lambda: _live(run_id), every_s=3600).start()
    listed = json.loads(cli("runs", "list", "--json").stdout)
    assert [(r["id"], r["status"]) for r in listed] == [(run_id, "succeeded")]
    assert json.loads(cli("runs", "show", run_id, "--json").stdout)["status"] == "succeeded"
    assert json.loads(cli("runs", "show", run_id[:17], "--json").stdout)["status"] == "succeeded"


def test_records_without_a_heartbeat_keep_their_status() -> None:
    # Records written before runs had heartbeats, and every final record.
    assert effective_status({"id": "x", "status": "succeeded"}) == "succeeded"
    assert effective_status({"id": "x", "status": "running"}) == "running"
    assert effective_status({"id": "x"}) == "?"


def test_a_failed_steps_work_folder_is_kept_and_marked(project: Path, cli: Invoke) -> None:
    (project / "pipelines/fail.yaml").write_text(
        "apiVersion: mlopsctl/v1\nkind: Pipeline\nname: fail\nsteps:\n"
        "  boom:\n    run: 'exit 3'\n    outputs: [out]\n"
    )
    result = cli("run", "pipelines/fail.yaml", "--json", cwd=project)
    assert result.exit_code == 1
    workdir = Path(json.loads(result.stdout)["steps"]["boom"]["workdir"])
    try:
        assert workdir.name.startswith(f"mlopsctl-{os.getpid()}-boom-")
        assert (workdir / "step.log").exists()
        assert (workdir / ".mlopsctl-kept").exists()  # the next run's clean-up leaves it alone
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
