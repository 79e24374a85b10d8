"""Names that become store keys are checked where they enter, before anything runs or is
written: experiments (`run -e`, `runs list -e`), model names, aliases, versions, deployments.
Each bad name exits 2 with one line stating the rule, and the store is left as it was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlopsctl.names import GRAMMARS

from .conftest import Invoke

BAD = {
    "dotdot": "../x",
    "slash": "team/other",
    "long": "a" * 300,
    "newline": "exp\n",
    "superscript": "²",
    "arabic-digit": "١",
    "huge": "9" * 5000,
    "empty": "",
    "dash": "-x",
}

PIPELINE = """apiVersion: mlopsctl/v1
kind: Pipeline
name: marker
steps:
  touch:
    run: "echo ran >> {marker} && echo x > {{outputs.out}}"
    outputs: [out]
"""


@pytest.fixture
def marked(project: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A project whose one pipeline appends to a marker file whenever its step runs."""
    marker = tmp_path / "ran.txt"
    (project / "pipelines" / "marker.yaml").write_text(PIPELINE.format(marker=marker))
    return project, marker


def store_keys(project: Path) -> list[str]:
    store = project / ".mlops"
    if not store.exists():
        return []
    return sorted(str(p.relative_to(store)) for p in store.rglob("*") if p.is_file())


def assert_refused(result, kind: str) -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    assert "internal error" not in result.stderr
    assert GRAMMARS[kind].rule in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize("value", BAD.values(), ids=list(BAD))
def test_run_refuses_a_bad_experiment_before_any_step(
    cli: Invoke, marked: tuple[Path, Path], value: str
) -> None:
    project, marker = marked
    before = store_keys(project)
    result = cli("run", "pipelines/marker.yaml", f"--experiment={value}", cwd=project)
    assert_refused(result, "experiment")
    assert not marker.exists(), "a step ran before the experiment name was checked"
    assert store_keys(project) == before


@pytest.mark.parametrize("value", BAD.values(), ids=list(BAD))
def test_runs_list_refuses_a_bad_experiment(
    cli: Invoke, marked: tuple[Path, Path], value: str
) -> None:
    project, _ = marked
    assert_refused(cli("runs", "list", f"--experiment={value}", cwd=project), "experiment")


def test_a_good_experiment_still_runs_and_lists(cli: Invoke, marked: tuple[Path, Path]) -> None:
    project, marker = marked
    result = cli("run", "pipelines/marker.yaml", "-e", "exp_a.1", "--json", cwd=project)
    assert result.exit_code == 0, result.stderr
    assert marker.read_text() == "ran\n"
    listed = cli("runs", "list", "-e", "exp_a.1", "--json", cwd=project)
    assert [r["experiment"] for r in json.loads(listed.stdout)] == ["exp_a.1"]


@pytest.mark.parametrize("value", BAD.values(), ids=list(BAD))
def test_model_commands_refuse_bad_names(
    cli: Invoke, marked: tuple[Path, Path], value: str
) -> None:
    project, _ = marked
    assert cli("run", "pipelines/marker.yaml", cwd=project).exit_code == 0
    before = store_keys(project)
    assert_refused(cli("models", "show", "--", value, cwd=project), "model")
    assert_refused(cli("models", "list", "--", value, cwd=project), "model")
    registered = cli(
        "models", "register", "--run", "latest", "--output", "touch.out", "--", value,
        cwd=project,
    )  # fmt: skip
    assert_refused(registered, "model")
    assert_refused(cli("models", "alias", "set", "churn", "--", value, "1", cwd=project), "alias")
    assert_refused(cli("models", "show", f"churn@{value}", cwd=project), "alias")
    assert_refused(
        cli("traffic", "set", "churn", "production=100", f"--deployment={value}", cwd=project),
        "deployment",
    )
    assert store_keys(project) == before


@pytest.mark.parametrize(
    "version", ["²", "١", "9" * 5000, "0", "01", "1\n", " 1", "+1", "1_0", "-1"]
)
def test_versions_are_ascii_whole_numbers(cli: Invoke, project: Path, version: str) -> None:
    result = cli("models", "show", f"churn:{version}", cwd=project)
    assert_refused(result, "version")
    assert "invalid version in 'churn:" in result.stderr
