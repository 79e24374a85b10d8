"""`mlopsctl lineage` and `mlopsctl audit` on the trained quickstart: the upstream graph of a
version in every format (text, json, dot, mermaid) tells the same story, the downstream graph
of a dataset finds the run and the version, and the audit log holds every registration and
alias move with who, what and why."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import Invoke
from .test_models import MODEL, quickstart_project


@pytest.fixture
def trained(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> tuple[Path, dict]:
    root = tmp_path / "demo"
    return root, quickstart_project(tmp_path_factory, root)


def ok(cli: Invoke, root: Path, *args: str) -> str:
    result = cli(*args, cwd=root)
    assert result.exit_code == 0, result.stderr
    return str(result.stdout)


def expected_edges(run: dict[str, Any]) -> set[tuple[str, str, str]]:
    """The quickstart's upstream graph of its model version, built by hand from the run."""
    run_id, steps = run["id"], run["steps"]

    def step(name: str) -> str:
        return f"step:{run_id}/{name}"

    def blob(step_name: str, output: str) -> str:
        return f"blob:{steps[step_name]['outputs'][output]['digest']}"

    version = f"model:{MODEL}:1"
    edges = {(f"run:{run_id}", step(s), "ran") for s in ("ingest", "split", "train", "evaluate")}
    edges |= {
        (blob("train", "model"), version, "registered"),
        (step("ingest"), blob("ingest", "dataset"), "dataset"),
        (blob("ingest", "dataset"), step("split"), "dataset"),
        (step("split"), blob("split", "train"), "train"),
        (step("split"), blob("split", "test"), "test"),
        (blob("split", "train"), step("train"), "train"),
        (step("train"), blob("train", "model"), "model"),
        (blob("train", "model"), step("evaluate"), "model"),
        (blob("split", "test"), step("evaluate"), "test"),
        (step("evaluate"), blob("evaluate", "metrics"), "metrics"),
        (step("evaluate"), blob("evaluate", "predictions"), "predictions"),
        (step("evaluate"), version, "metrics"),
    }
    return edges


def test_lineage_of_the_quickstart_in_every_format(cli: Invoke, trained: tuple[Path, dict]) -> None:
    root, run = trained
    ok(cli, root, "models", "alias", "set", MODEL, "production", "1")

    as_json = ok(cli, root, "lineage", f"{MODEL}@production", "--json")
    assert ok(cli, root, "lineage", f"{MODEL}@production", "-f", "json") == as_json  # alias
    graph = json.loads(as_json)
    assert graph["root"] == f"model:{MODEL}:1"
    edges = {(e["from"], e["to"], e["label"]) for e in graph["edges"]}
    assert edges == expected_edges(run)
    kinds = sorted(n["kind"] for n in graph["nodes"])
    assert kinds.count("version") == 1 and kinds.count("run") == 1 and kinds.count("step") == 4
    node_ids = {n["id"] for n in graph["nodes"]}
    assert {e for edge in edges for e in edge[:2]} == node_ids  # no dangling or lonely node

    dot = ok(cli, root, "lineage", f"{MODEL}:1", "-f", "dot").strip().splitlines()
    assert dot[0] == "digraph lineage {" and dot[-1] == "}"
    dot_edges = set()
    for line in dot[2:-1]:
        if " -> " in line:
            match = re.fullmatch(r'\s+"([^"]+)" -> "([^"]+)" \[label="([^"]*)"\];', line)
            assert match, line
            dot_edges.add(match.groups())
        else:
            match = re.fullmatch(r'\s+"([^"]+)" \[label="[^"]+", shape=\w+\];', line)
            assert match and match.group(1) in node_ids, line
    assert dot_edges == edges

    mermaid = ok(cli, root, "lineage", f"{MODEL}:1", "-f", "mermaid").strip().splitlines()
    assert mermaid[0] == "graph LR"
    labels = {}
    mermaid_edges = set()
    for line in mermaid[1:]:
        node = re.fullmatch(r'\s+(n\d+)\["([^"]+)"\]', line)
        edge = re.fullmatch(r"\s+(n\d+) -->\|(\w+)\| (n\d+)", line)
        assert node or edge, line
        if node:
            labels[node.group(1)] = node.group(2)
        else:
            assert edge is not None
            mermaid_edges.add((edge.group(1), edge.group(3), edge.group(2)))
    assert len(labels) == len(node_ids) and len(mermaid_edges) == len(edges)
    assert sorted(labels.values()) == sorted(n["label"] for n in graph["nodes"])

    text = ok(cli, root, "lineage", MODEL).splitlines()
    assert text[0] == f"{MODEL}:1"
    assert text[-1] == f"from run {run['id']} (quickstart)"
    body = "\n".join(text)
    for step in ("ingest", "split", "train", "evaluate"):
        assert f"step {step} [executed]" in body
    assert "<- registered: model " in body and "<- metrics: step evaluate" in body


def test_lineage_of_a_dataset_finds_its_runs_and_versions(
    cli: Invoke, trained: tuple[Path, dict]
) -> None:
    root, run = trained
    train = run["steps"]["split"]["outputs"]["train"]["digest"]
    text = ok(cli, root, "lineage", train)
    assert f"used by 1 run(s): run {run['id']} (quickstart)" in text
    assert f"in 1 model version(s): {MODEL}:1" in text
    graph = json.loads(ok(cli, root, "lineage", train, "--json"))
    assert f"model:{MODEL}:1" in {n["id"] for n in graph["nodes"]}

    both = cli("lineage", train, "--json", "-f", "dot", cwd=root)
    assert both.exit_code == 2 and "either --json or --format dot" in both.stderr

    unknown = cli("lineage", f"{MODEL}:7", cwd=root)
    assert unknown.exit_code == 6 and f"model '{MODEL}' has no version 7" in unknown.stderr


def test_audit_holds_every_registration_and_alias_move(
    cli: Invoke, trained: tuple[Path, dict]
) -> None:
    from mlopsctl.registry import get_version, register_version
    from mlopsctl.store.local import LocalStore

    root, run = trained
    store = LocalStore(root / ".mlops")
    register_version(store, MODEL, {**get_version(store, MODEL, 1), "note": "copy"})
    ok(cli, root, "models", "alias", "set", MODEL, "production", "1", "-m", "first release")
    ok(cli, root, "models", "promote", f"{MODEL}:2", "production", "--expect", "1", "-m", "v2")
    ok(cli, root, "models", "rollback", MODEL, "production", "-m", "v2 misbehaves")

    events = json.loads(ok(cli, root, "audit", "--model", MODEL, "--json"))
    assert [e["type"] for e in events] == ["register", "register"] + ["alias_move"] * 3
    first = events[0]
    assert (first["version"], first["run"]) == (1, run["id"])
    assert first["artifact"] == run["steps"]["train"]["outputs"]["model"]["digest"]
    assert first["actor"] == run["user"] and first["host"]
    moves = [
        (e["previous"], e["version"], e["action"], e["reason"])
        for e in events
        if e["type"] == "alias_move"
    ]
    assert moves == [
        (None, 1, "set", "first release"),
        (1, 2, "promote", "v2"),
        (2, 1, "rollback", "v2 misbehaves"),
    ]
    assert [e["time"] for e in events] == sorted(e["time"] for e in events)

    only_moves = json.loads(ok(cli, root, "audit", "--type", "alias_move", "--json"))
    assert [e["id"] for e in only_moves] == [e["id"] for e in events[2:]]
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert len(json.loads(ok(cli, root, "audit", "--since", today, "--json"))) == 5
    assert json.loads(ok(cli, root, "audit", "--since", "2999-01-01", "--json")) == []
    lines = ok(cli, root, "audit", "--model", MODEL).splitlines()
    assert len(lines) == 5 and "reason=v2 misbehaves" in lines[-1]
    bad = cli("audit", "--since", "yesterday", cwd=root)
    assert bad.exit_code == 2 and "bad --since 'yesterday'" in bad.stderr
