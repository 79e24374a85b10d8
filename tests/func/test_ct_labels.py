"""Continuous training on new labelled data, through `mlopsctl ct check` on a project whose
breast-cancer champion (v1) was trained on the scikit-learn copy: the serving logs hold shifted
traffic with outcomes (written here as `mlopsctl serve` and POST /feedback write them; the
integration test tests/integration/test_ct_loop.py sends them through a real server), a drift
finding is recorded, and the trigger of the quickstart's loop (specs/examples, without its cooldown) retrains on the
labelled window plus the original set, chains the release check, then does not fire again
without new labels; a retry of the same data registers nothing; a run stopped by a signal is
recorded as interrupted and `ct retry` runs it again."""

from __future__ import annotations

import io
import json
import shutil
import signal
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import git

from .conftest import Invoke

REPO = Path(__file__).resolve().parents[2]
MODEL = "breast-cancer"
SPECS = (
    "quickstart.yaml",
    "quickstart-retrain.yaml",
    "quickstart-window.yaml",
    "quickstart-served-monitor.yaml",
    "quickstart-loop-release.yaml",
    "quickstart-loop-trigger.yaml",
)
TRIGGER = "specs/examples/quickstart-loop-trigger.yaml"


def shifted_rows() -> Any:
    """The quickstart's held-out rows with every "mean"/"worst" measurement 1.5 times larger."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    frame = load_breast_cancer(as_frame=True).frame
    held_out = train_test_split(frame, test_size=0.25, random_state=42, stratify=frame.target)[1]
    shifted = held_out.copy()
    for column in shifted.columns:
        if column.startswith(("mean ", "worst ")):
            shifted[column] *= 1.5
    return shifted.reset_index(drop=True)


def write_logs(root: Path, frame: Any, ids: list[str], when: datetime, labelled: int) -> None:
    """One prediction log file with a row per request (as `mlopsctl serve` logs it), and one
    feedback file with the true outcome of the first `labelled` of them (as POST /feedback
    writes it: the label as text)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlopsctl.config import load_project, open_project_store

    n = len(ids)
    stamps = [when + timedelta(seconds=i) for i in range(n)]
    columns: dict[str, Any] = {
        "request_id": ids,
        "row": pa.array([0] * n, pa.int32()),
        "ts": pa.array(stamps, pa.timestamp("ms", tz="UTC")),
        "model": [MODEL] * n,
        "version": pa.array([1] * n, pa.int64()),
        "arm": ["default"] * n,
        "latency_ms": [1.0] * n,
    }
    for name in frame.columns:
        if name != "target":
            columns[name] = pa.array(frame[name].astype(float).tolist(), pa.float64())
    columns["prediction"] = pa.array([1] * n, pa.int64())
    columns["score"] = [0.9] * n
    day = when.strftime("%Y-%m-%d")
    tag = ids[0]
    with open_project_store(load_project(root)) as store:
        for kind, table in (
            ("predictions", pa.table(columns)),
            (
                "feedback",
                pa.table(
                    {
                        "request_id": ids[:labelled],
                        "ts": pa.array(
                            [s + timedelta(minutes=1) for s in stamps[:labelled]],
                            pa.timestamp("ms", tz="UTC"),
                        ),
                        "actual": [str(int(t)) for t in frame["target"][:labelled]],
                    }
                ),
            ),
        ):
            sink = io.BytesIO()
            pq.write_table(table, sink, compression="zstd")
            store.put(f"logs/{kind}/{MODEL}/date={day}/{tag}-{kind}.parquet", sink.getvalue())


def drift_found(root: Path) -> None:
    """A drift finding of the served-traffic monitor, as `mlopsctl monitor check` records it;
    a second after what came before (the trigger counts findings made after its last run
    started, in whole seconds)."""
    import time

    from mlopsctl.config import load_project, open_project_store
    from mlopsctl.events import record_event

    time.sleep(1.1)

    with open_project_store(load_project(root)) as store:
        record_event(
            store,
            "drift",
            monitor="quickstart-served",
            model=MODEL,
            version=1,
            verdict="failed",
            drift=True,
            drift_share=0.67,
            drifted_features=["mean radius", "worst area"],
            prediction_drift=True,
        )


@pytest.fixture
def served(
    tmp_path_factory: pytest.TempPathFactory,
    tmp_path: Path,
    cli: Invoke,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    """A copy of a project with the quickstart's loop specs whose champion (v1, 10 trees) was
    trained on the scikit-learn copy by quickstart-retrain.yaml (no dataset given); trained
    once per session."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    base = tmp_path_factory.getbasetemp() / "ct-labels-trained"
    if not (base / "done").exists():
        shutil.rmtree(base, ignore_errors=True)
        root = base / "demo"
        (root / "specs/examples").mkdir(parents=True)
        (root / "mlops.yaml").write_text(
            "apiVersion: mlopsctl/v1\nkind: Project\nname: demo\nstore: {url: .mlops}\n"
        )
        (root / ".gitignore").write_text(".mlops/\n")
        for name in SPECS:
            text = (REPO / "specs/examples" / name).read_text()
            if name == "quickstart-retrain.yaml":  # small models: the test is about the loop
                text = text.replace("n_estimators: 200", "n_estimators: 10")
            if name == "quickstart-loop-trigger.yaml":  # checks follow each other at once here
                assert "cooldown: 1h\n" in text
                text = text.replace("cooldown: 1h\n", "")
            (root / "specs/examples" / name).write_text(text)
        for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "loop"]):
            assert git(root, *args).returncode == 0
        result = cli("run", "specs/examples/quickstart-retrain.yaml", "--json", cwd=root)
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout)["metrics"]["train_rows"] == 426
        result = cli("models", "alias", "set", MODEL, "champion", "1", cwd=root)
        assert result.exit_code == 0, result.stderr
        (base / "done").write_text("")
    root = tmp_path / "demo"
    shutil.copytree(base / "demo", root, symlinks=True)
    monkeypatch.chdir(root)
    return root


def test_retrains_on_new_labels_only_and_never_registers_the_same_model(
    served: Path, cli: Invoke
) -> None:
    rows = shifted_rows()
    now = datetime.now(timezone.utc).replace(microsecond=0)
    ids = [f"req-{i}" for i in range(len(rows))]
    write_logs(served, rows, ids, now - timedelta(hours=3), labelled=100)

    # No finding yet: nothing fires, and the logs are not even read.
    quiet = json.loads(cli("ct", "check", TRIGGER, "--run", "--json", cwd=served).stdout)
    assert quiet["fired"] == [] and quiet["data"] is None and quiet["run"] is None

    drift_found(served)
    ran = cli("ct", "check", TRIGGER, "--run", cwd=served)
    assert ran.exit_code == 0, ran.stdout + ran.stderr
    assert "trigger quickstart-loop: fired" in ran.stdout
    assert "labels       NEW    breast-cancer-served: 100 labelled row(s) in [" in ran.stdout, (
        ran.stdout
    )
    assert "none trained on before" in ran.stdout
    assert "registered breast-cancer v2" in ran.stdout
    assert (
        "then release specs/examples/quickstart-loop-release.yaml: breast-cancer:2 passed "
        "(signature pass, threshold pass)" in ran.stdout
    )

    # The run trained on the served, labelled window plus the original set, for the trigger.
    record = json.loads(cli("runs", "show", "latest", "--json", cwd=served).stdout)
    assert record["metrics"]["train_rows"] == int((100 + 569) * 0.75)  # 426 for v1
    assert record["reason"]["trigger"] == "quickstart-loop"
    dataset = record["reason"]["dataset"]
    assert record["params"]["dataset"] == dataset["digest"]
    shown = cli("runs", "show", "latest", cwd=served).stdout
    assert "reason     trigger quickstart-loop: drift: 1 of 1 check(s)" in shown

    # The version's provenance names the log and feedback datasets it came from.
    version = json.loads(cli("models", "show", f"{MODEL}:2", "--json", cwd=served).stdout)
    named = version["reason"]["dataset"]
    assert named["digest"] == dataset["digest"] and named["mix"] == ["sklearn:breast_cancer"]
    assert named["predictions"] == {"prefix": f"logs/predictions/{MODEL}/", "files": 1}
    assert named["feedback"] == {"prefix": f"logs/feedback/{MODEL}/", "files": 1}
    assert named["counts"]["labelled_rows"] == 100
    assert named["counts"]["unlabelled_rows"] == len(rows) - 100
    lineage = json.loads(cli("datasets", "show", named["name"], "--json", cwd=served).stdout)
    assert lineage["digest"] == dataset["digest"]
    keys = [f["key"] for f in lineage["sources"]["feedback"]["files"]]
    assert keys == [
        f"logs/feedback/{MODEL}/date={(now - timedelta(hours=3)):%Y-%m-%d}/req-0-feedback.parquet"
    ]
    events = json.loads(cli("audit", "--type", "gate", "--json", cwd=served).stdout)
    assert [(e["version"], e["passed"]) for e in events] == [(2, True)]

    # Drift again, no new outcome: the trigger fires but does not retrain, and says why.
    drift_found(served)
    again = cli("ct", "check", TRIGGER, "--run", "--json", cwd=served)
    assert again.exit_code == 0, again.stderr
    decision = json.loads(again.stdout)
    assert decision["fired"] == ["drift"] and not decision["due"] and decision["run"] is None
    assert decision["data"]["new_labels"] == 0 and not decision["data"]["enough"]
    assert (
        "no new labelled data: 0 label(s) newer than the last triggered run's data"
        in (decision["why"])
    )
    runs = sorted((served / ".mlops/runs").rglob("*.json"))
    assert len(runs) == 2
    text = cli("ct", "check", TRIGGER, cwd=served).stdout
    assert "labels       -      breast-cancer-served: no new labelled data" in text

    # The same data again (ct retry --force): the very same model, nothing registered.
    retried = cli("ct", "retry", TRIGGER, "--force", cwd=served)
    assert retried.exit_code == 0, retried.stdout + retried.stderr
    assert "identical to version 2, nothing registered" in retried.stdout
    assert "then release specs/examples/quickstart-loop-release.yaml: skipped" in retried.stdout
    versions = json.loads(cli("models", "list", MODEL, "--json", cwd=served).stdout)
    assert [v["version"] for v in versions] == [1, 2]

    # Outcomes of earlier predictions arrive: new labels, due again.
    write_logs(served, rows.iloc[100:], ids[100:], now - timedelta(hours=2), labelled=20)
    drift_found(served)
    due = json.loads(cli("ct", "check", TRIGGER, "--json", cwd=served).stdout)
    assert due["due"] and due["data"]["new_labels"] == 20, due["why"]
    assert due["data"]["labelled_rows"] == 120


def test_an_interrupted_run_is_recorded_and_retried(
    served: Path, cli: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlopsctl.app import retrain
    from mlopsctl.app.run import run_pipeline
    from mlopsctl.config import load_project, open_project_store
    from mlopsctl.ct import list_history, read_state
    from mlopsctl.pipeline.executor import RunInterrupted

    rows = shifted_rows()
    now = datetime.now(timezone.utc).replace(microsecond=0)
    write_logs(served, rows, [f"q-{i}" for i in range(len(rows))], now - timedelta(hours=1), 40)
    drift_found(served)

    def stopped(*args: Any, **kwargs: Any) -> Any:
        raise RunInterrupted(signal.SIGTERM, "20260101-000000-000-abcdef", "interrupted")

    monkeypatch.setattr("mlopsctl.app.run.run_pipeline", stopped)
    with pytest.raises(RunInterrupted):
        retrain.check_trigger(served / TRIGGER, run=True)
    with open_project_store(load_project(served)) as store:
        last = read_state(store, "quickstart-loop")[0]["last_run"]
        history = list_history(store, "quickstart-loop")
    assert last["status"] == "interrupted" and last["run"] == "20260101-000000-000-abcdef"
    assert last["dataset"]["rows"] == 40 + 569 and last["params"]["dataset"].startswith("sha256:")
    assert history[-1]["run"]["signal"] == "SIGTERM"

    # Not due again on the same labels: retry it once fixed.
    quiet = json.loads(cli("ct", "check", TRIGGER, "--json", cwd=served).stdout)
    assert not quiet["due"]
    monkeypatch.setattr("mlopsctl.app.run.run_pipeline", run_pipeline)
    again = cli("ct", "retry", TRIGGER, cwd=served)
    assert again.exit_code == 0, again.stdout + again.stderr
    assert again.stdout.startswith(f"trigger quickstart-loop: retry of firing {last['firing']}")
    assert "registered breast-cancer v2" in again.stdout
    record = json.loads(cli("runs", "show", "latest", "--json", cwd=served).stdout)
    assert record["reason"]["retry_of"] == last["firing"]
    assert record["params"]["dataset"] == last["params"]["dataset"]
    refused = cli("ct", "retry", TRIGGER, cwd=served)
    assert refused.exit_code == 2 and "succeeded, so there is nothing to retry" in refused.stderr
