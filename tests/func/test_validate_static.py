"""`mlopsctl validate` makes every check `run --dry-run` makes before anything runs (unknown
components, `with:` keys, step references, cycles, ${params.x}, estimator classes, `code:`
files, placement of placeholders in `run:`), each as file:line:column: message, without
touching data or the store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import Invoke

GOOD = """apiVersion: mlopsctl/v1
kind: Pipeline
name: static
params:
  data: data/missing.csv
  model: {class: sklearn.ensemble.RandomForestClassifier, n_estimators: 10}
steps:
  ingest:
    component: ingest
    with: {path: "${params.data}"}
  split:
    component: split
    inputs: {dataset: ingest.dataset}
    with: {test_size: 0.25, seed: 1}
  train:
    component: train
    inputs: {train: split.train}
    with: {target: y, estimator: "${params.model}"}
  report:
    run: "cat {inputs.model} > {outputs.out} && echo ${env.MLOPSCTL_TEST_UNSET_VARIABLE}"
    inputs: {model: train.model}
    outputs: [out]
"""


def _write(project: Path, text: str) -> Path:
    path = project / "pipelines" / "static.yaml"
    path.write_text(text)
    return path


def _problems(project: Path, cli: Invoke, path: Path) -> list[str]:
    result = cli("validate", str(path), cwd=project)
    assert result.exit_code in (0, 3), result.stderr
    return [line for line in result.stdout.splitlines() if line.strip()]


def test_a_good_pipeline_is_valid_without_its_data_or_environment(
    project: Path, cli: Invoke
) -> None:
    """Data files and ${env.X} belong to the run: validate looks at neither (CI and hooks run
    it before any data is fetched, without the run's variables)."""
    path = _write(project, GOOD)
    assert _problems(project, cli, path) == []
    assert not (project / ".mlops" / "runs").exists()


@pytest.mark.parametrize(
    ("edit", "line", "expected"),
    [
        (
            ("component: ingest", "component: ingst"),
            9,
            "step 'ingest': unknown component 'ingst'; did you mean 'ingest'?",
        ),
        (
            ("with: {test_size: 0.25, seed: 1}", "with: {test_size: 0.25, sed: 1}"),
            14,
            "step 'split': unknown key 'sed' in with; did you mean 'seed'?",
        ),
        (
            ('with: {target: y, estimator: "${params.model}"}', "with: {target: y}"),
            18,
            "step 'train': with: 'estimator' is a required property",
        ),
        (
            ("RandomForestClassifier", "RandomForestClasifier"),
            18,
            "did you mean 'RandomForestClassifier'?",
        ),
        (
            ('"${params.data}"', '"${params.dta}"'),
            10,
            "step 'ingest': unknown parameter 'dta' in ${params.dta}; did you mean 'data'?",
        ),
        (
            ("inputs: {dataset: ingest.dataset}", "inputs: {dataset: train.model}"),
            13,
            "cycle in step inputs: split -> train -> split",
        ),
        (
            ("outputs: [out]", "outputs: [out]\n    code: [src/report.py]"),
            23,
            "step 'report': code file 'src/report.py' matches nothing",
        ),
        (
            ("> {outputs.out}", "> '{outputs.out}'"),
            20,
            "'{outputs.out}' in run: is inside single quotes",
        ),
    ],
    ids=[
        "unknown-component",
        "unknown-with-key",
        "missing-with-key",
        "unknown-estimator",
        "unknown-param",
        "cycle",
        "missing-code-file",
        "placeholder-in-quotes",
    ],
)
def test_validate_reports_what_run_would(
    project: Path, cli: Invoke, edit: tuple[str, str], line: int, expected: str
) -> None:
    text = GOOD.replace(*edit)
    assert text != GOOD
    path = _write(project, text)
    problems = _problems(project, cli, path)
    assert any(
        p.startswith(f"pipelines/static.yaml:{line}:") and expected in p for p in problems
    ), problems
    dry = cli("run", str(path), "--dry-run", cwd=project)
    assert dry.exit_code == 3, dry.stderr
    assert expected in dry.stderr
    assert not (project / ".mlops" / "runs").exists()


def test_validate_json_lists_plan_problems(project: Path, cli: Invoke) -> None:
    path = _write(project, GOOD.replace("component: ingest", "component: ingst"))
    result = cli("validate", str(path), "--json", cwd=project)
    assert result.exit_code == 3
    report = json.loads(result.stdout)
    assert report["valid"] is False
    [problem] = report["diagnostics"]
    assert problem["file"] == "pipelines/static.yaml"
    assert (problem["line"], problem["column"]) == (9, 5)
    assert "unknown component 'ingst'" in problem["message"]


def test_every_pipeline_in_the_project_gets_the_plan_checks(project: Path, cli: Invoke) -> None:
    _write(project, GOOD.replace("with: {test_size: 0.25, seed: 1}", "with: {tst_size: 0.2}"))
    result = cli("validate", cwd=project)
    assert result.exit_code == 3
    assert "pipelines/static.yaml:14:" in result.stdout
    assert "unknown key 'tst_size' in with; did you mean 'test_size'?" in result.stdout


def test_the_pre_push_check_makes_the_plan_checks_on_the_pushed_tree(
    project: Path, cli: Invoke
) -> None:
    """The hook reads specs from git, not the working tree: the plan checks run on them too,
    without looking for files under the project (those on disk are not what is pushed)."""
    from mlopsctl.project.hooks import check_tree

    from .conftest import git

    _write(project, GOOD.replace("outputs: [out]", "outputs: [out]\n    code: [src/report.py]"))
    assert git(project, "add", "-A").returncode == 0
    assert git(project, "commit", "-qm", "good").returncode == 0
    files, problems = check_tree(project, "HEAD^{tree}")
    assert "pipelines/static.yaml" in files
    assert problems == []  # code: and data files are the working tree's business

    _write(project, GOOD.replace("component: ingest", "component: ingst"))
    assert git(project, "commit", "-qam", "typo").returncode == 0
    (project / "pipelines" / "static.yaml").write_text(GOOD)  # fixed on disk, not committed
    _, problems = check_tree(project, "HEAD^{tree}")
    assert [p.render() for p in problems] == [
        "pipelines/static.yaml:9:5: step 'ingest': unknown component 'ingst'; "
        "did you mean 'ingest'?"
    ]


@pytest.mark.parametrize(
    "edits",
    [
        [('"${params.data}"', '"${env.MLOPSCTL_TEST_DATA}"')],
        [
            (
                "  data: data/missing.csv",
                '  data: data/missing.csv\n  ts: "${env.MLOPSCTL_TEST_DATA}"',
            ),
            ("test_size: 0.25", 'test_size: "${params.ts}"'),
        ],
        [("test_size: 0.25", 'test_size: "${env.MLOPSCTL_TEST_DATA}"')],
    ],
    ids=["in-with", "through-a-parameter", "a-number"],
)
def test_with_values_from_unset_environment_variables_are_left_to_the_run(
    project: Path, cli: Invoke, monkeypatch: pytest.MonkeyPatch, edits: list[tuple[str, str]]
) -> None:
    monkeypatch.delenv("MLOPSCTL_TEST_DATA", raising=False)
    text = GOOD
    for edit in edits:
        assert edit[0] in text
        text = text.replace(*edit)
    path = _write(project, text)
    assert _problems(project, cli, path) == []
    dry = cli("run", str(path), "--dry-run", cwd=project)
    assert dry.exit_code == 3
    assert "environment variable MLOPSCTL_TEST_DATA is not set" in dry.stderr
