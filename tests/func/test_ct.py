"""`mlopsctl ct check` on a project that trained the quickstart model from a CSV file: quiet
while the data is the champion's, fires when the data changes, and with --run retrains with
the trigger named in the new run's record, state, history and audit log."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import git

from .conftest import Invoke

REPO = Path(__file__).resolve().parents[2]
MODEL = "breast-cancer"


def _rows() -> Any:
    """The breast-cancer table in a fixed random order: the file lists it by diagnosis, so a
    prefix of it would not look like the rest."""
    from sklearn.datasets import load_breast_cancer

    return load_breast_cancer(as_frame=True).frame.sample(frac=1.0, random_state=7)


def _quickstart_from_csv(root: Path) -> None:
    (root / "pipelines").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "mlops.yaml").write_text(
        "apiVersion: mlopsctl/v1\nkind: Project\nname: demo\nstore: {url: .mlops}\n"
    )
    (root / ".gitignore").write_text(".mlops/\n")
    spec = (REPO / "specs/examples/quickstart.yaml").read_text()
    assert "with: {sklearn: breast_cancer}" in spec
    spec = spec.replace("with: {sklearn: breast_cancer}", "with: {path: data/bc.csv}")
    (root / "pipelines/quickstart.yaml").write_text(spec)
    _rows().iloc[:400].to_csv(root / "data/bc.csv", index=False)
    (root / "trigger.yaml").write_text(
        "apiVersion: mlopsctl/v1\nkind: Trigger\nname: bc-retrain\n"
        "pipeline: pipelines/quickstart.yaml\nexperiment: ct\n"
        "params: {model: {n_estimators: 10}}\n"
        "new_data: {min_new_rows: 50}\ncooldown: 1h\n"
    )
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "quickstart"]):
        assert git(root, *args).returncode == 0


@pytest.fixture
def demo(
    tmp_path_factory: pytest.TempPathFactory,
    tmp_path: Path,
    cli: Invoke,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    """A copy of a project whose champion (v1, 10 trees) was trained on the first 400 rows;
    the training happens once per session."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    base = tmp_path_factory.getbasetemp() / "ct-trained"
    if not (base / "done").exists():
        shutil.rmtree(base, ignore_errors=True)
        _quickstart_from_csv(base / "demo")
        result = cli(
            "run", "pipelines/quickstart.yaml", "-p", "model.n_estimators=10", cwd=base / "demo"
        )
        assert result.exit_code == 0, result.stderr
        result = cli("models", "alias", "set", MODEL, "champion", "1", cwd=base / "demo")
        assert result.exit_code == 0, result.stderr
        (base / "done").write_text("")
    root = tmp_path / "demo"
    shutil.copytree(base / "demo", root, symlinks=True)
    monkeypatch.chdir(root)
    return root


def test_new_data_fires_and_run_retrains_naming_the_trigger(demo: Path, cli: Invoke) -> None:
    quiet = cli("ct", "check", "trigger.yaml", "--run", "--exit-code", cwd=demo)
    assert quiet.exit_code == 0, quiet.stderr
    assert quiet.stdout.startswith("trigger bc-retrain: not fired\n")
    assert "same data as breast-cancer@champion (v1" in quiet.stdout

    # 30 more rows: the digest changed, but fewer new rows than min_new_rows.
    frame = _rows()
    frame.iloc[:430].to_csv(demo / "data/bc.csv", index=False)
    few = cli("ct", "check", "trigger.yaml", "--json", cwd=demo)
    assert few.exit_code == 0, few.stderr
    decision = json.loads(few.stdout)
    assert decision["fired"] == [] and decision["conditions"][0]["new_rows"] == 30

    frame.to_csv(demo / "data/bc.csv", index=False)  # all 569 rows: 169 new
    due = cli("ct", "check", "trigger.yaml", "--exit-code", cwd=demo)
    assert due.exit_code == 4, due.stdout + due.stderr
    assert "new_data     FIRED  ingest.path" in due.stdout
    assert "(169 new rows)" in due.stdout

    ran = cli("ct", "check", "trigger.yaml", "--run", "--json", cwd=demo)
    assert ran.exit_code == 0, ran.stderr
    decision = json.loads(ran.stdout)
    assert decision["run"]["status"] == "succeeded"
    assert decision["run"]["registered"] == {"model": MODEL, "version": 2, "new": True}
    run_id = decision["run"]["id"]
    assert decision["state"]["last_run"]["run"] == run_id

    shown = cli("runs", "show", run_id, "--json", cwd=demo)
    record = json.loads(shown.stdout)
    assert record["reason"]["trigger"] == "bc-retrain"
    assert record["reason"]["fired"] == ["new_data"]
    assert "ingest.path" in record["reason"]["why"]
    assert record["experiment"] == "ct"
    assert record["params"]["model"]["n_estimators"] == 10
    text = cli("runs", "show", run_id, cwd=demo).stdout
    assert "reason     trigger bc-retrain: new_data: ingest.path" in text

    events = json.loads(cli("audit", "--json", cwd=demo).stdout)
    trigger_events = [e for e in events if e["type"] == "trigger"]
    assert len(trigger_events) == 1 and trigger_events[0]["run"] == run_id
    assert trigger_events[0]["model"] == MODEL

    assert decision["state"]["last_run"]["status"] == "succeeded"
    assert decision["state"]["last_run"]["inputs"] == record["data"]

    # The champion is still v1 (promotion is release's job, and its gates may never promote
    # v2), so the data still differs from its run, but not from the retrain's: nothing fires,
    # now or after the cooldown.
    again = cli("ct", "check", "trigger.yaml", "--run", "--json", cwd=demo)
    decision = json.loads(again.stdout)
    assert decision["fired"] == [] and not decision["due"] and decision["run"] is None
    started = decision["state"]["last_run"]["started"]
    assert decision["conditions"][0]["why"] == (
        f"same data as the last triggered run (succeeded, started {started}, run {run_id})"
    )
    assert len(list((demo / ".mlops/ct/bc-retrain/history").iterdir())) == 1


def test_a_triggered_run_in_progress_is_reported_and_not_doubled(demo: Path, cli: Invoke) -> None:
    """A claim left `running` by a triggered run still training: `ct check --run` starts no
    second run (exit 0, also with --exit-code); once older than max_run it is stale, and the
    check is due again."""
    from datetime import datetime, timedelta, timezone

    from mlopsctl.config import load_project, open_project_store
    from mlopsctl.ct import write_state
    from mlopsctl.timeutil import stamp as iso

    _rows().to_csv(demo / "data/bc.csv", index=False)  # new_data fires (169 new rows)
    store = open_project_store(load_project(demo))
    started = datetime.now(timezone.utc) - timedelta(minutes=20)
    claim = {"firing": "f1", "started": iso(started), "status": "running", "run": None}
    etag = write_state(store, "bc-retrain", {"trigger": "bc-retrain", "last_run": claim}, None)
    runs_before = sorted((demo / ".mlops/runs").rglob("*.json"))
    assert runs_before  # the champion's run

    busy = cli("ct", "check", "trigger.yaml", "--run", "--exit-code", cwd=demo)
    assert busy.exit_code == 0, busy.stdout + busy.stderr
    assert busy.stdout.startswith("trigger bc-retrain: fired, a triggered run is still running\n")
    assert f"running      ACTIVE since {iso(started)}" in busy.stdout
    decision = json.loads(cli("ct", "check", "trigger.yaml", "--json", cwd=demo).stdout)
    assert decision["why"].startswith(f"a triggered run started at {iso(started)} is still running")
    assert sorted((demo / ".mlops/runs").rglob("*.json")) == runs_before
    assert not (demo / ".mlops/ct/bc-retrain/history").exists()

    crashed = {**claim, "started": iso(started - timedelta(hours=6))}
    write_state(store, "bc-retrain", {"trigger": "bc-retrain", "last_run": crashed}, etag)
    store.close()
    stale = cli("ct", "check", "trigger.yaml", "--exit-code", cwd=demo)
    assert stale.exit_code == 4, stale.stdout + stale.stderr
    assert "running      STALE" in stale.stdout
    decision = json.loads(cli("ct", "check", "trigger.yaml", "--json", cwd=demo).stdout)
    assert decision["due"] and decision["running"]["stale"]
    assert decision["why"].endswith("did not finish within max_run 6h and is taken as crashed")


def test_missing_pipeline_and_bad_spec(demo: Path, cli: Invoke) -> None:
    (demo / "broken.yaml").write_text(
        "apiVersion: mlopsctl/v1\nkind: Trigger\nname: x\npipeline: nope.yaml\nschedule: '@daily'\n"
    )
    missing = cli("ct", "check", "broken.yaml", cwd=demo)
    assert missing.exit_code == 6
    assert "the trigger's pipeline spec nope.yaml does not exist" in missing.stderr
    (demo / "broken.yaml").write_text(
        "apiVersion: mlopsctl/v1\nkind: Trigger\nname: x\npipeline: nope.yaml\n"
    )
    invalid = cli("ct", "check", "broken.yaml", cwd=demo)
    assert invalid.exit_code == 3
    assert "needs at least one of 'schedule'" in invalid.stderr


def test_drift_found_by_the_monitor_retrains(demo: Path, cli: Invoke) -> None:
    """The quickstart path: the monitor passes on held-out rows like the training data, finds
    drift on a shifted copy (HTML report, drift event), and `ct check --run` then retrains with
    the drift named in the new run's record. (`mlopsctl monitor check` itself is tested with
    the monitor; this drives its service, which is what the trigger calls.)"""
    held_out = _rows().iloc[400:].drop(columns="target")
    held_out.to_csv(demo / "data/held-out.csv", index=False)
    shifted = held_out.copy()
    for column in ("mean radius", "mean texture", "worst area", "mean smoothness"):
        shifted[column] = shifted[column] * 1.6
    shifted.to_csv(demo / "data/shifted.csv", index=False)
    (demo / "monitor.yaml").write_text(
        "apiVersion: mlopsctl/v1\nkind: Monitor\nname: bc-monitor\n"
        f"model: {MODEL}@champion\ncurrent: {{path: data/held-out.csv}}\n"
        "drift_share: 0.1\nreport: {path: reports/bc-monitor.html}\n"
    )
    (demo / "drift-trigger.yaml").write_text(
        "apiVersion: mlopsctl/v1\nkind: Trigger\nname: bc-drift\n"
        "pipeline: pipelines/quickstart.yaml\nparams: {model: {n_estimators: 10}}\n"
        "drift: {monitor: monitor.yaml}\ncooldown: 1h\n"
    )
    from mlopsctl.config import load_project
    from mlopsctl.monitor import run_monitor

    project = load_project(demo)
    passed = run_monitor(demo / "monitor.yaml", project=project)
    assert not passed["failed"] and not passed["drift"], passed["drifted_features"]
    quiet = cli("ct", "check", "drift-trigger.yaml", "--run", "--json", cwd=demo)
    assert quiet.exit_code == 0, quiet.stderr
    assert json.loads(quiet.stdout)["fired"] == []

    drifted = run_monitor(demo / "monitor.yaml", current="data/shifted.csv", project=project)
    assert drifted["failed"] and drifted["drift"]
    assert (demo / "reports/bc-monitor.html").is_file()
    (demo / "data/shifted.csv").replace(demo / "data/held-out.csv")  # serving data shifted

    ran = cli("ct", "check", "drift-trigger.yaml", "--run", "--json", cwd=demo)
    assert ran.exit_code == 0, ran.stderr
    decision = json.loads(ran.stdout)
    assert decision["fired"] == ["drift"]
    drift = decision["conditions"][0]
    assert "mean radius" in drift["drifted_features"] and drift["event"]
    assert decision["run"]["status"] == "succeeded"
    record = json.loads(cli("runs", "show", decision["run"]["id"], "--json", cwd=demo).stdout)
    assert record["reason"]["trigger"] == "bc-drift"
    assert record["reason"]["fired"] == ["drift"]
    assert "drift found" in record["reason"]["why"]

    events = json.loads(cli("audit", "--json", cwd=demo).stdout)
    kinds = [e["type"] for e in events]
    assert kinds.count("drift") == 4 and kinds.count("trigger") == 1


def test_quickstart_monitor_then_ct_check_retrains(
    tmp_path_factory: pytest.TempPathFactory,
    tmp_path: Path,
    cli: Invoke,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The README's quickstart, with the example specs as they ship: the monitor passes on the
    held-out split, fails (exit 4, report, event) on a shifted copy, and the quickstart trigger
    (source: events) then retrains, naming itself in the new run's record."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    from .test_models import quickstart_project

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = tmp_path / "demo"
    quickstart_project(tmp_path_factory, root)
    (root / "specs/examples").mkdir(parents=True)
    for name in ("quickstart.yaml", "quickstart-monitor.yaml", "quickstart-trigger.yaml"):
        shutil.copy(REPO / "specs/examples" / name, root / "specs/examples" / name)
    frame = load_breast_cancer(as_frame=True).frame
    test = train_test_split(frame, test_size=0.25, random_state=42, stratify=frame.target)[1]
    (root / "data").mkdir()
    test.to_csv(root / "data/current.csv", index=False)
    shifted = test.copy()
    for column in shifted.columns:
        if column.startswith(("mean ", "worst ")):
            shifted[column] = shifted[column] * 1.5
    shifted.to_csv(root / "data/shifted.csv", index=False)
    monitor, trigger = (
        "specs/examples/quickstart-monitor.yaml",
        "specs/examples/quickstart-trigger.yaml",
    )

    passed = cli("monitor", "check", monitor, cwd=root)
    assert passed.exit_code == 0, passed.stdout + passed.stderr
    quiet = cli("ct", "check", trigger, "--run", "--json", cwd=root)
    assert quiet.exit_code == 0, quiet.stderr
    assert json.loads(quiet.stdout)["fired"] == []

    failed = cli(
        "monitor",
        "check",
        monitor,
        "--current",
        "data/shifted.csv",
        "--report",
        "reports/shifted.html",
        cwd=root,
    )
    assert failed.exit_code == 4, failed.stdout + failed.stderr
    assert (root / "reports/shifted.html").is_file()

    ran = cli("ct", "check", trigger, "--run", cwd=root)
    assert ran.exit_code == 0, ran.stderr
    assert "trigger quickstart-retrain: fired" in ran.stdout
    assert "drift        FIRED  1 of 2 check(s) of quickstart-monitor" in ran.stdout
    shown = cli("runs", "show", "latest", cwd=root)
    assert "reason     trigger quickstart-retrain: drift: 1 of 2 check(s)" in shown.stdout
    record = json.loads(cli("runs", "show", "latest", "--json", cwd=root).stdout)
    assert record["reason"]["trigger"] == "quickstart-retrain"
    assert record["status"] == "succeeded"

    # Nothing checked since the retraining: no new finding, nothing fires.
    after = json.loads(cli("ct", "check", trigger, "--json", cwd=root).stdout)
    assert after["fired"] == []
    assert after["conditions"][0]["why"].startswith(
        "no check of monitor quickstart-monitor recorded since"
    )
