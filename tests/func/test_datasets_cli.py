"""`mlopsctl datasets build/list/show` and `validate` of a Dataset spec, in a project whose store
holds serving logs written as `mlopsctl serve` writes them."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from .conftest import Invoke

SPEC = """\
apiVersion: mlopsctl/v1
kind: Dataset
name: churn-window
from_logs:
  model: churn
  window: 2d
  until: "2026-05-03"
mix:
  path: data/original.csv
"""


@pytest.fixture
def logged(project: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlopsctl.config import load_project, open_project_store

    start = datetime(2026, 5, 1, 12, tzinfo=timezone.utc)
    stamps = [start + timedelta(hours=i) for i in range(4)]
    pred = pa.table(
        {
            "request_id": ["a", "b", "c", "d"],
            "row": pa.array([0, 0, 0, 0], pa.int32()),
            "ts": pa.array(stamps, pa.timestamp("ms", tz="UTC")),
            "model": ["churn"] * 4,
            "version": pa.array([1] * 4, pa.int64()),
            "arm": ["default"] * 4,
            "latency_ms": [1.0] * 4,
            "tenure": [1.0, 2.0, 3.0, 4.0],
            "plan": ["basic", "pro", "pro", "basic"],
            "prediction": ["no"] * 4,
        }
    )
    feed = pa.table(
        {
            "request_id": ["a", "b", "b"],
            "ts": pa.array([stamps[1], stamps[2], stamps[3]], pa.timestamp("ms", tz="UTC")),
            "actual": ["yes", "no", "yes"],
        }
    )
    with open_project_store(load_project(project)) as store:
        for kind, table in (("predictions", pred), ("feedback", feed)):
            sink = io.BytesIO()
            pq.write_table(table, sink)
            store.put(f"logs/{kind}/churn/date=2026-05-01/120000-1-000001.parquet", sink.getvalue())
    (project / "data").mkdir(exist_ok=True)
    (project / "data/original.csv").write_text("tenure,plan,target\n10,basic,no\n20,pro,no\n")
    (project / "specs").mkdir(exist_ok=True)
    (project / "specs/window.yaml").write_text(SPEC)
    return project


def test_build_list_show(logged: Path, cli: Invoke) -> None:
    built = cli("datasets", "build", "specs/window.yaml", cwd=logged)
    assert built.exit_code == 0, built.stderr
    lines = built.stdout.splitlines()
    assert lines[0].startswith("dataset churn-window sha256:")
    assert lines[1] == "  rows       4 (2 features + target)"
    assert lines[2] == (
        "  window     [2026-05-01T00:00:00Z, 2026-05-03T00:00:00Z) of prediction time; outcomes "
        f"recorded up to {json.loads(cli('datasets', 'show', 'churn-window', '--json').stdout)['window']['labels_until']}"
    )
    assert (
        lines[3]
        == "  logged     4 rows: 2 labelled (0 late), 2 unlabelled (dropped), 0 duplicate(s)"
    )
    assert lines[4] == (
        "  feedback   3 outcomes: 1 superseded by a later one, 0 without a prediction in the window"
    )
    assert lines[5] == "  mixed      2 rows (data/original.csv)"
    digest = lines[0].split()[-1]

    quiet = cli("datasets", "build", "specs/window.yaml", "-q", cwd=logged)
    assert quiet.stdout == f"{digest}\n"  # the same table: the same digest
    again = cli("datasets", "build", "specs/window.yaml", "--json", cwd=logged)
    record = json.loads(again.stdout)
    assert record["existing"] is True and record["digest"] == digest
    assert record["spec"]["path"] == "specs/window.yaml"
    assert record["sources"]["mix"][0]["source"] == "data/original.csv"

    listed = cli("datasets", "list", cwd=logged).stdout.splitlines()
    assert len(listed) == 1 and "churn-window" in listed[0] and digest[:19] in listed[0]
    shown = cli("datasets", "show", f"churn-window@{digest[7:19]}", cwd=logged)
    assert shown.exit_code == 0, shown.stderr
    assert "    logs/predictions/churn/date=2026-05-01/120000-1-000001.parquet  sha256:" in (
        shown.stdout
    )
    from mlopsctl.config import load_project, open_project_store
    from mlopsctl.datasets import read_blob_table

    with open_project_store(load_project(logged)) as store:
        table = read_blob_table(store, digest)
    assert table.to_pydict() == {
        "tenure": [1.0, 2.0, 10.0, 20.0],
        "plan": ["basic", "pro", "basic", "pro"],
        "target": ["yes", "yes", "no", "no"],  # b: its latest outcome
    }


def test_no_labelled_rows_and_bad_specs(logged: Path, cli: Invoke) -> None:
    (logged / "specs/logs-only.yaml").write_text(SPEC.split("mix:")[0])
    early = cli(
        "datasets", "build", "specs/logs-only.yaml", "--until", "2026-05-01T11:00:00Z", cwd=logged
    )
    assert early.exit_code == 6
    assert (
        "no labelled rows of churn in [2026-04-29T11:00:00Z, 2026-05-01T11:00:00Z) (0 logged"
        in (early.stderr)
    )
    missing = cli("datasets", "show", "nope")
    assert missing.exit_code == 6 and "no dataset named 'nope'" in missing.stderr

    (logged / "specs/bad.yaml").write_text(
        "apiVersion: mlopsctl/v1\nkind: Dataset\nname: Bad_Name\nfrom_logs:\n"
        "  model: churn\n  window: 2d\n  since: yesterday\n  colour: red\n"
        "mix: {sklearn: iris, path: x.csv}\n"
    )
    checked = cli("validate", "specs/bad.yaml", cwd=logged)
    assert checked.exit_code == 3
    text = checked.stdout + checked.stderr
    assert "specs/bad.yaml:3:7: name 'Bad_Name' is not valid" in text
    assert "specs/bad.yaml:7:10: from_logs.since 'yesterday' is not a time" in text
    assert "unknown key 'colour'" in text
    assert "has 'window' and 'since'; give only one of them" in text
