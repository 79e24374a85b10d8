"""The quickstart's loop, closed, with the example specs as they ship and a real server:
`mlopsctl serve breast-cancer@champion` answers shifted traffic whose outcomes come back through
POST /feedback; `monitor check` of the served traffic finds drift (exit 4); `ct check --run`
of the loop trigger builds the served and labelled window, retrains on it plus the original set
(more training rows than the first run), registers v2 with the trigger as its reason and the
log and feedback datasets in its provenance, and runs the release check on v2. Each command is
its own process, as from cron."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.func.test_models import MODEL, quickstart_project

from .test_serving_server import ServerProcess, server_env, start_server

REPO = Path(__file__).resolve().parents[2]
SPECS = (
    "quickstart-retrain.yaml",
    "quickstart-window.yaml",
    "quickstart-served-monitor.yaml",
    "quickstart-loop-release.yaml",
    "quickstart-loop-trigger.yaml",
)

pytestmark = pytest.mark.slow


def mlopsctl(root: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlopsctl", *args],
        cwd=root,
        env=server_env(root),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def shifted_held_out() -> Any:
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    frame = load_breast_cancer(as_frame=True).frame
    held_out = train_test_split(frame, test_size=0.25, random_state=42, stratify=frame.target)[1]
    shifted = held_out.copy()
    for column in shifted.columns:
        if column.startswith(("mean ", "worst ")):
            shifted[column] *= 1.5
    return shifted


def serve_with_outcomes(server: ServerProcess, frame: Any) -> None:
    features = [c for c in frame.columns if c != "target"]
    outcomes = []
    for i, (_, row) in enumerate(frame.iterrows()):
        body = {"dataframe_split": {"columns": features, "data": [row[features].tolist()]}}
        status, _, _ = server.request(
            "POST", "/invocations", body, headers={"X-Request-ID": f"loop-{i}"}
        )
        assert status == 200
        outcomes.append({"request_id": f"loop-{i}", "actual": int(row["target"])})
    status, answer = server.json("POST", "/feedback", outcomes)
    assert status == 202 and answer == {"recorded": len(outcomes)}


def test_the_quickstart_loop(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    root = tmp_path / "demo"
    first = quickstart_project(tmp_path_factory, root)
    (root / "specs/examples").mkdir(parents=True)
    for name in SPECS:
        shutil.copy(REPO / "specs/examples" / name, root / "specs/examples" / name)
    moved = mlopsctl(root, "models", "alias", "set", MODEL, "champion", "1")
    assert moved.returncode == 0, moved.stderr

    shifted = shifted_held_out()
    server = start_server(root, f"{MODEL}@champion", "--log-interval", "1")
    try:
        serve_with_outcomes(server, shifted)
    finally:
        assert server.stop() == 0  # a graceful stop writes every logged row

    monitored = mlopsctl(root, "monitor", "check", "specs/examples/quickstart-served-monitor.yaml")
    assert monitored.returncode == 4, monitored.stdout + monitored.stderr
    assert (root / "reports/quickstart-served.html").is_file()

    trigger = "specs/examples/quickstart-loop-trigger.yaml"
    ran = mlopsctl(root, "ct", "check", trigger, "--run")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "trigger quickstart-loop: fired" in ran.stdout
    assert f"breast-cancer-served: {len(shifted)} labelled row(s) in [" in ran.stdout
    assert "registered breast-cancer v2" in ran.stdout
    assert "then release specs/examples/quickstart-loop-release.yaml: breast-cancer:2 passed" in (
        ran.stdout
    )

    record = json.loads(mlopsctl(root, "runs", "show", "latest", "--json").stdout)
    assert record["metrics"]["train_rows"] > first["metrics"]["train_rows"]
    assert record["reason"]["trigger"] == "quickstart-loop"
    assert record["reason"]["fired"] == ["drift"]
    shown = mlopsctl(root, "runs", "show", "latest").stdout
    assert (
        "reason     trigger quickstart-loop: drift: 1 of 1 check(s) of quickstart-served" in shown
    )

    version = json.loads(mlopsctl(root, "models", "show", f"{MODEL}:2", "--json").stdout)
    dataset = version["reason"]["dataset"]
    assert dataset["predictions"]["prefix"] == f"logs/predictions/{MODEL}/"
    assert dataset["feedback"]["prefix"] == f"logs/feedback/{MODEL}/"
    assert dataset["counts"]["labelled_rows"] == len(shifted)
    assert version["params"]["dataset"] == dataset["digest"]
    lineage = json.loads(mlopsctl(root, "datasets", "show", dataset["name"], "--json").stdout)
    assert [f["key"] for f in lineage["sources"]["predictions"]["files"]] == sorted(
        str(p.relative_to(root / ".mlops"))
        for p in (root / ".mlops/logs/predictions").rglob("*.parquet")
    )

    gates = json.loads(mlopsctl(root, "audit", "--type", "gate", "--json").stdout)
    assert [(g["version"], g["release"], g["passed"]) for g in gates] == [
        (2, "quickstart-loop", True)
    ]


SLOW = """apiVersion: mlopsctl/v1
kind: Pipeline
name: slow
params: {seconds: 60}
steps:
  slow:
    run: "echo started > started.txt; sleep ${params.seconds}; echo done > {outputs.out}"
    outputs: [out]
"""


def test_sigterm_during_ct_check_run_leaves_the_firing_interrupted_and_retry_runs_it(
    tmp_path: Path,
) -> None:
    """A real `ct check --run` stopped by SIGTERM: exit 143, the trigger's last run recorded
    `interrupted` (not left `running` until max_run), and `ct retry` runs the same firing
    again once fixed."""
    import signal
    import time

    from tests.conftest import git

    root = tmp_path / "demo"
    root.mkdir()
    assert git(root, "init", "-q").returncode == 0
    (root / "mlops.yaml").write_text(
        "apiVersion: mlopsctl/v1\nkind: Project\nname: demo\nstore: {url: .mlops}\n"
    )
    (root / "slow.yaml").write_text(SLOW)
    (root / "trigger.yaml").write_text(
        "apiVersion: mlopsctl/v1\nkind: Trigger\nname: t\npipeline: slow.yaml\n"
        "schedule: '* * * * *'\ncooldown: 1h\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlopsctl", "ct", "check", "trigger.yaml", "--run"],
        cwd=root,
        env=server_env(root),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (root / "started.txt").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, stderr
    state = json.loads((root / ".mlops/ct/t/state.json").read_text())["last_run"]
    assert state["status"] == "interrupted" and state["run"], state
    [firing] = (root / ".mlops/ct/t/history").iterdir()
    assert json.loads(firing.read_text())["run"]["signal"] == "SIGTERM"

    # Cooling down, so a check does not run it again; a retry does, on the same firing's data.
    quiet = mlopsctl(root, "ct", "check", "trigger.yaml", "--run", "--json")
    assert json.loads(quiet.stdout)["run"] is None
    (root / "slow.yaml").write_text(SLOW.replace("{seconds: 60}", "{seconds: 0}"))
    retried = mlopsctl(root, "ct", "retry", "trigger.yaml")
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert f"retry of firing {state['firing']} (interrupted run {state['run']}" in retried.stdout
    state = json.loads((root / ".mlops/ct/t/state.json").read_text())["last_run"]
    assert state["status"] == "succeeded" and state["retry_of"] == firing.stem
