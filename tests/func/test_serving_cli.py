"""`mlopsctl traffic set/show` and `mlopsctl feedback` on a project with the quickstart model
registered: the deployment record written by compare-and-swap with an audit event, clear
errors for unknown aliases and bad arms, and ground truth in the shared Parquet format."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mlopsctl.store.local import LocalStore

from .conftest import Invoke
from .test_models import MODEL, quickstart_project


@pytest.fixture
def root(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, cli: Invoke) -> Path:
    root = tmp_path / "demo"
    quickstart_project(tmp_path_factory, root)
    assert cli("models", "alias", "set", MODEL, "production", "1", cwd=root).exit_code == 0
    return root


def test_traffic_set_and_show(cli: Invoke, root: Path) -> None:
    result = cli(
        "traffic", "set", MODEL, "production=90", "1=10", "--key", "customer", "--json", cwd=root
    )
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["arms"] == [{"arm": "production", "weight": 90.0}, {"arm": "1", "weight": 10.0}]
    assert record["key"] == "customer" and record["seq"] == 1
    result = cli("traffic", "set", MODEL, "production=100", "-m", "end the test", cwd=root)
    assert result.exit_code == 0 and "production=100" in result.stderr

    result = cli("traffic", "show", MODEL, "--json", cwd=root)
    shown = json.loads(result.stdout)
    assert shown["seq"] == 2 and shown["key"] == "customer" and shown["reason"] == "end the test"
    result = cli("traffic", "show", MODEL, cwd=root)
    assert result.exit_code == 0 and "production" in result.stdout and "100.00%" in result.stdout

    result = cli("audit", "--json", cwd=root)
    traffic = [e for e in json.loads(result.stdout) if e["type"] == "traffic"]
    assert len(traffic) == 2 and traffic[-1]["previous"] == record["arms"]


def test_traffic_errors(cli: Invoke, root: Path) -> None:
    result = cli("traffic", "set", MODEL, "canary=10", cwd=root)
    assert result.exit_code == 6 and "no alias 'canary'" in result.stderr
    result = cli("traffic", "set", MODEL, "production", cwd=root)
    assert result.exit_code == 2 and "invalid arm" in result.stderr
    result = cli("traffic", "set", MODEL, "production=0", cwd=root)
    assert result.exit_code == 2 and "add up to 0" in result.stderr
    result = cli("traffic", "set", MODEL, "9=10", cwd=root)
    assert result.exit_code == 6
    result = cli("traffic", "show", "other-model", cwd=root)
    assert result.exit_code == 6 and "mlopsctl traffic set" in result.stderr


def test_feedback_file(cli: Invoke, root: Path) -> None:
    data = root / "outcomes.csv"
    data.write_text("request_id,actual\nr1,1\nr2,0\n,1\nr3,1\n")
    result = cli("feedback", str(data), "--model", MODEL, "--json", cwd=root)
    assert result.exit_code == 0, result.stderr
    written = json.loads(result.stdout)
    assert written["rows"] == 3 and len(written["files"]) == 1
    key = written["files"][0]
    assert key.startswith(f"logs/feedback/{MODEL}/date=") and key.endswith(".parquet")
    with LocalStore(root / ".mlops") as store:
        table = pq.read_table(store.root / key)
    assert table.column_names == ["request_id", "ts", "actual"]
    assert table.to_pydict()["actual"] == ["1", "0", "1"]  # class labels as text

    bad = root / "bad.csv"
    bad.write_text("id,outcome\nr1,1\n")
    result = cli("feedback", str(bad), "--model", MODEL, cwd=root)
    assert result.exit_code == 2 and "request_id" in result.stderr
