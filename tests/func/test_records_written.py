"""The record check (``record_checks`` in tests/conftest.py) really sees what the code writes:
a small pipeline run that registers a model, then an alias move, all in this process, pass
through it as valid records of every kind they write; an invalid record the code writes is
caught, naming its key, kind and schema error, and one a test writes by hand is left alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlopsctl.records import kind_of_key
from mlopsctl.store.local import LocalStore

from .conftest import Invoke

PIPELINE = """apiVersion: mlopsctl/v1
kind: Pipeline
name: tiny
steps:
  make:
    python: "steps:make"
    code: [steps.py]
    outputs: [model]
register:
  model: tiny-model
  from: make.model
"""

# A model folder is anything with an mlopsctl model.json; registering reads only that file.
STEPS_PY = """
import json


def make(ctx):
    folder = ctx.outputs["model"]
    folder.mkdir()
    facts = {"format": "mlopsctl-model/v1", "flavor": "sklearn", "task": "regression"}
    (folder / "model.json").write_text(json.dumps(facts))
    return {"score": 1.0}
"""


def test_a_run_with_register_and_an_alias_move_writes_valid_records(
    cli: Invoke, project: Path, record_checks: Any
) -> None:
    (project / "pipelines" / "tiny.yaml").write_text(PIPELINE)
    (project / "steps.py").write_text(STEPS_PY)
    ran = cli("run", "pipelines/tiny.yaml", "--json", cwd=project)
    assert ran.exit_code == 0, ran.stderr + ran.stdout
    assert json.loads(ran.stdout)["registered"]["version"] == 1
    moved = cli("models", "alias", "set", "tiny-model", "production", "1", cwd=project)
    assert moved.exit_code == 0, moved.stderr + moved.stdout

    assert record_checks.problems == []
    for kind in ("run", "experiment", "cache_entry", "version", "model_latest", "alias_move"):
        assert record_checks.checked[kind] >= 1, (kind, dict(record_checks.checked))
    # register and alias_move events; the alias and its history entry are both alias moves
    assert record_checks.checked["event"] >= 2 and record_checks.checked["alias_move"] >= 2


def test_an_invalid_record_is_caught_and_a_hand_written_one_left_alone(
    tmp_path: Path, record_checks: Any
) -> None:
    from mlopsctl.runs import save_run

    with LocalStore(tmp_path / "store") as store:
        store.put("runs/by-hand.json", b'{"id": "by-hand"}')  # a test's own set-up
        assert record_checks.unchecked["run"] == 1 and record_checks.problems == []

        save_run(store, {"id": "broken", "status": "done"})  # through the code: checked
        assert record_checks.checked["run"] == 1
        (problem,) = record_checks.problems
        assert problem.startswith("run record runs/broken.json: ")
        assert "is a required property" in problem and "run.schema.json" in problem
        record_checks.problems.clear()  # caught as it should be: not this test's failure

        store.put_file("blobs/ab/cd", __file__)  # not a record: never read or counted
        assert kind_of_key("blobs/ab/cd") is None
        assert sum(record_checks.checked.values()) == 1
